//! Remediation on the real kernel: applications blocked in `send()` to a vanished peer
//! (iptables DROP in the peer's namespace) and healthy controls beside them, the real agent with
//! a `[[remediate]]` policy (`tcp-liveness destroy` by hand is in `destroy.rs`). `ss` and the
//! applications' own errors are the oracles. Thresholds are seconds and the scan interval 250 ms.

use std::{
    collections::HashSet,
    fs,
    io::Write as _,
    time::{Duration, Instant},
};

use harness::{
    agent::{self, Agent, Launch},
    capabilities::{self, NET_ADMIN, mask},
    netns::{NetPair, Netns},
    peer::Peer,
    ports::free_port,
    privilege::Need,
    scenario::Scenario,
    ss,
    wait::{wait_for, wait_for_optional},
};
use serde_json::Value;

use crate::common::{AGENT, SCANS_TO_SHOW, agent_only, scenario};

/// `peer_unresponsive` after 2 s of silence with data outstanding.
const FAST: &[&str] = &["--unresponsive-after", "2s"];
/// FAST's `--unresponsive-after`.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

pub(crate) fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

/// The agent with `policy` as its config file, logging at info into `log`.
fn agent_with(
    sc: &Scenario,
    policy: &tempfile::NamedTempFile,
    log: &tempfile::NamedTempFile,
) -> Agent {
    let path = policy.path().to_str().expect("UTF-8 path");
    sc.launch()
        .args(FAST)
        .args(&["--config", path])
        .rust_log(Some("info"))
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent")
}

/// `n` clients in `net.client` sending to `port` until a send fails (`send-report`).
pub(crate) fn senders(net: &NetPair, port: &str, n: usize) -> Vec<Peer> {
    (0..n)
        .map(|_| {
            Peer::start(
                &net.client,
                &["client", &net.server_ip, port, "send-report"],
            )
            .expect("peer")
        })
        .collect()
}

/// Cookies of the established sockets in `ns` whose peer port is `port` (`ss`).
pub(crate) fn cookies_to(ns: &Netns, port: u16) -> HashSet<u64> {
    ss::sockets(ns)
        .expect("ss")
        .into_iter()
        .filter(|s| s.state == "established" && s.remote.ends_with(&format!(":{port}")))
        .filter_map(|s| s.cookie)
        .collect()
}

/// The connections in `ns` flagged `reason`, once `n` different ones have been seen flagged.
/// Counted over successive looks, not at one: verdicts may land at different scans, and a
/// destroying policy can end the first before the last is flagged.
fn flagged(agent: &Agent, ns: &Netns, reason: &str, n: usize, within: Duration) -> Vec<Value> {
    let mut seen: std::collections::BTreeMap<u64, Value> = std::collections::BTreeMap::new();
    wait_for(&format!("{n} {reason} verdicts"), within, || {
        for c in agent.connections_in(ns.inode()) {
            let is_flagged = c["suspect"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == reason));
            if let (true, Some(cookie)) = (is_flagged, c["cookie"].as_u64()) {
                seen.entry(cookie).or_insert(c);
            }
        }
        (seen.len() >= n).then(|| seen.values().cloned().collect())
    })
}

/// `CAP_NET_ADMIN` is kept by the scan thread (and the kernel-state thread, which shares the
/// kept set) when `scan_holds_it` (the agent was given it: a destroying policy needs it, and
/// the host's conntrack is asked with it), by no thread otherwise; never by any other thread.
fn assert_net_admin_only_in_scan_threads(agent: &Agent, scan_holds_it: bool) {
    let threads = capabilities::threads(agent.pid());
    let scan = threads
        .iter()
        .find(|t| t.name == "scan")
        .expect("scan thread");
    assert_eq!(
        scan.effective & mask(&[NET_ADMIN]) != 0,
        scan_holds_it,
        "{scan:?}"
    );
    for t in threads
        .iter()
        .filter(|t| !["scan", "kernel-state"].contains(&t.name.as_str()))
    {
        assert_eq!(t.effective & mask(&[NET_ADMIN]), 0, "{t:?}");
        assert_eq!(t.permitted & mask(&[NET_ADMIN]), 0, "{t:?}");
    }
}

/// `tcp_liveness_remediations_total{reason="peer_unresponsive",result}`; None while absent.
pub(crate) fn remediations(agent: &Agent, result: &str) -> Option<u64> {
    let series = format!(
        "tcp_liveness_remediations_total{{reason=\"peer_unresponsive\",result=\"{result}\"}}"
    );
    let value = agent.metric(&series)?;
    Some(value.to_string().parse().expect("a count"))
}

/// Waits until the counter for `result` reads `n` (fails if it goes past).
fn wait_count(agent: &Agent, result: &str, n: u64, within: Duration) {
    let reached = wait_for_optional(within, || {
        remediations(agent, result).filter(|&value| value >= n)
    });
    assert_eq!(reached, Some(n), "remediations {result}");
}

#[test]
fn dead_peers_are_destroyed_within_the_rate_limit_and_healthy_controls_never_touched() {
    let Some(sc) = scenario("remediate_destroys", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _dead_server = sc.server(&["sink"]);
    let _live_server =
        Peer::start(&net.server, &["server", &net.server_ip, "7001", "sink"]).expect("peer");
    // Every connection is eligible (no matcher): only the verdict keeps the controls safe. No
    // min_age (the default waits out ordinary outages) and two timeouts in a row (the default
    // bounds false positives behind loss): the looks alone are under test.
    let policy = config_file(
        "[[remediate]]\nreason = \"peer_unresponsive\"\nmin_age = \"0s\"\nmin_retransmits = 2\ndry_run = false\n\
         max_per_minute = 1\n",
    );
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = agent_with(&sc, &policy, &log);
    assert_net_admin_only_in_scan_threads(&agent, true);
    let dead = senders(net, "7000", 3);
    let controls = senders(net, "7001", 2);
    let control_cookies = cookies_to(&net.client, 7001);
    assert_eq!(control_cookies.len(), 2, "control connections");
    assert_eq!(
        remediations(&agent, "destroyed"),
        Some(0),
        "series exist from the start"
    );

    net.server.drop_input_to_port(7000).expect("iptables DROP");
    // The bytes left unacknowledged show at the first pass over the held sockets after the drop.
    let verdicts = flagged(
        &agent,
        &net.client,
        "peer_unresponsive",
        3,
        agent.held_pass_and(UNRESPONSIVE_AFTER),
    );
    let dead_cookies: HashSet<u64> = verdicts
        .iter()
        .filter_map(|c| c["cookie"].as_u64())
        .collect();
    assert!(
        dead_cookies.is_disjoint(&control_cookies),
        "controls are not suspect"
    );

    // One application gets ECONNABORTED (tcp_abort): the first look is at the confirming scan,
    // the destroy once a retransmission sent after it went unanswered past its RTO. Not before
    // its verdict was due: the audit line's silence (below) is at least the threshold.
    let confirmed = Instant::now();
    let (errored, line) = wait_for(
        "an application's send to fail",
        proven_within(&agent),
        || {
            dead.iter()
                .enumerate()
                .find_map(|(i, p)| p.next_line(Duration::from_millis(20)).map(|l| (i, l)))
        },
    );
    eprintln!(
        "destroyed {:?} after the verdicts were seen confirmed",
        confirmed.elapsed()
    );
    assert_eq!(line, "error ECONNABORTED", "client {errored}");
    wait_count(&agent, "destroyed", 1, agent.scans(SCANS_TO_SHOW));
    wait_count(&agent, "rate_limited", 2, proven_within(&agent));

    // The rate limit holds for the minute: the other two stay, blocked; the controls never
    // see an error. Eight scans of nothing more.
    let quiet = agent.scans(8);
    let started = Instant::now();
    while started.elapsed() < quiet {
        for (i, p) in dead.iter().enumerate().filter(|(i, _)| *i != errored) {
            assert_eq!(
                p.next_line(Duration::from_millis(50)),
                None,
                "dead client {i}"
            );
        }
        for (i, p) in controls.iter().enumerate() {
            assert_eq!(p.next_line(Duration::from_millis(50)), None, "control {i}");
        }
    }
    let left = cookies_to(&net.client, 7000);
    assert_eq!(left.len(), 2, "two dead connections left (ss): {left:?}");
    let gone: Vec<u64> = dead_cookies.difference(&left).copied().collect();
    assert_eq!(gone.len(), 1, "exactly one destroyed: {gone:?}");
    assert_eq!(
        cookies_to(&net.client, 7001),
        control_cookies,
        "controls untouched (ss)"
    );
    assert_eq!(remediations(&agent, "destroyed"), Some(1));
    assert_eq!(remediations(&agent, "rate_limited"), Some(2));
    assert_eq!(remediations(&agent, "failed"), Some(0));

    let log = fs::read_to_string(log.path()).expect("agent log");
    let line = assert_audit_line(&log, gone[0], net.client.inode(), &control_cookies);
    assert!(
        audit_seconds(line, "since_peer_seconds") >= UNRESPONSIVE_AFTER.as_secs_f64(),
        "destroyed only once its peer was silent past the threshold: {line}"
    );
}

/// How long after a `peer_unresponsive` verdict (FAST's threshold) remediation may take to
/// prove the silence: the next retransmission comes within the RTO at the verdict (about the
/// silence so far: the RTO doubles from 200 ms), and must then go unanswered for its own RTO
/// (twice that), plus the looks' scans.
fn proven_within(agent: &Agent) -> Duration {
    agent.scans(SCANS_TO_SHOW) + UNRESPONSIVE_AFTER * 3
}

/// The value of `field=SECONDS` in an audit line.
///
/// # Panics
/// When the line has no such field, or its value is not a number.
fn audit_seconds(line: &str, field: &str) -> f64 {
    let value = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("{field} in {line}"));
    value
        .trim_matches('"')
        .parse()
        .unwrap_or_else(|e| panic!("{field}={value}: {e}"))
}

/// The destroy's audit line names who, what, why and the result; the controls are in none.
/// Returns the line.
fn assert_audit_line<'log>(
    log: &'log str,
    cookie: u64,
    netns: u64,
    controls: &HashSet<u64>,
) -> &'log str {
    let line = log
        .lines()
        .find(|l| l.contains("remediation: connection destroyed"))
        .expect("an audit line for the destroy");
    for field in [
        format!("cookie={cookie}"),
        "result=\"destroyed\"".into(),
        "policy=#1 peer_unresponsive".into(),
        "comm=\"python3\"".into(),
        format!("netns={netns}"),
        "state=\"established\"".into(),
        "retransmits=".into(),
        "unacked_bytes=".into(),
        "since_peer_seconds=".into(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
    for cookie in controls {
        assert!(
            !log.contains(&format!("cookie={cookie} ")),
            "control {cookie} in the log"
        );
    }
    line
}

#[test]
fn dry_run_destroys_nothing_but_logs_and_counts() {
    let Some(sc) = scenario("remediate_dry_run", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["sink"]);
    // dry_run is the default.
    let policy = config_file(
        "[[remediate]]\nreason = \"peer_unresponsive\"\nmin_age = \"0s\"\nmin_retransmits = 2\n",
    );
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = agent_with(&sc, &policy, &log);
    // Started as root: the scan thread keeps CAP_NET_ADMIN for the conntrack questions, though
    // this policy destroys nothing (a dry run started without it: the test below).
    assert_net_admin_only_in_scan_threads(&agent, true);
    let dead = senders(net, "7000", 1);
    let cookies = cookies_to(&net.client, 7000);
    net.server.drop_input().expect("iptables DROP");
    flagged(
        &agent,
        &net.client,
        "peer_unresponsive",
        1,
        agent.held_pass_and(UNRESPONSIVE_AFTER),
    );
    wait_count(&agent, "dry_run", 1, proven_within(&agent));

    // Reported once, never destroyed: eight more scans change nothing.
    assert_eq!(
        dead[0].next_line(agent.scans(8)),
        None,
        "the send still blocks"
    );
    assert_eq!(cookies_to(&net.client, 7000), cookies, "ss still shows it");
    assert_eq!(remediations(&agent, "dry_run"), Some(1));
    assert_eq!(remediations(&agent, "destroyed"), Some(0));
    let log = fs::read_to_string(log.path()).expect("agent log");
    let line = log
        .lines()
        .find(|l| l.contains("remediation (dry run): would destroy the connection"))
        .expect("an audit line for the dry run");
    let cookie = cookies.iter().next().expect("one");
    assert!(line.contains(&format!("cookie={cookie}")), "{line}");
    assert!(line.contains("dry_run=true"), "{line}");
}

/// A destroying policy needs `CAP_NET_ADMIN`: a start without it exits 2 naming it, before
/// anything is loaded; a dry-run policy starts without it.
#[test]
fn a_destroying_policy_without_cap_net_admin_does_not_start() {
    let Some(sc) = agent_only("remediate_net_admin", Need::Root) else {
        return;
    };
    let start = "+bpf,+perfmon,+sys_admin,+sys_ptrace,+dac_read_search";
    let destroying = config_file("[[remediate]]\nreason = \"peer_dead\"\ndry_run = false\n");
    let path = destroying.path().to_str().expect("UTF-8 path");
    let (code, stderr) = agent::run_confined(
        AGENT,
        start,
        free_port().expect("a free loopback port"),
        &["--config", path],
    );
    assert_eq!(code, Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "tcp-liveness: missing capability CAP_NET_ADMIN, needed to destroy sockets"
        ),
        "{last}"
    );
    assert!(!stderr.contains("probes loaded"), "{stderr}");

    let dry_run = config_file("[[remediate]]\nreason = \"peer_dead\"\n");
    let path = dry_run.path().to_str().expect("UTF-8 path");
    let agent = sc
        .launch()
        .confined(start)
        .args(&["--config", path])
        .start()
        .expect("a dry-run policy needs no CAP_NET_ADMIN");
    assert_net_admin_only_in_scan_threads(&agent, false);
}

/// A peer that is back after the first look saves its connection, even when the kernel has
/// not asked it anything since: during retransmission backoff nothing is sent until the next
/// timer, so looks a scan apart cannot tell a dead peer from one that is back. With
/// `unresponsive_after = 3s` the verdict comes when the RTO (200 ms, doubling) has grown to
/// 3.2 s, and the scans are 250 ms apart: the drop ends right after the first look, many scans
/// before the next retransmission. That retransmission is answered, and remediation, which
/// waits for one sent after the first look to go unanswered past its RTO, leaves the
/// connection alone.
#[test]
fn a_peer_that_answers_again_after_the_first_look_is_left_alone() {
    let Some(sc) = scenario("remediate_changed", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["sink"]);
    let policy = config_file(
        "[[remediate]]\nreason = \"peer_unresponsive\"\nmin_age = \"0s\"\nmin_retransmits = 2\ndry_run = false\n",
    );
    let log = tempfile::NamedTempFile::new().expect("log file");
    let path = policy.path().to_str().expect("UTF-8 path");
    let agent = Launch::new(AGENT, free_port().expect("a free loopback port"))
        .args(&["--unresponsive-after", "3s"])
        .args(&["--config", path, "--scan-interval", "250ms"])
        .rust_log(Some("info,monitor::act::remediate=debug"))
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent");
    let client = senders(net, "7000", 1);
    let cookie = *cookies_to(&net.client, 7000)
        .iter()
        .next()
        .expect("one connection");
    net.server.drop_input().expect("iptables DROP");
    let suspects = r#"tcp_liveness_suspect_connections{reason="peer_unresponsive"}"#;
    let published = |n: f64| {
        wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
            agent.metric(suspects).filter(|v| (v - n).abs() < 0.5)
        })
        .is_some()
    };
    // The verdict (bytes left unacknowledged, from a pass over the held sockets after the drop)
    // comes first.
    wait_for(
        "the first look",
        agent.held_pass_and(Duration::from_secs(3)),
        || {
            let text = fs::read_to_string(log.path()).expect("agent log");
            text.lines()
                .any(|l| {
                    l.contains("first look recorded") && l.contains(&format!("cookie={cookie}"))
                })
                .then_some(())
        },
    );
    net.server.stop_dropping_input().expect("iptables -D");
    assert!(published(1.0), "the scan of the first look published");
    // Several looks found nothing changed before the peer was asked again.
    let looks = || {
        let text = fs::read_to_string(log.path()).expect("agent log");
        text.lines()
            .filter(|l| {
                l.contains("waiting for an unanswered") && l.contains(&format!("cookie={cookie}"))
            })
            .count()
    };
    // The next retransmission is answered: a later scan, its remediation included, published
    // without the verdict. Deadline: that retransmission's RTO, at most the silence so far, or
    // the next pass over the held sockets (which reads the bytes acknowledged), if later.
    assert!(
        wait_for_optional(agent.held_pass_and(Duration::from_secs(7)), || {
            agent.metric(suspects).filter(|v| v.abs() < 0.5)
        })
        .is_some(),
        "the verdict cleared"
    );
    assert!(
        looks() >= 2,
        "looks waited for a retransmission: {}",
        looks()
    );

    assert_eq!(remediations(&agent, "destroyed"), Some(0));
    assert_eq!(
        client[0].next_line(Duration::from_millis(500)),
        None,
        "no error"
    );
    assert!(
        cookies_to(&net.client, 7000).contains(&cookie),
        "ss: still there"
    );
    let text = fs::read_to_string(log.path()).expect("agent log");
    assert!(!text.contains("connection destroyed"), "{text}");
}

/// Probe and remediation together, the whole answer for a receive-only connection: the agent's
/// keepalive probes prove one peer gone (`peer_dead`) and a `peer_dead` policy ends the
/// connection, so the application blocked in `recv()` — which on its own would wait forever —
/// gets ECONNABORTED. A second receive-only connection, probed too, whose peer answers
/// (`peer_alive`), is never touched.
#[test]
fn a_quiet_connection_whose_peer_is_proven_dead_is_destroyed() {
    let Some(sc) = scenario("remediate_peer_dead", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _dead_server = sc.server(&["echo"]);
    let _live_server =
        Peer::start(&net.server, &["server", &net.server_ip, "7001", "echo"]).expect("peer");
    // Probe after 2 s of silence, 2 probes 1 s apart.
    let (after, interval, count) = (Duration::from_secs(2), Duration::from_secs(1), 2);
    let config = config_file(
        "idle_after = \"1h\"\n\
         [probe]\nenabled = false\nafter = \"2s\"\ninterval = \"1s\"\ncount = 2\n\
         [[override]]\nremote_port = 7000\nprobe = true\n\
         [[override]]\nremote_port = 7001\nprobe = true\n\
         [[remediate]]\nreason = \"peer_dead\"\nmin_age = \"0s\"\ndry_run = false\n",
    );
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = agent_with(&sc, &config, &log);
    let receiver = |port: &str| {
        let peer = Peer::start(
            &net.client,
            &["client", &net.server_ip, port, "recv-report"],
        )
        .expect("peer");
        let options = peer
            .next_line(Duration::from_secs(5))
            .expect("options line");
        assert!(options.starts_with("options 0 "), "no keepalive: {options}");
        peer
    };
    let dead = receiver("7000");
    let live = receiver("7001");
    let live_cookies = cookies_to(&net.client, 7001);
    assert_eq!(live_cookies.len(), 1, "the live connection (ss)");
    net.server.drop_input_to_port(7000).expect("iptables DROP");

    // Quiet for `after`, then a scan offers it and the probe runs `count` probes `interval`
    // apart and half an interval more; then a scan raises peer_dead, a look, and the destroy a
    // scan later.
    let probe_runs = interval * count + interval / 2;
    let started = Instant::now();
    let ended = dead
        .next_line(agent.after(after + probe_runs))
        .expect("the dead connection's recv() to fail");
    eprintln!(
        "recv() failed {:?} after the peer vanished",
        started.elapsed()
    );
    assert_eq!(ended, "error ECONNABORTED");
    assert!(cookies_to(&net.client, 7000).is_empty(), "destroyed (ss)");
    let destroyed = "tcp_liveness_remediations_total{reason=\"peer_dead\",result=\"destroyed\"}";
    let counted = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        agent.metric(destroyed).filter(|v| v.to_string() == "1")
    });
    assert!(counted.is_some(), "one peer_dead destroy counted");

    // The live peer answered its probe: alive, never suspect, never touched.
    let alive = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        agent
            .connections_in(net.client.inode())
            .into_iter()
            .find(|c| c["remote"].as_str().is_some_and(|r| r.ends_with(":7001")))
            .filter(|c| c["probe"]["result"] == "peer_alive")
    });
    let alive = alive.expect("the live connection probed and found alive");
    assert_eq!(alive["suspect"], serde_json::json!([]), "{alive}");
    assert_eq!(live.next_line(Duration::from_millis(200)), None, "no error");
    assert_eq!(
        cookies_to(&net.client, 7001),
        live_cookies,
        "untouched (ss)"
    );
    let log = fs::read_to_string(log.path()).expect("agent log");
    let audit = log
        .lines()
        .find(|l| l.contains("remediation: connection destroyed"))
        .expect("an audit line");
    assert!(audit.contains("reason=\"peer_dead\""), "{audit}");
    // Proven dead only after `count` probes went unanswered: silent for at least `after`, then
    // `count` intervals.
    assert!(
        audit_seconds(audit, "since_peer_seconds") >= (after + interval * count).as_secs_f64(),
        "destroyed before its probe could prove the peer dead: {audit}"
    );
}
