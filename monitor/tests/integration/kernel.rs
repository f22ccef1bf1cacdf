//! Kernel tests: the real programs, real TCP connections in namespaces the tests create, and the
//! agent's outputs checked against the kernel's own view (`ss`, i.e. `sock_diag/tcp_info`).
//! Run as root (`cargo xtask test`); under CI=true a missing privilege fails instead of skipping.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use harness::{
    agent::Agent,
    bpf,
    peer::Peer,
    privilege::Need,
    ss::{self, close_to},
    wait::{wait_for, wait_for_optional},
};
use serde_json::Value;

use crate::common::{SCANS_TO_SHOW, agent_only, scenario};

fn secs(c: &Value, key: &str) -> Option<f64> {
    c[key].as_f64()
}

fn by_state(conns: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for c in conns {
        *counts
            .entry(c["state"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    counts
}

#[test]
fn busy_connections_are_not_idle_and_state_counts_match_ss() {
    let Some(sc) = scenario("busy_connections", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let _clients: Vec<Peer> = (0..5).map(|_| sc.client(&["busy"])).collect();
    let agent = sc.agent();
    for ns in [&net.server, &net.client] {
        let inode = ns.inode();
        let ours = agent.connections_in(inode);
        let kernel = ss::state_counts(&ss::sockets(ns).expect("ss"));
        assert_eq!(
            by_state(&ours),
            kernel,
            "state counts in {}: agent vs ss",
            ns.name()
        );
        for c in ours.iter().filter(|c| c["state"] == "established") {
            let idle = secs(c, "idle_seconds").expect("busy connection has an idle age");
            assert!(idle < 1.0, "busy connection idle for {idle}s: {c}");
            assert_eq!(c["comm"], "python3", "{c}");
        }
    }
    let established = agent
        .metric("tcp_liveness_connections{state=\"established\"}")
        .expect("metric");
    assert!(
        established >= 10.0,
        "metric counts {established} established, test alone has 10"
    );
    let sample = |hook: &str| format!("tcp_liveness_hook_attached{{hook=\"{hook}\"}}");
    assert_eq!(agent.metric(&sample("inet_sock_set_state")), Some(1.0));
    // Nothing on the packet path by default: the kernel holds no program of the agent's for a
    // per-packet or per-send/receive hook, and the agent does not list them.
    let programs: Vec<String> = bpf::program_ids_of(agent.pid())
        .expect("the agent's descriptors")
        .into_iter()
        .filter_map(bpf::program)
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        programs
            .iter()
            .any(|p| "inet_sock_set_state".starts_with(p.as_str())),
        "the kernel lists the agent's programs: {programs:?}"
    );
    for hook in monitor::bpf::PER_PACKET_HOOKS {
        // The kernel keeps the first 15 bytes of a program's name.
        let short = &hook[..hook.len().min(15)];
        assert!(
            !programs.iter().any(|p| p == short),
            "{hook} loaded by default: {programs:?}"
        );
        assert_eq!(agent.metric(&sample(hook)), None, "{hook} listed");
    }
}

#[test]
fn idle_connection_ages_match_tcp_info() {
    let Some(sc) = scenario("idle_connection", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let agent = sc.agent();
    let client = sc.client(&["idle"]);
    std::thread::sleep(Duration::from_secs(4));
    let kernel = ss::sockets(&net.client).expect("ss");
    let ours = agent.connections_in(net.client.inode());
    let k = kernel
        .iter()
        .find(|s| s.state == "established")
        .expect("ss sees the connection");
    let c = ours
        .iter()
        .find(|c| c["state"] == "established")
        .expect("agent sees the connection");
    assert_eq!(c["pid"].as_u64(), Some(u64::from(client.pid())), "{c}");
    assert_eq!(c["remote"], format!("{}:7000", net.server_ip));
    // tcp_probe fires before the kernel applies the segment's ACK: the last ACK must still count.
    assert_eq!(
        c["unacked_bytes"].as_u64(),
        Some(0),
        "all data acknowledged: {c}"
    );
    assert!(
        !k.fields.contains_key("unacked"),
        "ss agrees nothing is in flight"
    );
    // connect() enters SYN_SENT before the kernel picks the local port: it must be filled in.
    assert_eq!(
        c["local"].as_str(),
        Some(k.local.as_str()),
        "same local address as ss"
    );
    assert_eq!(
        c["cookie"].as_u64(),
        k.cookie,
        "same socket identity as sock_diag"
    );
    for (ours_key, kernel_key) in [
        ("since_send_seconds", "lastsnd"),
        ("since_recv_seconds", "lastrcv"),
        ("since_peer_seconds", "lastack"),
    ] {
        let ours = secs(c, ours_key).unwrap_or_else(|| panic!("{ours_key} unknown: {c}"));
        let kernel = k.ms(kernel_key).expect("tcp_info field");
        assert!(
            close_to(ours, kernel),
            "{ours_key}={ours} vs {kernel_key}={kernel}"
        );
        assert!(
            ours >= 3.0,
            "{ours_key}={ours}: the connection has been idle for 4 s"
        );
    }
    let idle = secs(c, "idle_seconds").expect("idle");
    assert!(idle >= 3.0, "idle {idle}");
}

#[test]
fn close_wait_leak_is_counted_with_owner_and_growing_age() {
    let Some(sc) = scenario("close_wait", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc.agent();
    let server = sc.server(&["no-close"]);
    let _clients: Vec<Peer> = (0..3).map(|_| sc.client(&["close"])).collect();
    let inode = net.server.inode();
    let first = close_wait_with_holders(&agent, inode, 3);
    let kernel = ss::state_counts(&ss::sockets(&net.server).expect("ss"));
    assert_eq!(kernel.get("close_wait"), Some(&3), "ss agrees");
    // The owner's cgroup v2 path, as the kernel lists it for the process (the "0::" line).
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", server.pid()))
        .expect("the server's /proc/PID/cgroup");
    let cgroup = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 hierarchy");
    for c in &first {
        assert_eq!(
            c["pid"].as_u64(),
            Some(u64::from(server.pid())),
            "owner pid: {c}"
        );
        assert_eq!(c["comm"], "python3");
        assert_eq!(c["cgroup"], cgroup, "owner cgroup: {c}");
    }
    // /connections reads the live table, /metrics the last scan: the metric may lag one scan.
    wait_for(
        "3 in the close_wait metric",
        agent.scans(SCANS_TO_SHOW),
        || {
            agent
                .metric("tcp_liveness_connections{state=\"close_wait\"}")
                .filter(|&n| n >= 3.0)
        },
    );
    let age_before = secs(&first[0], "state_age_seconds").expect("state age known");
    std::thread::sleep(Duration::from_secs(2));
    let later = agent.connections_in(inode);
    let same = later
        .iter()
        .find(|c| c["cookie"] == first[0]["cookie"])
        .expect("still there");
    let age_after = secs(same, "state_age_seconds").expect("state age");
    assert!(
        age_after >= age_before + 1.5,
        "state age grows: {age_before} -> {age_after}"
    );
}

#[test]
fn vanished_peer_shows_unacked_retransmits_and_silence() {
    let Some(sc) = scenario("vanished_peer", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let agent = sc.agent();
    let _client = sc.client(&["send"]);
    let inode = net.client.inode();
    std::thread::sleep(Duration::from_secs(1));
    let healthy = agent.connections_in(inode);
    let before = healthy
        .iter()
        .find(|c| c["state"] == "established")
        .expect("connection");
    assert!(
        secs(before, "since_peer_seconds").expect("peer seen") < 1.0,
        "{before}"
    );
    let cookie = before["cookie"].clone();

    net.server.drop_input().expect("iptables DROP");
    let dropped = Instant::now();
    // At least 3 s of silence from the peer before the first look, 2 s more before the second.
    std::thread::sleep(Duration::from_secs(3));
    let find = || {
        agent
            .connections_in(inode)
            .into_iter()
            .find(|c| c["cookie"] == cookie)
            .expect("tracked")
    };
    let retransmits = |c: &Value| c["retransmits"].as_u64().unwrap_or(0);
    // Retransmissions reach the table through their own event; the bytes left unacknowledged
    // are a value only the kernel keeps, read by a pass over the held sockets after the drop.
    let first = wait_for(
        "bytes unacknowledged and retransmitted since the drop",
        agent.held_pass_and(Duration::ZERO),
        || {
            let c = find();
            (c["unacked_bytes"].as_u64().unwrap_or(0) > 0 && retransmits(&c) > 0).then_some(c)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    // The kernel doubles its retransmission timeout at each one (from 200 ms), so the next
    // comes within as long again as the drop is old; then a pass to read the send queue.
    let next_retransmission = dropped.elapsed() * 2;
    let second = wait_for(
        "another retransmission, and the send queue",
        next_retransmission + agent.held_pass_and(Duration::ZERO),
        || {
            let c = find();
            (retransmits(&c) > retransmits(&first) && c["send_queue_bytes"].is_u64()).then_some(c)
        },
    );
    let kernel = ss::sockets(&net.client)
        .expect("ss")
        .into_iter()
        .find(|s| s.cookie == cookie.as_u64())
        .expect("ss");

    // What the application wrote and the peer never acknowledged, sent or not (ss Send-Q), from
    // the kernel's own state: at least what is in flight.
    let queued = second["send_queue_bytes"].as_u64().unwrap_or(0);
    assert!(
        queued >= second["unacked_bytes"].as_u64().unwrap_or(u64::MAX),
        "send queue {queued} holds the unacknowledged bytes: {second}"
    );
    let r2 = retransmits(&second);
    assert!(
        r2 <= kernel.total_retrans(),
        "ours {r2} <= kernel total {}",
        kernel.total_retrans()
    );
    let p1 = secs(&first, "since_peer_seconds").unwrap();
    let p2 = secs(&second, "since_peer_seconds").unwrap();
    assert!(
        p1 >= 2.5 && p2 >= p1 + 1.5,
        "silence from the peer grows: {p1} -> {p2}"
    );
    let lastack = kernel.ms("lastack").expect("lastack");
    assert!(
        close_to(p2, lastack),
        "since_peer {p2} vs lastack {lastack}"
    );
    // The host-wide counter is published by the scans, /connections is live: it catches up
    // within a scan or two.
    wait_for(
        "the retransmit counter to count this socket's retransmits",
        agent.scans(SCANS_TO_SHOW / 2),
        || {
            agent
                .metric("tcp_liveness_retransmits_total")
                .filter(|&n| n >= r2 as f64)
        },
    );
}

#[test]
fn connections_opened_before_the_agent_have_correct_ages_at_first_scrape() {
    let Some(sc) = scenario("preexisting", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let server = sc.server(&["no-close"]);
    let idle = sc.client(&["idle"]);
    let _closer = sc.client(&["close"]);
    std::thread::sleep(Duration::from_secs(3));
    let agent = sc.agent();
    let kernel = ss::sockets(&net.client).expect("ss");
    let ours = agent.connections_in(net.client.inode());
    let k = kernel
        .iter()
        .find(|s| s.state == "established")
        .expect("ss sees it");
    let c = ours
        .iter()
        .find(|c| c["cookie"].as_u64() == k.cookie)
        .expect("seeded connection present");
    assert_eq!(c["seeded"], true);
    assert_eq!(
        c["pid"].as_u64(),
        Some(u64::from(idle.pid())),
        "owner from /proc: {c}"
    );
    for (ours_key, kernel_key) in [
        ("since_send_seconds", "lastsnd"),
        ("since_recv_seconds", "lastrcv"),
    ] {
        let ours = secs(c, ours_key).unwrap_or_else(|| panic!("{ours_key} unknown: {c}"));
        let kernel = k.ms(kernel_key).expect("tcp_info");
        assert!(
            close_to(ours, kernel),
            "{ours_key}={ours} vs {kernel_key}={kernel}"
        );
        assert!(
            ours >= 2.0,
            "{ours_key}={ours}: opened 3 s before the agent"
        );
    }
    // State age of a pre-existing socket is unknown to the kernel: null, not a made-up 0.
    assert!(c["state_age_seconds"].is_null(), "{c}");
    // Its keepalive setting comes from the kernel's own state (it never set SO_KEEPALIVE).
    assert_eq!(
        c["keepalive"]["enabled"], false,
        "keepalive known for a seeded socket: {c}"
    );
    let server_side = agent.connections_in(net.server.inode());
    let cw = server_side
        .iter()
        .find(|c| c["state"] == "close_wait")
        .expect("pre-existing CLOSE_WAIT");
    assert_eq!(cw["pid"].as_u64(), Some(u64::from(server.pid())));
    assert_eq!(
        server_side
            .iter()
            .filter(|c| c["state"] == "listen")
            .count(),
        1,
        "the listener (which only sock_diag can see) is listed"
    );
    // Entered on the peer's FIN, 3 s before the agent: at least as old as the last packet from
    // the peer (ss lastack), not only as old as the agent.
    let at_least = secs(cw, "state_age_at_least_seconds").expect("a lower bound");
    let kernel_cw = ss::sockets(&net.server)
        .expect("ss")
        .into_iter()
        .find(|s| s.cookie == cw["cookie"].as_u64())
        .expect("ss sees the CLOSE_WAIT socket");
    let lastack = kernel_cw.ms("lastack").expect("tcp_info lastack");
    assert!(
        at_least >= 2.0 && close_to(at_least, lastack),
        "state_age_at_least={at_least} vs lastack={lastack}"
    );
    // The closer's orphaned FIN_WAIT2 is a timewait mini-socket the kernel programs never see
    // end: it is not seeded (an entry would outlive it).
    assert!(
        ours.iter().all(|c| c["state"] != "fin_wait2"),
        "no entry for the orphaned FIN_WAIT2: {ours:?}"
    );
}

#[test]
fn churn_leaves_no_entries_behind() {
    let Some(sc) = scenario("churn", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let agent = sc.agent();
    let baseline = agent
        .metric("tcp_liveness_tracked_sockets")
        .expect("tracked");
    let _churn = sc.client(&["churn", "3000"]);
    let (si, ci) = (net.server.inode(), net.client.inode());
    let connects = "tcp_liveness_state_transitions_total{from=\"syn_sent\",to=\"established\"}";
    wait_for(
        "the agent to count every connect",
        agent.scans(2 * SCANS_TO_SHOW),
        || (agent.metric(connects).unwrap_or(0.0) >= 3000.0).then_some(()),
    );
    wait_for(
        "churned sockets to leave the table",
        agent.scans(2 * SCANS_TO_SHOW),
        || {
            let left: Vec<Value> = agent
                .connections()
                .into_iter()
                .filter(|c| {
                    (c["netns"].as_u64() == Some(si) || c["netns"].as_u64() == Some(ci))
                        && c["state"] != "listen"
                })
                .collect();
            left.is_empty().then_some(())
        },
    );
    // /metrics comes from the last scan, /connections is live: give the count one more scan.
    // Other processes on the host may open a few sockets meanwhile; 3000 leaked would show.
    let mut tracked = f64::NAN;
    let back = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        tracked = agent
            .metric("tcp_liveness_tracked_sockets")
            .expect("tracked");
        (tracked <= baseline + 20.0).then_some(())
    });
    assert!(back.is_some(), "tracked {tracked} vs baseline {baseline}");
    assert_eq!(
        agent.metric("tcp_liveness_table_insert_failures_total"),
        Some(0.0)
    );
}

#[test]
fn freed_slots_are_reused() {
    let Some(sc) = scenario("reuse", Need::RootAndKernelBtf) else {
        return;
    };
    let _server = sc.server(&["echo"]);
    let agent = sc.agent();
    let slots = || {
        bpf::map_named(agent.pid(), "SLOTS_USED")
            .and_then(|map| bpf::first_u64(map.id))
            .expect("the agent's SLOTS_USED map")
    };
    let before = slots();
    // One connection at a time, each finished (both sides closed) before the next: 1 000
    // sockets pass through the table, about two at once.
    let _churn = sc.client(&["churn-orderly", "500"]);
    let connects = "tcp_liveness_state_transitions_total{from=\"syn_sent\",to=\"established\"}";
    wait_for(
        "the agent to count every connect",
        agent.scans(2 * SCANS_TO_SHOW),
        || (agent.metric(connects).unwrap_or(0.0) >= 500.0).then_some(()),
    );
    // Freed slots go back on top of the free stack and are taken first, so the slots ever used
    // (what a scan reads, and what the agent maps) grow by a few, not by one per socket (1 000).
    let after = slots();
    assert!(
        after <= before + 32,
        "slots used {before} -> {after} over 500 sequential connections"
    );
}

#[test]
fn a_full_table_counts_insert_failures_and_keeps_working() {
    let Some(sc) = scenario("table_full", Need::RootAndKernelBtf) else {
        return;
    };
    let _net = sc.net();
    let _server = sc.server(&["echo"]);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = sc
        .launch()
        .args(&["--table-capacity", "1024"])
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent");
    assert_eq!(agent.metric("tcp_liveness_table_capacity"), Some(1024.0));
    // 700 connections are 1400 sockets (both ends), more than the table holds.
    let _many = sc.client(&["hold", "700"]);
    // Every socket past the capacity fails at least once; the count grows while the peer
    // connects, so wait for all of them rather than the first.
    let failures = wait_for(
        "insert failures to be counted",
        agent.scans(SCANS_TO_SHOW),
        || {
            agent
                .metric("tcp_liveness_table_insert_failures_total")
                .filter(|&n| n >= 1400.0 - 1024.0)
        },
    );
    let tracked = agent
        .metric("tcp_liveness_tracked_sockets")
        .expect("tracked");
    assert!(tracked <= 1024.0, "tracked {tracked} within capacity");
    assert_eq!(agent.get("/healthz"), "ok", "the agent keeps serving");
    // The kernel programs say so through aya-log, a few lines rather than one per failure.
    let text = wait_for(
        "the kernel's 'table full' log line",
        agent.scans(SCANS_TO_SHOW / 2),
        || {
            let text = std::fs::read_to_string(log.path()).ok()?;
            text.contains("socket table full").then_some(text)
        },
    );
    let lines = text
        .lines()
        .filter(|l| l.contains("socket table full"))
        .count();
    assert!(
        lines < 64,
        "{lines} log lines for {failures} failures: rate-limited"
    );
}

/// A socket missed while the table was full has no later event to retry its insert
/// when it is idle. The kernel reads list it (`tcp_liveness_untracked_sockets`) and add it once
/// there is room: 300 connections fill most of a 1024-slot table, 400 more overflow it; closing
/// the first 300 makes room, and every one of the 400 (both ends) must then be in `/connections`
/// as `ss` lists them, with nothing left untracked.
#[test]
fn sockets_missed_while_the_table_was_full_are_added_once_there_is_room() {
    let Some(sc) = scenario("table_room", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let agent = sc
        .launch()
        .args(&["--table-capacity", "1024"])
        .start()
        .expect("agent");
    let mut first = sc.client(&["hold", "300"]);
    let _second = sc.client(&["hold", "400"]);
    // Full: some of the 1400 sockets are not in the table, and the kernel read says how many.
    let untracked = wait_for(
        "the kernel read to count untracked sockets",
        agent.kernel_reads(3) + agent.scans(SCANS_TO_SHOW),
        || {
            agent
                .metric("tcp_liveness_untracked_sockets")
                .filter(|&n| n >= 1400.0 - 1024.0)
        },
    );
    let tracked = agent
        .metric("tcp_liveness_tracked_sockets")
        .expect("tracked");
    assert!(tracked <= 1024.0, "tracked {tracked} within capacity");
    // The table holds at least 1024 - (sockets outside the test) of the 1400: fewer are missing.
    assert!(untracked < 1400.0, "{untracked} untracked of 1400 sockets");

    first.stop();
    let established = |c: &Value| c["state"] == "established";
    // Not at the kernel read's own pace: the first pass over the held sockets that finds one
    // the table missed, once it has room, asks for a read (at most one ask per
    // HELD_READ_MAX_AGE), and that read adds them.
    let (ours, kernel) = wait_for(
        "every remaining connection in the table",
        agent.held_pass_and(Duration::ZERO),
        || {
            let kernel: Vec<_> = [&net.client, &net.server]
                .into_iter()
                .flat_map(|ns| ss::sockets(ns).expect("ss"))
                .filter(|s| s.state == "established")
                .collect();
            let ours: Vec<Value> = [&net.client, &net.server]
                .into_iter()
                .flat_map(|ns| agent.connections_in(ns.inode()))
                .filter(established)
                .collect();
            (kernel.len() == 800 && ours.len() == kernel.len()).then_some((ours, kernel))
        },
    );
    let cookies = |v: &[Value]| {
        let mut c: Vec<u64> = v.iter().filter_map(|c| c["cookie"].as_u64()).collect();
        c.sort_unstable();
        c
    };
    let mut kernel_cookies: Vec<u64> = kernel.iter().filter_map(|s| s.cookie).collect();
    kernel_cookies.sort_unstable();
    assert_eq!(cookies(&ours), kernel_cookies, "the same sockets as ss");
    // Fails on timeout: a socket left out of the table would still be counted.
    wait_for("no untracked sockets left", agent.kernel_reads(3), || {
        agent
            .metric("tcp_liveness_untracked_sockets")
            .filter(|&n| n < 0.5)
    });
}

#[test]
fn sigterm_exits_zero_and_unloads_every_program() {
    let Some(sc) = agent_only("shutdown", Need::RootAndKernelBtf) else {
        return;
    };
    let ours = |listing: &str| {
        listing
            .lines()
            .filter(|l| l.contains("name inet_sock_set_s") || l.contains("name sock_send_lengt"))
            .count()
    };
    let before = ours(&bpftool_progs());
    let mut agent = sc.agent();
    assert!(
        ours(&bpftool_progs()) > before,
        "agent's programs are loaded while it runs"
    );
    let status = agent.stop().expect("agent stops after SIGTERM");
    assert!(status.success(), "agent exit status {status}");
    // The kernel frees a program once its last link and descriptor are released, which it may
    // finish after the process is gone (deferred work): wait for that, not for a fixed time.
    // Fails on timeout: a program the agent left attached (a pinned link, a leaked descriptor
    // in a child) stays loaded.
    wait_for(
        "the agent's programs to be unloaded after its exit",
        PROGRAMS_RELEASED_WITHIN,
        || (ours(&bpftool_progs()) == before).then_some(()),
    );
}

/// How long the kernel may take to free the programs of a process that exited: its deferred
/// work runs within a few scheduler ticks on an idle host, longer on a busy one.
const PROGRAMS_RELEASED_WITHIN: Duration = Duration::from_secs(10);

fn bpftool_progs() -> String {
    let out = std::process::Command::new("bpftool")
        .args(["prog", "list"])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "bpftool prog list failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tcp_liveness_hook_recursion_misses_total` exists for every attached hook and never runs
/// ahead of the kernel's own count for the agent's program of that name (`bpftool prog show`
/// of the program ids in the agent's fdinfo, read after the scrape; bpftool leaves the field out
/// while it is 0).
#[test]
fn recursion_misses_are_the_kernels_per_program_counts() {
    let Some(sc) = agent_only("recursion_misses", Need::RootAndKernelBtf) else {
        return;
    };
    let agent = sc.agent();
    let series =
        |hook: &str| format!("tcp_liveness_hook_recursion_misses_total{{hook=\"{hook}\"}}");
    let ours: Vec<(&str, f64)> = wait_for(
        "a scan with the miss counts",
        agent.scans(SCANS_TO_SHOW),
        || {
            monitor::bpf::hooks(false)
                .map(|hook| agent.metric(&series(hook)).map(|n| (hook, n)))
                .collect()
        },
    );
    let programs: Vec<Value> = bpf::program_ids_of(agent.pid())
        .expect("the agent's descriptors")
        .into_iter()
        .filter_map(bpf::program)
        .collect();
    for (hook, ours) in ours {
        let kernel = programs
            .iter()
            .find(|p| p["name"] == hook)
            .unwrap_or_else(|| panic!("the agent's {hook} program in bpftool's list"));
        let kernel_misses = kernel["recursion_misses"].as_f64().unwrap_or(0.0);
        assert!(
            ours <= kernel_misses,
            "{hook}: agent {ours} > kernel {kernel_misses}"
        );
    }
}

/// A threaded server (each connection served by a thread named "worker") is one process named
/// by its thread group leader: in `/connections`, in the `CLOSE_WAIT` metric and in `/alerts`.
#[test]
fn a_threaded_server_is_one_process_named_by_its_leader() {
    let Some(sc) = scenario("threaded_server", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "1s"])
        .start()
        .expect("agent");
    let server = sc.server(&["no-close-worker"]);
    let _clients: Vec<Peer> = (0..2).map(|_| sc.client(&["close"])).collect();
    let inode = net.server.inode();
    let cw = close_wait_with_holders(&agent, inode, 2);
    // The test means something only if the kernel did see threads named otherwise.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .expect("the server's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|comm| comm.trim_end().to_owned())
        .collect();
    assert!(
        threads.iter().any(|t| t == "worker"),
        "threads: {threads:?}"
    );
    for c in &cw {
        assert_eq!(c["pid"].as_u64(), Some(u64::from(server.pid())), "{c}");
        assert_eq!(
            c["comm"], "python3",
            "the leader's name, not a thread's: {c}"
        );
    }
    let series = "tcp_liveness_close_wait_connections{owner=\"python3\",local_port=\"7000\"}";
    wait_for(
        "the close_wait metric of python3",
        agent.scans(SCANS_TO_SHOW),
        || agent.metric(series).filter(|&n| n >= 2.0),
    );
    let metrics = agent.get("/metrics");
    assert!(!metrics.contains("owner=\"worker\""), "{metrics}");
    // /alerts comes from the last scan: wait for the verdicts (close_wait_after 1 s).
    let owners: Vec<String> = wait_for(
        "close_wait_stuck alerts",
        agent.scans(SCANS_TO_SHOW),
        || {
            let alerts: Value = serde_json::from_str(&agent.get("/alerts")).expect("alerts JSON");
            let owners: Vec<String> = alerts["alerts"]
                .as_array()
                .expect("alert list")
                .iter()
                .filter(|g| g["reason"] == "close_wait_stuck")
                .filter_map(|g| Some(g["owner"].as_str()?.to_owned()))
                .collect();
            (!owners.is_empty()).then_some(owners)
        },
    );
    assert_eq!(owners, ["python3"], "one group, named by the leader");
}

/// A server accepts 7 connections and never reads, writes or closes them; the clients go away:
/// 7 `CLOSE_WAIT` sockets no process ever did I/O on, owned by the server (the process holding
/// them, from `/proc/PID/fd`, the same holder `ss -p` names).
#[test]
fn sockets_never_used_are_owned_by_the_process_holding_them() {
    let Some(sc) = scenario("owner_without_io", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc.agent();
    let server = sc.server(&["accept-only"]);
    let clients = sc.client(&["hold", "7"]);
    let inode = net.server.inode();
    wait_for("7 accepted connections", agent.scans(SCANS_TO_SHOW), || {
        let ss = ss::sockets(&net.server).ok()?;
        (ss::state_counts(&ss).get("established") == Some(&7)).then_some(())
    });
    drop(clients);
    // No process did I/O on them: only a pass over the held sockets names their owner.
    let cw = wait_for(
        "7 owned CLOSE_WAIT sockets",
        agent.held_pass_and(Duration::ZERO),
        || {
            let owned: Vec<Value> = agent
                .connections_in(inode)
                .into_iter()
                .filter(|c| c["state"] == "close_wait" && c["pid"].is_u64())
                .collect();
            (owned.len() == 7).then_some(owned)
        },
    );
    for c in &cw {
        assert_eq!(c["pid"].as_u64(), Some(u64::from(server.pid())), "{c}");
        assert_eq!(c["comm"], "python3", "{c}");
    }
}

/// Connections that completed the handshake but were never `accept()`ed have no
/// process file (`ss -e` `ino:0`): the agent says they are in the accept queue and names the
/// listener's owner, before and after the clients close them (`CLOSE_WAIT` in the queue).
#[test]
fn sockets_in_the_accept_queue_are_owned_by_the_listeners_process() {
    let Some(sc) = scenario("owner_accept_queue", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc.agent();
    let server = sc.server(&["never-accept"]);
    let clients = sc.client(&["hold", "4"]);
    let inode = net.server.inode();
    let queued = |state: &'static str| {
        let (net, agent) = (net, &agent);
        move || {
            let kernel: Vec<_> = ss::sockets(&net.server)
                .ok()?
                .into_iter()
                .filter(|s| s.state == state)
                .collect();
            let ours: Vec<Value> = agent
                .connections_in(inode)
                .into_iter()
                .filter(|c| c["state"] == state && c["accept_queue"] == true)
                .collect();
            (kernel.len() == 4 && ours.len() == 4).then_some((kernel, ours))
        }
    };
    let check = |state: &'static str| {
        let (kernel, ours) = wait_for(
            &format!("4 {state} sockets in the accept queue"),
            // Being in the accept queue (no descriptor) is known from a kernel read.
            agent.kernel_reads(3) + agent.scans(SCANS_TO_SHOW),
            queued(state),
        );
        for s in &kernel {
            assert_eq!(s.inode(), Some(0), "never accepted: no process file: {s:?}");
        }
        for c in &ours {
            assert_eq!(c["pid"].as_u64(), Some(u64::from(server.pid())), "{c}");
            assert_eq!(c["comm"], "python3", "{c}");
        }
    };
    check("established");
    // The clients close: the queued sockets turn CLOSE_WAIT, still never accepted.
    drop(clients);
    check("close_wait");
}

/// `TIME_WAIT` sockets have no table entry (the kernel swaps the full socket for a mini-socket),
/// yet `tcp_liveness_connections{state="time_wait"}` counts them, as `ss` and `node_exporter` do: a
/// `TIME_WAIT` pile-up (port exhaustion) must be visible.
#[test]
fn time_wait_sockets_are_counted_from_the_kernel() {
    let Some(sc) = scenario("time_wait", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc.agent();
    let _server = sc.server(&["echo"]);
    // Each client connection shuts down first (and reads the server's FIN): its side waits in
    // TIME_WAIT for 60 s.
    let _churn = sc.client(&["churn-orderly", "5"]);
    let kernel = wait_for("5 TIME_WAIT sockets", agent.scans(SCANS_TO_SHOW), || {
        let counts = ss::state_counts(&ss::sockets(&net.client).ok()?);
        counts.get("time_wait").copied().filter(|&n| n >= 5)
    });
    // The test namespace alone has 5: the host-wide series counts at least those.
    let what = format!("the time_wait series to count 5 (the kernel lists {kernel})");
    wait_for(&what, agent.scans(SCANS_TO_SHOW), || {
        agent
            .metric("tcp_liveness_connections{state=\"time_wait\"}")
            .filter(|&n| n >= 5.0)
    });
}

/// The harness derives its kernel-read deadlines from the agent's read budget: the two agree.
#[test]
fn harness_paces_kernel_reads_as_the_agent_does() {
    assert_eq!(
        harness::agent::KERNEL_READ_SHARE,
        monitor::scan::KERNEL_READ_SHARE.max(monitor::scan::KERNEL_READ_SHARE_WALKING)
    );
}

/// The harness derives its deadlines for what the passes over the held sockets show from the
/// agent's longest wait between two passes: the two agree.
#[test]
fn harness_waits_for_held_passes_as_the_agent_paces_them() {
    assert_eq!(
        harness::agent::HELD_READ_MAX_AGE,
        monitor::scan::holders::HELD_READ_MAX_AGE
    );
    assert_eq!(
        harness::agent::HOLDERS_READ_MAX_AGE,
        monitor::scan::holders::HOLDERS_READ_MAX_AGE
    );
}

/// The `n` `CLOSE_WAIT` connections of namespace `inode`, once a pass over the held sockets has
/// read their holders (a value only the kernel has: [`Agent::held_pass_and`]).
fn close_wait_with_holders(agent: &Agent, inode: u64, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} CLOSE_WAIT sockets with their holders"),
        agent.held_pass_and(Duration::ZERO),
        || {
            let found: Vec<Value> = agent
                .connections_in(inode)
                .into_iter()
                .filter(|c| c["state"] == "close_wait")
                .collect();
            (found.len() == n && found.iter().all(|c| c["holders"].is_array())).then_some(found)
        },
    )
}
