//! `idle_beyond_path_timeout` on a real kernel: a NAT router namespace (iptables MASQUERADE, its
//! conntrack forgetting established flows after [`CONNTRACK_TIMEOUT`], `nf_conntrack_tcp_loose=0`
//! and INVALID packets dropped, so a forgotten flow really breaks) between a client and a server
//! namespace, and a `[[path]]` naming the server and that timeout. Of three idle connections,
//! the one without keepalive and the one whose keepalive idle is longer than the timeout are
//! flagged before the timeout, the one with a short keepalive never; past the timeout the first
//! one's request gets no answer. An `[[enforce]]` policy with a short keepalive, applied by a
//! second agent to a fourth flagged connection, clears its verdict and keeps it alive through
//! the router. Run as root, with iptables.

use std::{fs, time::Duration};

use harness::{
    agent::Agent,
    command::run,
    netns::{Netns, unique_name},
    peer::Peer,
    privilege::Need,
    scenario::{SERVICE_PORT, Scenario},
    wait::wait_for,
};
use serde_json::Value;

use crate::common::{agent_only, have};

/// The router's `nf_conntrack_tcp_timeout_established`, in seconds: short, so the test is.
const CONNTRACK_TIMEOUT: u64 = 30;
/// `path_timeout_share`: flagged at 15 s of idle, so a second agent has time to enforce.
const SHARE: &str = "0.5";
/// How long the clients that send stay idle first: past the timeout.
const IDLE_THEN_SEND: u64 = CONNTRACK_TIMEOUT + 12;
const REASON: &str = "idle_beyond_path_timeout";

/// client (10.251.1.2) — router (10.251.1.1 | 10.251.2.1, MASQUERADE) — server (10.251.2.2).
struct Routed {
    client: Netns,
    router: Netns,
    server: Netns,
}

const SERVER_IP: &str = "10.251.2.2";
const ROUTER_SERVER_SIDE: &str = "10.251.2.1";

impl Routed {
    fn create() -> Self {
        let routed = Self {
            client: Netns::create(unique_name("ptc")).expect("client namespace"),
            router: Netns::create(unique_name("ptr")).expect("router namespace"),
            server: Netns::create(unique_name("pts")).expect("server namespace"),
        };
        let link = |a: &Netns, a_end: &str, b: &Netns, b_end: &str| {
            let (a_name, b_name) = (a.name(), b.name());
            let args = [
                "link", "add", a_end, "netns", a_name, "type", "veth", "peer", "name", b_end,
                "netns", b_name,
            ];
            run("ip", &args).expect("veth pair");
        };
        link(&routed.client, "c0", &routed.router, "r0");
        link(&routed.router, "r1", &routed.server, "s0");
        let address = |ns: &Netns, dev: &str, cidr: &str| {
            ns.run("ip", &["addr", "add", cidr, "dev", dev])
                .expect("address");
            ns.run("ip", &["link", "set", dev, "up"]).expect("link up");
        };
        address(&routed.client, "c0", "10.251.1.2/24");
        address(&routed.router, "r0", "10.251.1.1/24");
        address(&routed.router, "r1", &format!("{ROUTER_SERVER_SIDE}/24"));
        address(&routed.server, "s0", &format!("{SERVER_IP}/24"));
        routed
            .client
            .run("ip", &["route", "add", "default", "via", "10.251.1.1"])
            .expect("client route");
        let r = &routed.router;
        r.run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])
            .expect("forwarding");
        let masquerade = [
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "r1",
            "-j",
            "MASQUERADE",
        ];
        r.run("iptables", &masquerade).expect("MASQUERADE");
        let invalid = [
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "INVALID",
            "-j",
            "DROP",
        ];
        r.run("iptables", &invalid).expect("drop INVALID");
        // The rules loaded conntrack; its sysctls exist from here on, per namespace.
        let timeout =
            format!("net.netfilter.nf_conntrack_tcp_timeout_established={CONNTRACK_TIMEOUT}");
        r.run("sysctl", &["-q", "-w", &timeout])
            .expect("conntrack timeout");
        r.run(
            "sysctl",
            &["-q", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"],
        )
        .expect("no loose pickup");
        routed
    }

    fn client(&self, mode: &[&str]) -> Peer {
        let port = SERVICE_PORT.to_string();
        let mut args = vec!["client", SERVER_IP, port.as_str()];
        args.extend_from_slice(mode);
        Peer::start(&self.client, &args).unwrap_or_else(|e| panic!("client {mode:?}: {e:#}"))
    }
}

/// The agent with `config` (TOML) in a temporary file, scanning at the test cadence.
fn agent_with(sc: &Scenario, config: &str) -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("path.toml");
    fs::write(&file, config).expect("write config");
    let agent = sc
        .launch()
        .args(&["--config", file.to_str().expect("UTF-8 path")])
        .start()
        .expect("agent");
    (agent, dir)
}

/// The client's established connection from local port `port`, as `/connections` shows it.
fn connection(agent: &Agent, netns: u64, port: u16) -> Option<Value> {
    agent.connections_in(netns).into_iter().find(|c| {
        c["state"] == "established"
            && c["local"]
                .as_str()
                .is_some_and(|l| l.ends_with(&format!(":{port}")))
    })
}

fn flagged(c: &Value) -> bool {
    c["suspect"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r == REASON))
}

/// The local ports of the client namespace's established connections.
fn local_ports(agent: &Agent, netns: u64) -> Vec<u16> {
    agent
        .connections_in(netns)
        .iter()
        .filter(|c| c["state"] == "established")
        .filter_map(|c| c["local"].as_str()?.rsplit(':').next()?.parse().ok())
        .collect()
}

#[test]
fn idle_beyond_the_routers_conntrack_timeout() {
    let Some(sc) = agent_only("path_timeout", Need::RootAndKernelBtf) else {
        return;
    };
    if !have("iptables", "Debian package iptables") {
        return;
    }
    let routed = Routed::create();
    let netns = routed.client.inode();
    let path = format!(
        "path_timeout_share = {SHARE}\n[[path]]\nname = \"router\"\ncidr = \"{SERVER_IP}/32\"\nremote_port = {SERVICE_PORT}\nidle_timeout = \"{CONNTRACK_TIMEOUT}s\"\n"
    );
    let (agent, _dir) = agent_with(&sc, &path);
    let _server = Peer::start(
        &routed.server,
        &["server", SERVER_IP, &SERVICE_PORT.to_string(), "echo"],
    )
    .expect("server");
    // One at a time, so each connection's local port tells which it is.
    let mut ports = Vec::new();
    let mut start = |mode: &[&str]| {
        let peer = routed.client(mode);
        let port = wait_for("the new connection", agent.scans(40), || {
            local_ports(&agent, netns)
                .into_iter()
                .find(|p| !ports.contains(p))
        });
        ports.push(port);
        (peer, port)
    };
    let idle_then_send = IDLE_THEN_SEND.to_string();
    let (no_keepalive, no_keepalive_port) = start(&["idle-then-send", &idle_then_send]);
    let (_late_keepalive, late_port) = start(&["keepalive-sysctl"]);
    let (_short_keepalive, short_port) = start(&["keepalive", "3"]);
    let (enforced, enforced_port) = start(&["idle-then-send", &idle_then_send]);

    // Flagged at half the timeout, well before it: the idle time when first seen flagged.
    let share_at = Duration::from_secs(CONNTRACK_TIMEOUT / 2);
    for port in [no_keepalive_port, late_port, enforced_port] {
        let c = wait_for("the verdict", agent.after(share_at), || {
            connection(&agent, netns, port).filter(flagged)
        });
        let idle = c["idle_seconds"].as_f64().expect("idle known");
        let share = share_at.as_secs_f64();
        assert!(
            share < idle && idle < CONNTRACK_TIMEOUT as f64,
            "flagged at {idle} s: {c}"
        );
        let why = c["why"].to_string();
        assert!(
            why.contains("path router") && why.contains("forgets the flow in"),
            "{why}"
        );
    }
    let short = connection(&agent, netns, short_port).expect("short keepalive connection");
    assert!(!flagged(&short), "a 1 s keepalive keeps the flow: {short}");
    let at_risk = agent.metric("tcp_liveness_path_timeout_at_risk{path=\"router\"}");
    assert!(at_risk.is_some_and(|n| n >= 3.0), "at risk: {at_risk:?}");

    // A second agent with a short keepalive for the fourth connection only (by its local
    // port): set on the existing socket through the iterator, before its flow is forgotten.
    drop(agent);
    let enforce = format!(
        "{path}[[enforce]]\nname = \"router-keepalive\"\nlocal_port = {enforced_port}\nkeepalive = {{ idle = \"2s\", interval = \"2s\", count = 3 }}\n"
    );
    let (agent, _dir2) = agent_with(&sc, &enforce);
    // The options the iterator set show once a pass over the held sockets read them.
    let c = wait_for(
        "the verdict cleared",
        agent.held_pass_and(Duration::ZERO),
        || {
            connection(&agent, netns, enforced_port)
                .filter(|c| c["keepalive"]["enabled"] == true && !flagged(c))
        },
    );
    assert_eq!(c["keepalive"]["idle_seconds"], 2.0, "{c}");

    // Past the timeout both clients send: the forgotten flow gets nothing, the kept one its echo.
    let until_sent = Duration::from_secs(IDLE_THEN_SEND + 10);
    assert_eq!(no_keepalive.next_line(until_sent).as_deref(), Some("sent"));
    assert_eq!(enforced.next_line(until_sent).as_deref(), Some("sent"));
    assert_eq!(
        enforced.next_line(Duration::from_secs(5)).as_deref(),
        Some("data")
    );
    let answer = no_keepalive.next_line(Duration::from_secs(5));
    assert_eq!(answer, None, "the router forgot the flow: no answer");
}
