//! False positives under random loss: live peers over a link that drops 30% of the packets
//! each way (`iptables -m statistic --mode random` in both namespaces). A probe round of
//! `count` probes calls a live peer dead only when every probe or its answer is lost:
//! (1 − 0.7²)^count = 0.51^count, 8·10⁻⁵ for the default 14 (docs/active-modes.md, "Probe"). Over the rounds
//! this test runs, no live peer may be proven dead, and a `peer_dead` policy selects nothing.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use harness::{peer::Peer, privilege::Need};

use crate::common::scenario;

/// Loss each way.
const LOSS: f64 = 0.3;
/// Idle receive-only connections to a live peer.
const CONNECTIONS: usize = 20;
/// `--probe-after` and `--probe-interval`; the count is the default's.
const PROBE_AFTER: Duration = Duration::from_secs(2);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The default `[probe] count`.
const DEFAULT_COUNT: u32 = 14;

#[test]
fn live_peers_behind_a_lossy_link_are_never_proven_dead() {
    let Some(sc) = scenario("loss_probe", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let mut config = tempfile::NamedTempFile::new().expect("temp file");
    // Clients only (the server's own probes are no answer to the clients' anyway); a dry-run
    // policy to see what remediation would select.
    write!(
        config,
        "[[override]]\nlocal_port = 7000\nprobe = false\n\
         [[remediate]]\nreason = \"peer_dead\"\nmin_age = \"0s\"\n"
    )
    .expect("write config");
    let agent = sc
        .launch()
        .args(&["--idle-after", "1h", "--probe", "--probe-after", "2s"])
        .args(&["--probe-interval", "1s"])
        .args(&["--config", config.path().to_str().expect("UTF-8 path")])
        .start()
        .expect("agent");
    let clients: Vec<Peer> = (0..CONNECTIONS)
        .map(|_| sc.client(&["idle-report"]))
        .collect();
    for client in &clients {
        client
            .next_line(Duration::from_secs(5))
            .expect("the client's options line");
    }
    net.server.drop_input_randomly(LOSS).expect("iptables");
    net.client.drop_input_randomly(LOSS).expect("iptables");

    // Three whole rounds of an unanswered probe (the longest a round runs), each connection
    // probed again after each answer.
    let round = PROBE_AFTER + PROBE_INTERVAL * DEFAULT_COUNT + PROBE_INTERVAL / 2;
    let started = Instant::now();
    while started.elapsed() < round * 3 {
        for c in agent.connections_in(net.client.inode()) {
            assert_ne!(c["probe"]["result"], "peer_dead", "a live peer: {c}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let metric = |result: &str| {
        agent
            .metric(&format!("tcp_liveness_probes_total{{result=\"{result}\"}}"))
            .unwrap_or(0.0)
    };
    let dead = metric("unanswered");
    assert!(dead < 0.5, "{dead} rounds proved a live peer dead");
    // Enough rounds ran for the claim to mean something: each connection answered at least
    // twice (a round lasts PROBE_AFTER plus a few intervals under this loss).
    let answered = metric("answered");
    assert!(
        answered >= (2 * CONNECTIONS) as f64,
        "{answered} rounds answered"
    );
    let selected = agent
        .metric("tcp_liveness_remediations_total{reason=\"peer_dead\",result=\"dry_run\"}")
        .unwrap_or(0.0);
    assert!(
        selected < 0.5,
        "remediation selected {selected} live connections"
    );
    // The clients report their options as the probes change them, and any error.
    for (i, client) in clients.iter().enumerate() {
        let errors: Vec<String> = client
            .take_lines()
            .into_iter()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert!(errors.is_empty(), "client {i}: {errors:?}");
    }
    eprintln!(
        "{answered} probe rounds answered over {:?}",
        started.elapsed()
    );
}
