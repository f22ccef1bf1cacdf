//! `[probe]` on the real kernel: the agent makes the kernel send keepalive probes on quiet
//! connections of other processes, proves a live peer alive and a vanished one dead, and puts
//! the options back — the owning process's own `getsockopt` (`tcp_peer.py idle-report`) is the
//! oracle. Run as root; under CI=true a missing privilege
//! fails instead of skipping.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use harness::{
    agent::Agent,
    netns::NetPair,
    peer::Peer,
    privilege::Need,
    scenario::Scenario,
    wait::{wait_for, wait_for_optional},
};
use serde_json::Value;

use crate::common::{AGENT, SCANS_TO_SHOW, scenario};

/// `--probe-after`: probed after this much silence.
pub(crate) const PROBE_AFTER: Duration = Duration::from_secs(2);
/// `--probe-interval`: between probes.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// `--probe-count`: unanswered probes that prove the peer dead.
const PROBE_COUNT: u32 = 3;

/// `--probe` with [`PROBE_AFTER`], [`PROBE_INTERVAL`] and [`PROBE_COUNT`], and `--idle-after
/// idle_after` (whole milliseconds).
fn probe_fast(idle_after: Duration) -> Vec<String> {
    let seconds = |d: Duration| format!("{}s", d.as_secs());
    vec![
        "--idle-after".into(),
        format!("{}ms", idle_after.as_millis()),
        "--probe".into(),
        "--probe-after".into(),
        seconds(PROBE_AFTER),
        "--probe-interval".into(),
        seconds(PROBE_INTERVAL),
        "--probe-count".into(),
        PROBE_COUNT.to_string(),
    ]
}

/// How long a probe of a vanished peer runs before it is finished as dead: `count` probes
/// `interval` apart (the first at once) and half an interval more (the agent's own deadline).
fn probe_runs(interval: Duration, count: u32) -> Duration {
    interval * count + interval / 2
}
/// Only the client side is probed: the server's own probes would reach the client even with
/// the server's input dropped (a host that still sends is heard from).
pub(crate) const CLIENT_ONLY: &str = "[[override]]\nlocal_port = 7000\nprobe = false\n";

pub(crate) fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

/// `options KEEPALIVE KEEPIDLE KEEPINTVL KEEPCNT USER_TIMEOUT` lines of an `idle-report` peer.
pub(crate) fn options(peer: &Peer, seen: &mut Vec<[u32; 5]>) {
    for line in peer.take_lines() {
        let Some(values) = line.strip_prefix("options ") else {
            continue;
        };
        let parsed: Vec<u32> = values.split(' ').map(|v| v.parse().unwrap()).collect();
        seen.push(parsed.try_into().expect("five options"));
    }
}

/// The options the peer reports first, as soon as it has.
pub(crate) fn first_options(peer: &Peer, seen: &mut Vec<[u32; 5]>) -> [u32; 5] {
    wait_for("the peer's options", Duration::from_secs(5), || {
        options(peer, seen);
        seen.first().copied()
    })
}

/// The established connection to `port` in the client namespace.
pub(crate) fn client_conn(agent: &Agent, net: &NetPair, port: u16) -> Option<Value> {
    let remote = format!("{}:{port}", net.server_ip);
    agent
        .connections_in(net.client.inode())
        .into_iter()
        .find(|c| c["state"] == "established" && c["remote"] == remote)
}

/// An agent probing the client's quiet connection to a peer whose input is dropped: its
/// probe runs `count × interval` unanswered.
pub(crate) struct DeadPeerProbe {
    pub agent: Agent,
    /// The client (`idle-report`): its options before the probe, and every line since.
    pub client: Peer,
    pub original: [u32; 5],
    pub seen: Vec<[u32; 5]>,
}

/// Starts an agent with the config file `config` and `args` (`--probe-after` added) and an
/// idle client, drops the server's input, and waits until the client's own `getsockopt` shows
/// the probe's options (keepalive on, `TCP_KEEPCNT` 127).
pub(crate) fn probe_a_dead_peer(sc: &Scenario, config: &str, args: &[&str]) -> DeadPeerProbe {
    let config = config_file(config);
    let after = format!("{}s", PROBE_AFTER.as_secs());
    let agent = sc
        .launch()
        .args(&["--config", config.path().to_str().unwrap()])
        .args(&["--probe-after", &after])
        .args(args)
        .start()
        .expect("agent");
    let client = sc.client(&["idle-report"]);
    sc.net().server.drop_input().expect("iptables DROP");
    let mut seen = Vec::new();
    let original = first_options(&client, &mut seen);
    wait_for("the probe to start", agent.after(PROBE_AFTER), || {
        options(&client, &mut seen);
        seen.last().filter(|o| o[0] == 1 && o[3] == 127).copied()
    });
    DeadPeerProbe {
        agent,
        client,
        original,
        seen,
    }
}

fn probe_result(c: &Value) -> Option<&str> {
    c["probe"]["result"].as_str()
}

fn suspects(c: &Value) -> Vec<String> {
    c["suspect"]
        .as_array()
        .expect("suspect list")
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// A receive-only idle connection to a live peer is proven alive (no alert, ever, though it
/// stays quiet longer than `idle_after`), its owner's options are the same before and after each
/// probe; once the peer's host drops everything, the next probe proves it dead (not before
/// after + count × interval of silence), the kernel leaves the connection alone, and the options
/// are again the application's.
#[test]
fn live_peer_is_alive_then_a_vanished_one_is_dead_and_options_come_back() {
    let Some(sc) = scenario("probe_alive_then_dead", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let config = config_file(CLIENT_ONLY);
    let launch = sc.launch();
    // `idle_no_keepalive` only once a re-probe, due after `PROBE_AFTER`, has had as long as any
    // change may take to show: an answer read late on a busy machine never lets it through.
    let idle_after = PROBE_AFTER + launch.scans(SCANS_TO_SHOW);
    let args = probe_fast(idle_after);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = launch
        .args(&args)
        .args(&["--config", config.path().to_str().unwrap()])
        .start()
        .expect("agent");
    let client = sc.client(&["idle-report"]);
    let mut seen = Vec::new();
    let original = first_options(&client, &mut seen);
    assert_eq!(original[0], 0, "keepalive off: {original:?}");

    let started = Instant::now();
    let alive = wait_for("peer_alive", agent.after(PROBE_AFTER), || {
        client_conn(&agent, net, 7000).filter(|c| probe_result(c) == Some("peer_alive"))
    });
    assert_eq!(alive["probe"]["answered"], true, "{alive}");
    let rtt = alive["probe"]["rtt_ms"].as_f64().expect("rtt_ms");
    eprintln!(
        "peer_alive {:?} after the start, rtt_ms {rtt}",
        started.elapsed()
    );
    // A veth round trip, plus what the kernel's timer wheel adds to the keepalive timer (up to
    // 64 jiffies late for a 2 s timer): never the wait for that timer (the probe's whole
    // keepidle when the connection had just been heard from), which is not the peer's.
    assert!(
        rtt < 250.0,
        "the round trip, not the keepalive timer's wait: {rtt}"
    );
    assert!(suspects(&alive).is_empty(), "{alive}");
    // Probed again after each `PROBE_AFTER` of silence, never suspect: watched until the
    // connection (older than `started`) has been quiet, but for the answers, past `idle_after`
    // and a few scans, when idle_no_keepalive would be raised without them.
    while started.elapsed() < idle_after + agent.scans(4) {
        let c = client_conn(&agent, net, 7000).expect("connection");
        assert!(suspects(&c).is_empty(), "a live peer is not suspect: {c}");
        std::thread::sleep(Duration::from_millis(200));
    }
    options(&client, &mut seen);
    // Keepalive on, the idle time = the silence that made it a candidate (at least `after`,
    // 2 s), probes 1 s apart, 127 of them, no user timeout.
    assert!(
        seen.iter()
            .any(|o| o[0] == 1 && o[1] >= 2 && o[2] == 1 && o[3] == 127 && o[4] == 0),
        "the probe's options were on the socket: {seen:?}"
    );
    let answered = agent
        .metric("tcp_liveness_probes_total{result=\"answered\"}")
        .unwrap_or(0.0);
    assert!(
        answered >= 2.0,
        "re-probed after each 2 s of silence: {answered}"
    );

    net.server.drop_input().expect("iptables DROP");
    let dropped = Instant::now();
    let dead = wait_for(
        "peer_dead",
        // Silent for `after`, then a scan offers it, the probe thread starts the probe, which
        // runs out unanswered; a probe-thread round finishes it and a scan raises the verdict.
        agent.after(PROBE_AFTER + probe_runs(PROBE_INTERVAL, PROBE_COUNT)),
        // Raised (confirmed by a scan), not only probed.
        || {
            client_conn(&agent, net, 7000).filter(|c| {
                probe_result(c) == Some("peer_dead") && suspects(c).contains(&"peer_dead".into())
            })
        },
    );
    eprintln!("peer_dead {:?} after the drop", dropped.elapsed());
    assert_eq!(suspects(&dead), ["peer_dead"], "{dead}");
    assert!(
        dead["probe"]["unanswered"].as_u64() >= Some(PROBE_COUNT.into()),
        "{dead}"
    );
    assert_eq!(dead["probe"]["answered"], false);
    // Not before `count` probes `interval` apart could go unanswered after `after` of silence.
    let silent = dead["since_peer_seconds"].as_f64().expect("silence");
    let proven_after = PROBE_AFTER + PROBE_INTERVAL * PROBE_COUNT;
    assert!(
        silent >= proven_after.as_secs_f64(),
        "dead before its probes could go unanswered: {dead}"
    );
    let unanswered = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        agent
            .metric("tcp_liveness_probes_total{result=\"unanswered\"}")
            .filter(|&n| n >= 1.0)
    });
    assert!(unanswered.is_some(), "unanswered counted");
    let suspected = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        agent
            .metric("tcp_liveness_suspect_connections{reason=\"peer_dead\"}")
            .filter(|&n| n >= 1.0)
    });
    assert!(suspected.is_some(), "peer_dead among the suspects");

    // Restored (before the verdict was raised): the application's getsockopt, which the peer
    // reports every 20 ms, answers as before the first probe.
    wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        options(&client, &mut seen);
        seen.last().filter(|o| **o == original).copied()
    });
    assert_eq!(seen.last(), Some(&original), "options put back: {seen:?}");
    // The kernel did not reset the connection because of the probes; the verdict stays, and
    // no new probe starts in longer than one would take to.
    std::thread::sleep(PROBE_AFTER + agent.scans(4));
    let later = client_conn(&agent, net, 7000).expect("still established");
    assert_eq!(suspects(&later), ["peer_dead"], "{later}");
    options(&client, &mut seen);
    assert_eq!(seen.last(), Some(&original), "not probed again: {seen:?}");
}

/// `max_per_scan = 1` with three dead-peer candidates: they are probed one at a time (each
/// probe runs count × interval), never two at once; a connection with data in flight to the
/// same vanished peer is never probed. Opt-in by an override (`probe = true`) while
/// `[probe].enabled` is false: the server's sockets (not matched) are never probed.
#[test]
fn caps_hold_and_data_in_flight_is_never_probed() {
    let Some(sc) = scenario("probe_caps", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    // Probe after 2 s of silence, 2 probes 1 s apart.
    let (after, interval, count) = (Duration::from_secs(2), Duration::from_secs(1), 2);
    let mut config = tempfile::NamedTempFile::new().expect("temp file");
    write!(
        config,
        "idle_after = \"1h\"\nunresponsive_after = \"2s\"\n[probe]\nenabled = false\nafter = \"2s\"\ninterval = \"1s\"\n\
         count = 2\nmax_per_scan = 1\n[[override]]\nremote_port = 7000\nprobe = true\n"
    )
    .expect("write config");
    let _server = sc.server(&["echo"]);
    let agent = sc
        .launch()
        .args(&["--config", config.path().to_str().unwrap()])
        .start()
        .expect("agent");
    let _idle = sc.client(&["hold", "3"]);
    let _sender = sc.client(&["send"]);
    std::thread::sleep(Duration::from_millis(500));
    net.server.drop_input().expect("iptables DROP");

    let client_conns = || -> Vec<Value> {
        agent
            .connections_in(net.client.inode())
            .into_iter()
            .filter(|c| c["state"] == "established")
            .collect()
    };
    let in_flight = |c: &Value| c["unacked_bytes"].as_u64().unwrap_or(0) > 0;
    let mut most_at_once = 0;
    // Silent for `after`, then three probes in turn, each offered by a scan once the one before
    // finished.
    let deadline = Instant::now() + agent.after(after + 3 * probe_runs(interval, count));
    let dead = loop {
        let conns = client_conns();
        let running = conns
            .iter()
            .filter(|c| probe_result(c) == Some("in_progress"))
            .count();
        most_at_once = most_at_once.max(running);
        for c in &conns {
            assert!(
                !in_flight(c) || c["probe"].is_null(),
                "data in flight: never probed: {c}"
            );
            // The probe's keepalive is not the application's: never judged as such.
            assert!(
                !suspects(c).contains(&"keepalive_unanswered".to_owned()),
                "{c}"
            );
        }
        let dead = conns
            .iter()
            .filter(|c| probe_result(c) == Some("peer_dead"))
            .count();
        if dead == 3 || Instant::now() > deadline {
            break dead;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead, 3, "each idle connection probed in turn");
    assert_eq!(most_at_once, 1, "max_per_scan = 1: one probe at a time");
    let conns = client_conns();
    let sender = conns
        .iter()
        .find(|c| in_flight(c))
        .expect("the sender's connection, data unacknowledged");
    assert!(sender["probe"].is_null(), "{sender}");
    assert!(
        suspects(sender).contains(&"peer_unresponsive".to_owned()),
        "{sender}"
    );
    for c in agent.connections_in(net.server.inode()) {
        assert!(c["probe"].is_null(), "not opted in: {c}");
    }
}

/// Both ends probed, the server's input dropped: the server's own probes still reach the
/// client, but a segment the peer sends on its own proves it exists, not that our probe got
/// through. The client's probe is never `answered` (nor `peer_alive`) while the path to the
/// server is broken; once the server's probing ends, the client's proves the peer dead.
#[test]
fn the_peers_own_keepalive_is_no_answer_to_our_probe() {
    let Some(sc) = scenario("probe_one_way", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    // Both sides probed (no override); never idle_no_keepalive.
    let args = probe_fast(Duration::from_hours(1));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = sc.client(&["idle-report"]);
    let mut seen = Vec::new();
    first_options(&client, &mut seen);
    // Before the agent starts, so before any probe however slow the machine: a probe that ran
    // before the path broke would rightly be answered.
    net.server.drop_input().expect("iptables DROP");
    let agent = sc.launch().args(&args).start().expect("agent");
    // The server's round (PROBE_AFTER, then its probes) keeps the client hearing from it; the
    // client's own round can prove the peer dead only after that: two rounds.
    let round = PROBE_AFTER + probe_runs(PROBE_INTERVAL, PROBE_COUNT);
    let deadline = Instant::now() + agent.after(round * 2);
    let mut results = Vec::new();
    let dead = loop {
        assert!(
            Instant::now() < deadline,
            "no peer_dead for the client; results seen: {results:?}"
        );
        if let Some(c) = client_conn(&agent, net, 7000) {
            assert_ne!(c["probe"]["answered"], true, "answered: {c}");
            let result = probe_result(&c).map(str::to_owned);
            if results.last() != Some(&result) {
                results.push(result.clone());
            }
            assert_ne!(result.as_deref(), Some("peer_alive"), "{c}");
            if result.as_deref() == Some("peer_dead") {
                break c;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        dead["probe"]["unanswered"].as_u64() >= Some(u64::from(PROBE_COUNT)),
        "{dead}"
    );
    let answered = agent.metric("tcp_liveness_probes_total{result=\"answered\"}");
    assert_eq!(answered, Some(0.0), "no probe answered on either side");
    eprintln!("client probe results: {results:?}");
}

/// SIGTERM during a probe: the agent puts the options back before it exits.
#[test]
fn probes_in_progress_are_restored_at_shutdown() {
    let Some(sc) = scenario("probe_shutdown", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    // A probe of a dead peer runs 14 × 30 s: it is surely still running at the stop.
    let DeadPeerProbe {
        mut agent,
        client,
        original,
        mut seen,
    } = probe_a_dead_peer(&sc, CLIENT_ONLY, &["--probe", "--probe-interval", "30s"]);
    let probing = client_conn(&agent, net, 7000).expect("connection");
    assert_eq!(probe_result(&probing), Some("in_progress"), "{probing}");
    let status = agent.stop().expect("stop");
    assert!(status.success(), "{status}");
    // Put back before the exit; the peer reports its options every 20 ms.
    let restored = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        options(&client, &mut seen);
        seen.last().filter(|o| **o == original).copied()
    });
    assert_eq!(restored, Some(original), "put back at shutdown: {seen:?}");
}

/// Bad `[probe]` values: one line naming the key or flag, exit 2, before anything is loaded.
#[test]
fn bad_probe_settings_exit_2_with_one_line() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(AGENT)
            .arg("run")
            .args(args)
            .env_remove("TCP_LIVENESS_LISTEN")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--probe-count", "0"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "tcp-liveness: --probe-count: 0 is out of range: must be between 1 and 100\n"
    );
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    write!(file, "[probe]\ninterval = \"2500ms\"\n").expect("write");
    let path = file.path().to_str().unwrap();
    let (code, stderr) = run(&["--config", path]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "tcp-liveness: config {path}: [probe] interval: 2s 500ms is not a whole number of \
             seconds (the kernel's keepalive timers take seconds)\n"
        )
    );
}
