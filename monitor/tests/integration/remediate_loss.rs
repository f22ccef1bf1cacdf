//! A `peer_unresponsive` policy over a lossy but live link selects nothing: senders streaming to
//! a live peer across a veth that drops packets at random each way (`iptables -m statistic`,
//! both namespaces), the agent with a dry-run `[[remediate]]` policy at the default `min_age`.
//!
//! The bound it checks: remediation takes a live peer for dead only when, in one
//! retransmission-timeout episode, every retransmission (or its ACK) is lost until the silence
//! passes `min_age`, and one more sent after the first look at it, and at least the policy's
//! `min_retransmits` in a row (8 by default). With loss p each way each is lost with
//! probability q = 1 − (1 − p)²; with a base RTO r the retransmissions go out at r·(2ⁱ − 1), so
//! k = those before `min_age` plus one must all fail: q^max(k+1, 8) per episode. Loss
//! inflates r (the RTT samples vary): measured here, 0.2–0.9 s at 10% loss, so k is 5 to 7 for
//! 30 s, under the floor of 8. At p = 0.05, q ≈ 0.0975 and q⁸ ≈ 8.2·10⁻⁹. Every RTO firing is counted as an episode
//! (`TcpExtTCPTimeouts` of the senders' namespace, an upper bound on the episodes), r is the
//! largest base RTO (`ss`, not backed off) seen during the run, and the test asserts that the
//! expected false selections stay under 10⁻³ (about a hundred firings: 10⁻⁴). So a selection
//! here is a bug, not bad luck. The verdict threshold is 100 ms (`--unresponsive-after`), half
//! the kernel's minimum RTO: RTO episodes raise verdicts on live connections, and remediation's own
//! checks (`min_age`, the looks) are what keep them: the test fails if those are skipped.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    time::{Duration, Instant},
};

use harness::{netns::Netns, peer::Peer, privilege::Need, ss, wait::wait_for};
use monitor::config::{DEFAULT_MIN_AGE, DEFAULT_MIN_RETRANSMITS};

use crate::{
    common::scenario,
    remediate::{config_file, cookies_to, remediations, senders},
};

/// Loss each way.
const LOSS: f64 = 0.05;
/// Live connections streaming 1000 bytes every 100 ms (`send-report`).
const SENDERS: usize = 20;
/// How long the link stays lossy while the agent watches: about a hundred RTO episodes.
const LOSSY_FOR: Duration = Duration::from_mins(1);
/// `--unresponsive-after`: short, so that the loss raises verdicts on live connections.
const UNRESPONSIVE_AFTER: &str = "100ms";
/// The largest expected number of false selections the test accepts.
const BOUND: f64 = 1e-3;

/// A `TcpExt` counter of `ns` (`/proc/net/netstat` is per namespace).
///
/// # Panics
/// When the file cannot be read or has no such counter.
fn tcp_ext(ns: &Netns, counter: &str) -> u64 {
    let out = ns
        .command("cat")
        .arg("/proc/net/netstat")
        .output()
        .expect("cat /proc/net/netstat");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines[..] else {
        panic!("TcpExt header and values in {text}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find_map(|(name, value)| (name == counter).then(|| value.parse().expect("a count")))
        .unwrap_or_else(|| panic!("{counter} in {names}"))
}

/// The established sockets in `ns` to `port`, by cookie (`ss`).
fn sockets_to(ns: &Netns, port: u16) -> BTreeMap<u64, ss::SsSocket> {
    ss::sockets(ns)
        .expect("ss")
        .into_iter()
        .filter(|s| s.state == "established" && s.remote.ends_with(&format!(":{port}")))
        .filter_map(|s| Some((s.cookie?, s)))
        .collect()
}

/// The largest retransmission timeout among `sockets` not backed off (`rto:` in ms, without
/// `backoff:`): the RTO an episode starting now would begin with.
fn largest_base_rto_ms(sockets: &BTreeMap<u64, ss::SsSocket>) -> Option<f64> {
    sockets
        .values()
        .filter(|s| !s.fields.contains_key("backoff"))
        .filter_map(|s| s.fields.get("rto")?.parse::<f64>().ok())
        .reduce(f64::max)
}

/// What each sender says it has sent so far (`sent BYTES`, asked with SIGUSR1).
fn sent(peers: &[Peer]) -> Vec<u64> {
    peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.signal_usr1().expect("SIGUSR1");
            let line = p.next_line(Duration::from_secs(5)).expect("a sent line");
            let bytes = line
                .strip_prefix("sent ")
                .unwrap_or_else(|| panic!("sender {i}: {line}"));
            bytes.parse().expect("bytes")
        })
        .collect()
}

/// How many retransmissions go out before `min_age` of silence with base RTO `rto`: those at
/// rto·(2ⁱ − 1) < `min_age`.
fn retransmissions_before(min_age: Duration, rto: Duration) -> i32 {
    (1..=64)
        .filter(|i| rto.as_secs_f64() * (2f64.powi(*i) - 1.0) < min_age.as_secs_f64())
        .count()
        .try_into()
        .expect("a small count")
}

/// Asserts that every sender's connection (`cookies`, in `client_ns`) is still there and that
/// each sender still moves data: its own count of bytes sent and the kernel's bytes acked grow,
/// and it reported no error. Returns the connections as `ss` showed them first.
fn assert_every_sender_moves_data(
    client_ns: &Netns,
    peers: &[Peer],
    cookies: &HashSet<u64>,
) -> BTreeMap<u64, ss::SsSocket> {
    let sockets = sockets_to(client_ns, 7000);
    assert_eq!(
        sockets.keys().copied().collect::<HashSet<_>>(),
        *cookies,
        "ss"
    );
    let sent_before = sent(peers);
    // A sender stalled for `min_age` is what remediation exists for: the deadline.
    wait_for("every sender to move data", DEFAULT_MIN_AGE, || {
        let now = sockets_to(client_ns, 7000);
        let acked = |s: &ss::SsSocket| s.fields.get("bytes_acked").map(|v| v.parse::<u64>());
        let moved = sockets.iter().all(|(cookie, then)| {
            let now = now.get(cookie).and_then(acked).and_then(Result::ok);
            now > acked(then).and_then(Result::ok)
        });
        moved.then_some(())
    });
    let sent_after = sent(peers);
    for (i, (before, after)) in sent_before.iter().zip(&sent_after).enumerate() {
        assert!(
            after > before,
            "sender {i} sent {before} then {after} bytes"
        );
    }
    for (i, p) in peers.iter().enumerate() {
        let error = p.take_lines().into_iter().find(|l| l.starts_with("error"));
        assert_eq!(error, None, "sender {i}");
    }
    sockets
}

#[test]
fn a_peer_unresponsive_policy_over_a_lossy_live_link_selects_nothing() {
    let Some(sc) = scenario("remediate_loss", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["sink"]);
    let policy = config_file("[[remediate]]\nreason = \"peer_unresponsive\"\ndry_run = true\n");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = sc
        .launch()
        .args(&["--unresponsive-after", UNRESPONSIVE_AFTER])
        .args(&["--config", policy.path().to_str().expect("UTF-8 path")])
        .rust_log(Some("info"))
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent");
    let peers = senders(net, "7000", SENDERS);
    let cookies = cookies_to(&net.client, 7000);
    assert_eq!(cookies.len(), SENDERS, "the senders' connections (ss)");
    let timeouts_before = tcp_ext(&net.client, "TCPTimeouts");
    net.server.drop_input_randomly(LOSS).expect("iptables");
    net.client.drop_input_randomly(LOSS).expect("iptables");

    // Watch: nothing selected at any scan; note the live connections flagged on the way.
    let mut flagged = HashSet::new();
    // No episode starts with less than the kernel's minimum RTO (200 ms).
    let mut rto_ms: f64 = 200.0;
    let started = Instant::now();
    while started.elapsed() < LOSSY_FOR {
        for c in agent.connections_in(net.client.inode()) {
            let suspect = c["suspect"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "peer_unresponsive"));
            if let (true, Some(cookie)) = (suspect, c["cookie"].as_u64()) {
                flagged.insert(cookie);
            }
        }
        assert_eq!(
            remediations(&agent, "dry_run"),
            Some(0),
            "a live connection selected"
        );
        let sockets = sockets_to(&net.client, 7000);
        rto_ms = rto_ms.max(largest_base_rto_ms(&sockets).unwrap_or(0.0));
        std::thread::sleep(agent.scan_interval());
    }
    let episodes = tcp_ext(&net.client, "TCPTimeouts") - timeouts_before;

    let sockets = assert_every_sender_moves_data(&net.client, &peers, &cookies);
    // The loss did its part: every sender retransmitted, RTOs fired.
    let retransmits: Vec<u64> = sockets.values().map(ss::SsSocket::total_retrans).collect();
    assert!(
        retransmits.iter().all(|&r| r > 0),
        "tcpi_total_retrans: {retransmits:?}"
    );
    assert!(episodes > 0, "no retransmission timeout fired");
    // ...and raised verdicts on live connections, which remediation then had to keep.
    assert!(
        !flagged.is_empty(),
        "no live connection was flagged peer_unresponsive"
    );
    // The bound for what was seen, with the slowest start of an episode seen.
    let k = retransmissions_before(DEFAULT_MIN_AGE, Duration::from_secs_f64(rto_ms / 1000.0));
    // Those before min_age and one more, and never fewer than the policy's floor of timeouts
    // in a row.
    let unanswered = (k + 1).max(i32::from(DEFAULT_MIN_RETRANSMITS));
    let per_episode = (1.0 - (1.0 - LOSS).powi(2)).powi(unanswered);
    let expected = per_episode * episodes as f64;
    assert!(
        expected < BOUND,
        "{episodes} episodes × {per_episode:.1e} (RTO {rto_ms} ms, k = {k}) = {expected:.1e} expected false selections"
    );

    assert_eq!(
        remediations(&agent, "dry_run"),
        Some(0),
        "a live connection selected"
    );
    for result in ["destroyed", "rate_limited"] {
        assert_eq!(remediations(&agent, result), Some(0), "{result}");
    }
    let log = fs::read_to_string(log.path()).expect("agent log");
    assert!(!log.contains("would destroy"), "{log}");
    eprintln!(
        "{SENDERS} senders, {LOSS} loss each way for {LOSSY_FOR:?}: {episodes} RTO firings, \
         retransmits {} in all (min {:?}), {} connections flagged peer_unresponsive, 0 selected; \
         RTO {rto_ms} ms, k = {k}, expected false selections {expected:.1e}",
        retransmits.iter().sum::<u64>(),
        retransmits.iter().min(),
        flagged.len()
    );
}
