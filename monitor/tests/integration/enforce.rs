//! `[[enforce]]` on a real kernel: a receive-only client without keepalive in a
//! policy's cgroup gets the policy's timers at connect time (`sock_ops`), and when its peer
//! vanishes the kernel resets it and the application's `recv()` fails with ETIMEDOUT; a socket
//! outside every policy is untouched; `fill` keeps what the application set, `override` does
//! not; connections that existed before the agent, and policies on the process name, are applied
//! through the socket-option iterator. The application's own `getsockopt` (`tcp_peer.py
//! recv-report`) and `ss -o` are the oracles. Run as root.

use std::{
    fs,
    time::{Duration, Instant},
};

use harness::{
    agent::Agent, cgroup::Cgroup, netns::NetPair, peer::Peer, privilege::Need, scenario::Scenario,
    wait::wait_for,
};

use crate::common::{SCANS_TO_SHOW, scenario};

/// Starts the agent with `config` (a TOML text) written to a temporary file; its log (with the
/// enforcement audit lines) goes to `agent.log` in the same directory.
pub(crate) fn agent_with(sc: &Scenario, config: &str) -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("enforce.toml");
    fs::write(&file, config).expect("write config");
    let log = fs::File::create(dir.path().join("agent.log")).expect("log file");
    let agent = sc
        .launch()
        .args(&["--config", file.to_str().expect("UTF-8 path")])
        .rust_log(Some("warn,monitor::act::enforce=info"))
        .log_to(log)
        .start()
        .expect("agent");
    (agent, dir)
}

/// The audit lines of the agent's log that contain `text`.
pub(crate) fn audit(dir: &tempfile::TempDir, text: &str) -> Vec<String> {
    fs::read_to_string(dir.path().join("agent.log"))
        .expect("agent log")
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_owned)
        .collect()
}

pub(crate) const BY_KERNEL: &str = "enforce: new connections given the policy at establishment";
pub(crate) const BY_ITERATOR: &str =
    "enforce: policy applied to connections through the socket iterator";

/// The `options …` line a `recv-report` peer prints: keepalive, idle, interval, count, user
/// timeout (ms), as its own `getsockopt` returns them.
pub(crate) fn options(peer: &Peer) -> [u32; 5] {
    let line = peer
        .next_line(Duration::from_secs(5))
        .expect("an options line");
    let values: Vec<u32> = line
        .strip_prefix("options ")
        .unwrap_or_else(|| panic!("not an options line: {line:?}"))
        .split(' ')
        .map(|v| v.parse().expect("number"))
        .collect();
    values.try_into().expect("five values")
}

/// The options the peer's socket has now (asks with SIGUSR1).
fn options_now(peer: &Peer) -> [u32; 5] {
    peer.signal_usr1().expect("SIGUSR1");
    options(peer)
}

/// The connection with cookie-independent identity: the one in `netns` to `remote`.
fn connection_to(agent: &Agent, netns: u64, remote: &str) -> Option<serde_json::Value> {
    agent
        .connections_in(netns)
        .into_iter()
        .find(|c| c["remote"] == remote && c["state"] == "established")
}

/// Waits until the client's connection to the server's `port` names `policy` (`enforced`);
/// returns it. A connection names its policy while its options are the policy's as last read:
/// set on an existing connection, they show once a pass over the held sockets read them.
fn wait_named(agent: &Agent, net: &NetPair, port: u16, policy: &str) -> serde_json::Value {
    let remote = format!("{}:{port}", net.server_ip);
    wait_for(
        &format!("the connection to {remote} named {policy}"),
        agent.held_pass_and(Duration::ZERO),
        || connection_to(agent, net.client.inode(), &remote).filter(|c| c["enforced"] == policy),
    )
}

/// `ss -to` in `ns` for established connections to `port`: the `timer:(keepalive,…)` oracle.
fn ss_to(ns: &harness::netns::Netns, port: u16) -> String {
    let out = ns
        .command("ss")
        .args([
            "-tnoH",
            "state",
            "established",
            "dport",
            &format!("= :{port}"),
        ])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `sock_ops_enforce` is attached to the cgroup v2 root (`bpftool cgroup show`).
fn sock_ops_attached() -> bool {
    let root = harness::cgroup::v2_root().expect("cgroup v2 root");
    let out = std::process::Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(root)
        .output()
        .expect("bpftool");
    String::from_utf8_lossy(&out.stdout).contains("sock_ops_enforce")
}

#[test]
fn keepalive_from_the_cgroup_policy_resets_a_vanished_peer_and_spares_the_rest() {
    let Some(sc) = scenario("enforce_vanished_peer", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let cgroup = Cgroup::create("tcp-liveness-test-enforce").expect("cgroup");
    let _server = sc.server(&["echo"]);
    let config = format!(
        "[[enforce]]\nname = \"test-keepalive\"\ncgroup = \"{}\"\n\
         keepalive = {{ idle = \"2s\", interval = \"1s\", count = 2 }}\n",
        cgroup.path()
    );
    let (agent, _dir) = agent_with(&sc, &config);
    let inside = Peer::start_in_cgroup(
        &net.client,
        &["client", &net.server_ip, "7000", "recv-report"],
        &cgroup,
    )
    .expect("client in the cgroup");
    let outside = sc.client(&["recv-report"]);
    assert_eq!(
        options(&inside)[..4],
        [1, 2, 1, 2],
        "keepalive on with the policy's timers, set at connect time"
    );
    let untouched = options(&outside);
    assert_eq!(untouched[0], 0, "no keepalive outside the policy");
    assert_ne!(untouched[1], 2, "the namespace's own idle time");

    // /connections and the metric name the policy, once a pass over the held sockets read the
    // options it set (`sock_ops` sets them after the state change that read them first).
    let remote = format!("{}:7000", net.server_ip);
    let enforced = wait_for(
        "the enforced connection",
        agent.held_pass_and(Duration::ZERO),
        || {
            agent
                .connections_in(net.client.inode())
                .into_iter()
                .find(|c| c["enforced"] == "test-keepalive")
        },
    );
    assert_eq!(enforced["pid"].as_u64(), Some(u64::from(inside.pid())));
    assert_eq!(enforced["cgroup"], cgroup.path());
    let others: Vec<_> = agent
        .connections_in(net.client.inode())
        .into_iter()
        .filter(|c| c["remote"] == remote && c["enforced"].is_null())
        .collect();
    assert_eq!(others.len(), 1, "the outside client is not enforced");
    let metric = "tcp_liveness_enforced_connections{policy=\"test-keepalive\"}";
    let counted = wait_for("the enforced gauge", agent.scans(SCANS_TO_SHOW), || {
        agent.metric(metric).filter(|&n| n >= 1.0)
    });
    assert!((counted - 1.0).abs() < f64::EPSILON, "{counted}");

    // The peer vanishes: keepalive (idle 2 s, 2 probes 1 s apart) makes the kernel reset the
    // connection once the peer has been silent for idle + interval × count, and recv() fails.
    // The probes were answered until the drop (one every idle time): the reset comes between
    // interval × count and that bound after it, plus an interval for the kernel's timer and one
    // for the application's wake-up and our read of its error on a busy machine.
    let (interval, count) = (Duration::from_secs(1), 2);
    let bound = Duration::from_secs(2) + interval * count;
    // Taken before the drop takes effect: no reset can be seen less than `took` after it.
    let dropped = Instant::now();
    net.server.drop_input().expect("iptables DROP");
    let ended = inside.next_line(bound + agent.scans(SCANS_TO_SHOW));
    let took = dropped.elapsed();
    assert_eq!(ended.as_deref(), Some("error ETIMEDOUT"), "after {took:?}");
    assert!(
        took >= interval * count,
        "reset after {took:?}: before {count} probes could go unanswered"
    );
    assert!(took <= bound + 2 * interval, "reset after {took:?}");
    eprintln!("reset {took:?} after the peer vanished (bound {bound:?})");
    // The outside client has no keepalive: still blocked in recv(), its options as they were.
    assert_eq!(options_now(&outside), untouched);
    assert!(connection_to(&agent, net.client.inode(), &remote).is_some());
}

#[test]
fn fill_keeps_the_applications_timers_and_override_replaces_them() {
    let Some(sc) = scenario("enforce_fill_override", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let cgroup = Cgroup::create("tcp-liveness-test-enforce-fill").expect("cgroup");
    // The server is in the cgroup too: its accepted connections are established in softirq,
    // where the current task is not the owner; the policy must still find them by the socket.
    let _a = Peer::start_in_cgroup(
        &net.server,
        &["server", &net.server_ip, "7000", "echo"],
        &cgroup,
    )
    .expect("peer");
    let _b = Peer::start(&net.server, &["server", &net.server_ip, "7001", "echo"]).expect("peer");
    // First match wins: port 7001 is overridden wherever the client is; the cgroup's fill
    // policy takes the rest of its connections.
    let config = format!(
        "[[enforce]]\nname = \"override-7001\"\nremote_port = 7001\nmode = \"override\"\n\
         keepalive = {{ idle = \"3s\", interval = \"2s\", count = 4 }}\nuser_timeout = \"8s\"\n\
         [[enforce]]\nname = \"fill-cgroup\"\ncgroup = \"{}\"\nmode = \"fill\"\n\
         keepalive = {{ idle = \"2s\", interval = \"1s\", count = 2 }}\nuser_timeout = \"7s\"\n",
        cgroup.path()
    );
    let (agent, dir) = agent_with(&sc, &config);
    let start = |port: &str, mode: &str| {
        Peer::start_in_cgroup(
            &net.client,
            &["client", &net.server_ip, port, mode],
            &cgroup,
        )
        .expect("client")
    };
    let preset_fill = start("7000", "recv-report-preset");
    assert_eq!(
        options(&preset_fill),
        [1, 100, 50, 5, 7000],
        "fill: the application's keepalive timers stay, the user timeout it left is filled"
    );
    let plain_fill = start("7000", "recv-report");
    assert_eq!(options(&plain_fill), [1, 2, 1, 2, 7000], "fill on defaults");
    let preset_override = start("7001", "recv-report-preset");
    assert_eq!(
        options(&preset_override),
        [1, 3, 2, 4, 8000],
        "override replaces what the application set"
    );
    // Nothing re-applies: the application's own later setsockopt would win (no second change).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(options_now(&plain_fill), [1, 2, 1, 2, 7000]);

    // Accepted connections: both of port 7000's server sockets have the keepalive timer (the
    // server set nothing), port 7001's server (outside the cgroup) has none.
    let timers = |port: u16| {
        let out = net
            .server
            .command("ss")
            .args([
                "-tnoH",
                "state",
                "established",
                "sport",
                &format!("= :{port}"),
            ])
            .output()
            .expect("ss");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let keepalive = text
            .lines()
            .filter(|l| l.contains("timer:(keepalive,"))
            .count();
        (text.lines().count(), keepalive)
    };
    assert_eq!(timers(7000), (2, 2), "accepted in the cgroup");
    assert_eq!(timers(7001), (1, 0), "accepted outside every policy");
    let local = format!("{}:7000", net.server_ip);
    // Named once a pass over the held sockets read the options the policy set.
    wait_for(
        "2 accepted connections named",
        agent.held_pass_and(Duration::ZERO),
        || {
            let named = agent
                .connections_in(net.server.inode())
                .into_iter()
                .filter(|c| c["local"] == local && c["enforced"] == "fill-cgroup")
                .count();
            (named == 2).then_some(())
        },
    );
    // All of it at establishment, by the kernel program (accepted ones included): nothing was
    // left for the agent's iterator, which would also have set these options a scan later.
    let by_kernel = audit(&dir, BY_KERNEL);
    for policy in ["fill-cgroup", "override-7001"] {
        assert!(
            by_kernel.iter().any(|l| l.contains(policy)),
            "{policy}: {by_kernel:?}"
        );
    }
    assert_eq!(audit(&dir, BY_ITERATOR), Vec::<String>::new());
}

#[test]
fn existing_and_process_matched_connections_get_the_policy_through_the_iterator() {
    let Some(sc) = scenario("enforce_iterator", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _a = Peer::start(&net.server, &["server", &net.server_ip, "7002", "echo"]).expect("peer");
    let _b = Peer::start(&net.server, &["server", &net.server_ip, "7003", "echo"]).expect("peer");
    // Before the agent: no sock_ops program saw this connection being established.
    let existing = Peer::start(
        &net.client,
        &["client", &net.server_ip, "7002", "recv-report"],
    )
    .expect("client");
    assert_eq!(options(&existing)[0], 0, "no keepalive yet");
    let config = "[[enforce]]\nname = \"existing-7002\"\nremote_port = 7002\n\
         keepalive = { idle = \"20s\", interval = \"5s\", count = 3 }\nuser_timeout = \"9s\"\n\
         [[enforce]]\nname = \"by-process\"\nprocess = \"enf-proc\"\n\
         keepalive = { idle = \"30s\", interval = \"6s\", count = 4 }\n";
    let (agent, dir) = agent_with(&sc, config);
    assert_eq!(
        options_now(&existing),
        [1, 20, 5, 3, 9000],
        "applied at start-up"
    );
    assert!(
        ss_to(&net.client, 7002).contains("timer:(keepalive,"),
        "{}",
        ss_to(&net.client, 7002)
    );
    let c = wait_named(&agent, net, 7002, "existing-7002");
    assert_eq!(c["seeded"], true, "{c}");

    // The process name is known only to the scan: the agent applies the policy then, once.
    let named = Peer::start_named(
        &net.client,
        &["client", &net.server_ip, "7003", "recv-report"],
        b"enf-proc",
    )
    .expect("client");
    assert_eq!(
        options(&named)[0],
        0,
        "the kernel program left it to the agent"
    );
    wait_for(
        "the process policy applied",
        agent.scans(SCANS_TO_SHOW),
        || (options_now(&named) == [1, 30, 6, 4, 0]).then_some(()),
    );
    assert!(
        ss_to(&net.client, 7003).contains("timer:(keepalive,"),
        "{}",
        ss_to(&net.client, 7003)
    );
    wait_named(&agent, net, 7003, "by-process");
    let by_iterator = audit(&dir, BY_ITERATOR);
    for policy in ["existing-7002", "by-process"] {
        assert!(
            by_iterator.iter().any(|l| l.contains(policy)),
            "{policy}: {by_iterator:?}"
        );
    }

    // The agent's exit detaches the program from the cgroup root; sockets keep what was set.
    assert!(sock_ops_attached(), "attached while the agent runs");
    let mut agent = agent;
    assert!(agent.stop().expect("stop").success());
    assert!(!sock_ops_attached(), "detached at exit");
    assert_eq!(options_now(&existing), [1, 20, 5, 3, 9000]);
    assert_eq!(options_now(&named), [1, 30, 6, 4, 0]);
}
