//! `idle_beyond_path_timeout` by the host's own conntrack, with no `[[path]]`: a client
//! namespace whose conntrack is active (an iptables rule matching `--ctstate`) with a short
//! `nf_conntrack_tcp_timeout_established`, talking to a server namespace. The idle connection
//! without keepalive is flagged with path `conntrack` before its entry expires, at a drop time
//! that agrees with the kernel's own entry (`/proc/net/nf_conntrack` in that namespace); the one
//! with a short keepalive is not. Run as root, with iptables.

use std::{fs, time::Duration};

use harness::{
    command::run,
    netns::{Netns, unique_name},
    peer::Peer,
    privilege::Need,
    scenario::SERVICE_PORT,
    wait::wait_for,
};
use serde_json::Value;

use crate::{
    common::{agent_only, have},
    verdicts::has_reason,
};

/// The client namespace's `nf_conntrack_tcp_timeout_established`, in seconds (flagged at
/// half of it: `path_timeout_share = 0.5`).
const CONNTRACK_TIMEOUT: u64 = 30;
/// What the idle connection is flagged with.
const VERDICT: &str = "idle_beyond_path_timeout";
const SERVER_IP: &str = "10.252.1.1";

/// client (10.252.1.2, conntrack on) — server (10.252.1.1).
fn namespaces() -> (Netns, Netns) {
    let client = Netns::create(unique_name("hcc")).expect("client namespace");
    let server = Netns::create(unique_name("hcs")).expect("server namespace");
    let args = [
        "link",
        "add",
        "c0",
        "netns",
        client.name(),
        "type",
        "veth",
        "peer",
        "name",
        "s0",
        "netns",
        server.name(),
    ];
    run("ip", &args).expect("veth pair");
    for (ns, dev, cidr) in [
        (&client, "c0", "10.252.1.2/24"),
        (&server, "s0", "10.252.1.1/24"),
    ] {
        ns.run("ip", &["addr", "add", cidr, "dev", dev])
            .expect("address");
        ns.run("ip", &["link", "set", dev, "up"]).expect("link up");
    }
    // A rule that uses conntrack makes the namespace track its flows.
    let rule = [
        "-A",
        "OUTPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "INVALID",
        "-j",
        "DROP",
    ];
    client.run("iptables", &rule).expect("conntrack rule");
    let timeout = format!("net.netfilter.nf_conntrack_tcp_timeout_established={CONNTRACK_TIMEOUT}");
    client
        .run("sysctl", &["-q", "-w", &timeout])
        .expect("conntrack timeout");
    (client, server)
}

/// Seconds the client namespace's conntrack entry for local port `port` has left.
fn kernel_seconds_left(client: &Netns, port: u16) -> Option<f64> {
    let out = client
        .command("cat")
        .arg("/proc/net/nf_conntrack")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(" ESTABLISHED ") && l.contains(&format!("sport={port} ")))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// The seconds in "forgets the flow in 12s" of a `why`.
fn agent_seconds_left(why: &str) -> Option<f64> {
    let rest = why.split("forgets the flow in ").nth(1)?;
    rest.split('s').next()?.parse().ok()
}

#[test]
fn idle_beyond_the_hosts_own_conntrack_timeout() {
    let sc = agent_only("host_conntrack", Need::RootAndKernelBtf)
        .filter(|_| have("iptables", "Debian package iptables"));
    let Some(sc) = sc else { return };
    let (client, server) = namespaces();
    let netns = client.inode();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("share.toml");
    fs::write(&file, "path_timeout_share = 0.5\n").expect("write config");
    let args = ["--config", file.to_str().expect("UTF-8 path")];
    let agent = sc.launch().args(&args).start().expect("agent");
    let port = SERVICE_PORT.to_string();
    let _server = Peer::start(&server, &["server", SERVER_IP, &port, "echo"]).expect("server");
    let idle = (CONNTRACK_TIMEOUT * 3).to_string();
    let _idle = Peer::start(
        &client,
        &["client", SERVER_IP, &port, "idle-then-send", &idle],
    )
    .expect("idle client");
    let established = |c: &Value| c["state"] == "established";
    let idle_port = wait_for("the idle connection", agent.scans(40), || {
        let c = agent.connections_in(netns).into_iter().find(established)?;
        c["local"].as_str()?.rsplit(':').next()?.parse::<u16>().ok()
    });
    let _short = Peer::start(&client, &["client", SERVER_IP, &port, "keepalive", "3"])
        .expect("keepalive client");
    let local_is = |c: &Value, p: u16| {
        c["local"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!(":{p}")))
    };

    // Flagged past half the timeout (one scan to ask, one to judge), before the entry expires.
    let share_at = Duration::from_secs(CONNTRACK_TIMEOUT / 2);
    let c = wait_for("the verdict", agent.after(share_at), || {
        agent
            .connections_in(netns)
            .into_iter()
            .find(|c| established(c) && local_is(c, idle_port) && has_reason(c, VERDICT))
    });
    let idle = c["idle_seconds"].as_f64().expect("idle known");
    assert!(
        share_at.as_secs_f64() < idle && idle < CONNTRACK_TIMEOUT as f64,
        "flagged at {idle} s: {c}"
    );
    let why = c["why"].to_string();
    assert!(why.contains("path conntrack"), "{why}");
    let predicted = agent_seconds_left(&why).unwrap_or_else(|| panic!("no drop time: {why}"));
    let kernel = kernel_seconds_left(&client, idle_port).expect("the kernel's entry");
    // The two reads are a moment apart, and each rounds to the second.
    assert!(
        (predicted - kernel).abs() <= 3.0,
        "agent says {predicted} s left, the kernel {kernel} s: {why}"
    );
    let at_risk = agent.metric("tcp_liveness_path_timeout_at_risk{path=\"conntrack\"}");
    assert!(at_risk.is_some_and(|n| n >= 1.0), "at risk: {at_risk:?}");
    let others: Vec<Value> = agent
        .connections_in(netns)
        .into_iter()
        .filter(|c| {
            established(c)
                && !local_is(c, idle_port)
                && c["remote"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(SERVER_IP))
        })
        .collect();
    assert!(!others.is_empty(), "the keepalive connection is listed");
    for other in others {
        assert!(
            !has_reason(&other, VERDICT),
            "a 3 s keepalive keeps the flow: {other}"
        );
    }
}
