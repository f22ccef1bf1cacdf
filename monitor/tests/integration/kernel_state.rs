//! The `iter/tcp` reader against the kernel's own view: real connections in namespaces the tests
//! create, read through the library (`Probes::load` in this process, then
//! `scan::kernel_state::read_namespace`), each socket compared with `ss -tanioepO` in the same
//! namespace (`sock_diag` with `tcp_info`, timers, owners). Run as root, under the shared kernel
//! test lock; under CI=true a missing privilege fails instead of skipping.
//!
//! Values that change while the test looks (ages, queues that grow) are read twice by the
//! iterator, before and after `ss`: `ss` must agree with one of the two readings, or lie
//! between them.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
    process::Stdio,
    time::Duration,
};

use harness::{
    command::ChildGuard,
    netns::Netns as TestNetns,
    peer::Peer,
    privilege::Need,
    ss::{self, SsSocket, close_to},
    wait::wait_for,
};
use monitor::{
    bpf::kernel_state::read_namespace,
    bpf::{
        KernelStateReader, Programs as Probes,
        kernel_state::{
            convert::{
                diag_state, jiffies_to_duration, recv_queue_bytes, send_queue_bytes,
                since_last_ack, since_last_recv, since_last_send, since_retrans_start,
                unacked_bytes,
            },
            kernel_hz,
        },
    },
    netns::Netns,
};
use monitor_common::{
    AF_INET, AF_INET6,
    kernel_state::{
        ITER_TCP_TABLE_PROGRAM, KIND_FULL, KIND_REQUEST, KIND_TIME_WAIT, KS_DEAD, KS_KEEPOPEN,
        KernelSockState,
    },
    tcp_state,
};

use crate::common::scenario;

/// Socket table slots for the probes this process loads (only the iterator is used here).
const CAPACITY: u32 = 4096;
const SETTLE: Duration = Duration::from_secs(30);

/// One `ss` line: the parsed socket plus its queue columns (`Recv-Q`, `Send-Q`).
struct SsRow {
    sock: SsSocket,
    recv_q: u64,
    send_q: u64,
}

/// `ss -tanioepO` in `ns`: all states, numeric, `tcp_info`, timers, extended (cookie, inode,
/// uid), process, one line per socket.
fn ss_rows(ns: &TestNetns) -> Vec<SsRow> {
    let out = ns
        .command("ss")
        .arg("-tanioepO")
        .output()
        .expect("run ss in the namespace");
    assert!(out.status.success(), "ss failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = ss::parse(&text);
    // ss::parse keeps every line after the header with at least five columns, in order.
    let queues: Vec<(u64, u64)> = text
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|tokens| tokens.len() >= 5)
        .map(|t| {
            (
                t[1].parse().expect("Recv-Q is a number"),
                t[2].parse().expect("Send-Q is a number"),
            )
        })
        .collect();
    assert_eq!(parsed.len(), queues.len(), "one queue pair per socket line");
    parsed
        .into_iter()
        .zip(queues)
        .map(|(sock, (recv_q, send_q))| SsRow {
            sock,
            recv_q,
            send_q,
        })
        .collect()
}

fn monitor_ns(ns: &TestNetns) -> Netns {
    Netns {
        inode: u32::try_from(ns.inode()).expect("nsfs inodes are 32-bit"),
        path: ns.path(),
    }
}

/// The iterator in `ns`, by cookie; every record must carry `ns`'s inode.
fn read_by_cookie(reader: &KernelStateReader, ns: &TestNetns) -> HashMap<u64, KernelSockState> {
    let netns = monitor_ns(ns);
    let records = read_namespace(reader, &netns).expect("read the iterator in the namespace");
    let mut by_cookie = HashMap::new();
    for r in records {
        assert_eq!(r.netns, netns.inode, "netns of {r:?}");
        assert_ne!(r.cookie, 0, "cookie of {r:?}");
        assert!(
            by_cookie.insert(r.cookie, r).is_none(),
            "socket {} listed twice",
            r.cookie
        );
    }
    by_cookie
}

/// The probes with both iterators: the agent's table refresh (its hook status must say it
/// loaded) and the records program these tests compare with `ss`.
fn load_reader() -> (Probes, KernelStateReader) {
    let mut probes = Probes::load(CAPACITY, false).expect("load the probes");
    let status = probes
        .hooks
        .iter()
        .find(|h| h.hook == ITER_TCP_TABLE_PROGRAM)
        .expect("the table refresh iterator has a hook status");
    assert!(status.attached, "iter/tcp refused: {:?}", status.error);
    assert_eq!(status.error, None);
    assert!(
        probes.table_refresh.is_some(),
        "reader present when attached"
    );
    let reader = probes.records_reader().expect("load the records iterator");
    (probes, reader)
}

/// `CONFIG_HZ` as the reader's conversions need it: from the coarse clock, and equal to the
/// kernel config's where this machine has one.
fn hz() -> u32 {
    let hz = kernel_hz().expect("kernel tick rate");
    if let Ok(out) = std::process::Command::new("sh")
        .args([
            "-c",
            "zcat /proc/config.gz 2>/dev/null | grep '^CONFIG_HZ='",
        ])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(config) = text.trim().strip_prefix("CONFIG_HZ=") {
            assert_eq!(
                config.parse::<u32>().ok(),
                Some(hz),
                "CONFIG_HZ vs the tick"
            );
        }
    }
    hz
}

/// `kernel` equals `a` or `b`, or lies between them (a value that moved while `ss` ran).
fn bracketed(a: u64, b: u64, kernel: u64) -> bool {
    a.min(b) <= kernel && kernel <= a.max(b)
}

/// `ADDR:PORT` as `ss -n` prints it (IPv6 in brackets, `*` for a listener's peer port).
fn address(bytes: &[u8; 16], port: u16, family: u16, remote: bool) -> String {
    let ip = match family {
        AF_INET => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        AF_INET6 => format!("[{}]", Ipv6Addr::from(*bytes)),
        other => panic!("family {other}"),
    };
    if remote && port == 0 {
        format!("{ip}:*")
    } else {
        format!("{ip}:{port}")
    }
}

fn state_name(r: &KernelSockState) -> &'static str {
    tcp_state::name(diag_state(r)).unwrap_or("?")
}

/// The `ss -o` timer a full socket should show: `on` for a pending retransmit, loss probe or
/// reorder timer, `persist` for a zero window probe, `keepalive` for an ESTABLISHED socket with
/// `SO_KEEPALIVE` (its keepalive timer is always armed), else none (`inet_diag`'s rules).
fn expected_timer(r: &KernelSockState) -> Option<&'static str> {
    match r.pending_timer {
        1 | 4 | 5 => Some("on"),
        3 => Some("persist"),
        _ if r.flags & KS_KEEPOPEN != 0 => Some("keepalive"),
        _ => None,
    }
}

fn ms_field(s: &SsSocket, key: &str) -> u64 {
    s.fields
        .get(key)
        .map_or(0, |v| v.parse().unwrap_or_else(|_| panic!("{key}:{v}")))
}

fn secs(d: Option<Duration>) -> f64 {
    d.expect("HZ known").as_secs_f64()
}

/// Both iterator readings of one socket and its `ss` line.
struct Matched<'a> {
    before: KernelSockState,
    after: KernelSockState,
    ss: &'a SsRow,
}

/// Reads the iterator, `ss`, and the iterator again in `ns`, and checks that both list the same
/// sockets with the same state counts, and that every socket agrees field by field. Returns the
/// matches (by cookie) for the scenario's own checks.
fn compare(
    reader: &KernelStateReader,
    ns: &TestNetns,
    hz: u32,
) -> (Vec<SsRow>, Vec<(u64, KernelSockState, KernelSockState)>) {
    let before = read_by_cookie(reader, ns);
    let rows = ss_rows(ns);
    let after = read_by_cookie(reader, ns);
    let cookies = |m: &HashMap<u64, KernelSockState>| m.keys().copied().collect::<BTreeSet<_>>();
    let ss_cookies: BTreeSet<u64> = rows
        .iter()
        .map(|r| r.sock.cookie.expect("ss -e prints sk:"))
        .collect();
    assert_eq!(ss_cookies.len(), rows.len(), "ss cookies are unique");
    assert_eq!(
        cookies(&before),
        ss_cookies,
        "sockets in {}: iterator vs ss",
        ns.name()
    );
    assert_eq!(
        cookies(&after),
        ss_cookies,
        "sockets in {}: ss vs iterator",
        ns.name()
    );

    let ours: BTreeMap<String, usize> = before.values().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(state_name(r).to_owned()).or_default() += 1;
        m
    });
    let theirs: BTreeMap<String, usize> =
        ss::state_counts(&rows.iter().map(|r| r.sock.clone()).collect::<Vec<_>>())
            .into_iter()
            .collect();
    assert_eq!(ours, theirs, "state counts in {}", ns.name());

    let mut mismatches = Vec::new();
    let mut matched = Vec::new();
    for row in &rows {
        let cookie = row.sock.cookie.expect("cookie");
        let m = Matched {
            before: before[&cookie],
            after: after[&cookie],
            ss: row,
        };
        check_socket(&m, hz, &mut mismatches);
        matched.push((cookie, m.before, m.after));
    }
    assert!(
        mismatches.is_empty(),
        "iterator vs ss in {}:\n{}",
        ns.name(),
        mismatches.join("\n")
    );
    (rows, matched)
}

/// Collects the disagreements of one socket with its `ss` line.
struct Checker<'a> {
    who: String,
    out: &'a mut Vec<String>,
}

impl Checker<'_> {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.out.push(format!("{}: {}", self.who, what()));
        }
    }
}

/// Field-by-field agreement of one socket with its `ss` line.
fn check_socket(m: &Matched<'_>, hz: u32, out: &mut Vec<String>) {
    let (first, line) = (&m.before, &m.ss.sock);
    let mut c = Checker {
        who: format!(
            "{} {} -> {} (sk:{:x})",
            line.state, line.local, line.remote, first.cookie
        ),
        out,
    };
    check_identity(&mut c, first, line);
    if first.kind != KIND_FULL {
        // TIME_WAIT and request sockets: identity and state only; ss shows empty queues.
        c.check(m.ss.recv_q == 0 && m.ss.send_q == 0, || {
            format!("ss queues {}/{}", m.ss.recv_q, m.ss.send_q)
        });
        return;
    }
    check_queues(&mut c, m);
    if first.state != tcp_state::LISTEN {
        check_transport(&mut c, m, hz);
    }
}

/// State, kind, addresses, inode, uid.
fn check_identity(c: &mut Checker<'_>, r: &KernelSockState, line: &SsSocket) {
    c.check(state_name(r) == line.state, || {
        format!("state {} vs ss {}", state_name(r), line.state)
    });
    let local = address(&r.saddr, r.sport, r.family, false);
    c.check(local == line.local, || format!("local {local}"));
    let remote = address(&r.daddr, r.dport, r.family, true);
    c.check(remote == line.remote, || format!("remote {remote}"));
    let expected_kind = match r.state {
        tcp_state::TIME_WAIT => KIND_TIME_WAIT,
        tcp_state::NEW_SYN_RECV => KIND_REQUEST,
        _ => KIND_FULL,
    };
    c.check(r.kind == expected_kind, || {
        format!("kind {} for skc_state {}", r.kind, r.state)
    });
    c.check(u64::from(line.inode().unwrap_or(0)) == r.inode, || {
        format!("inode {} vs ss ino:{:?}", r.inode, line.inode())
    });
    let ss_uid: u32 = line
        .fields
        .get("uid")
        .map_or(0, |v| v.parse().expect("uid"));
    c.check(ss_uid == r.uid, || format!("uid {} vs ss {ss_uid}", r.uid));
}

/// `Recv-Q`/`Send-Q`: the accept queue and its limit for a listener, else the receive and send
/// queues.
fn check_queues(c: &mut Checker<'_>, m: &Matched<'_>) {
    let (first, second) = (&m.before, &m.after);
    if first.state == tcp_state::LISTEN {
        c.check(
            bracketed(
                first.ack_backlog.into(),
                second.ack_backlog.into(),
                m.ss.recv_q,
            ),
            || {
                format!(
                    "accept queue {}..{} vs Recv-Q {}",
                    first.ack_backlog, second.ack_backlog, m.ss.recv_q
                )
            },
        );
        c.check(u64::from(first.max_ack_backlog) == m.ss.send_q, || {
            format!(
                "backlog {} vs Send-Q {}",
                first.max_ack_backlog, m.ss.send_q
            )
        });
        return;
    }
    let (qa, qb) = (
        send_queue_bytes(first).into(),
        send_queue_bytes(second).into(),
    );
    c.check(bracketed(qa, qb, m.ss.send_q), || {
        format!("send queue {qa}..{qb} vs Send-Q {}", m.ss.send_q)
    });
    let (qa, qb) = (
        recv_queue_bytes(first).into(),
        recv_queue_bytes(second).into(),
    );
    c.check(bracketed(qa, qb, m.ss.recv_q), || {
        format!("receive queue {qa}..{qb} vs Recv-Q {}", m.ss.recv_q)
    });
}

/// Ages, segments in flight, retransmits, backoff, RTO, the peer's window, the timer.
fn check_transport(c: &mut Checker<'_>, m: &Matched<'_>, hz: u32) {
    let (first, second, line) = (&m.before, &m.after, &m.ss.sock);
    for (key, age) in [
        (
            "lastsnd",
            since_last_send as fn(&KernelSockState, u32) -> Option<Duration>,
        ),
        ("lastrcv", since_last_recv),
        ("lastack", since_last_ack),
    ] {
        let kernel = ms_field(line, key) as f64 / 1000.0;
        let (ours_a, ours_b) = (secs(age(first, hz)), secs(age(second, hz)));
        c.check(close_to(ours_a, kernel) || close_to(ours_b, kernel), || {
            format!("{key} {ours_a:.3}/{ours_b:.3} s vs ss {kernel:.3} s")
        });
    }
    let unacked = ms_field(line, "unacked");
    c.check(
        bracketed(first.packets_out.into(), second.packets_out.into(), unacked),
        || {
            format!(
                "packets out {}..{} vs unacked:{unacked}",
                first.packets_out, second.packets_out
            )
        },
    );
    let (retrans, total) = line.fields.get("retrans").map_or((0, 0), |v| {
        let (now, ever) = v.split_once('/').expect("retrans:X/Y");
        (now.parse().expect("X"), ever.parse().expect("Y"))
    });
    c.check(
        bracketed(first.retrans_out.into(), second.retrans_out.into(), retrans)
            && bracketed(
                first.total_retrans.into(),
                second.total_retrans.into(),
                total,
            ),
        || {
            format!(
                "retrans {}/{}..{}/{} vs ss {retrans}/{total}",
                first.retrans_out, first.total_retrans, second.retrans_out, second.total_retrans
            )
        },
    );
    let backoff = ms_field(line, "backoff");
    c.check(
        bracketed(first.backoff.into(), second.backoff.into(), backoff),
        || {
            format!(
                "backoff {}..{} vs ss {backoff}",
                first.backoff, second.backoff
            )
        },
    );
    // ss prints rto in ms (tcpi_rto / 1000, from icsk_rto in jiffies).
    let rto: f64 = line
        .fields
        .get("rto")
        .map_or(0.0, |v| v.parse().expect("rto"));
    let rto_ms = |r: &KernelSockState| {
        jiffies_to_duration(r.rto.into(), hz)
            .expect("HZ")
            .as_secs_f64()
            * 1000.0
    };
    let (low, high) = (
        rto_ms(first).min(rto_ms(second)),
        rto_ms(first).max(rto_ms(second)),
    );
    c.check(low - 0.5 <= rto && rto <= high + 0.5, || {
        format!("rto {low}..{high} ms vs ss {rto}")
    });
    if let Some(window) = line.fields.get("snd_wnd") {
        let window: u64 = window.parse().expect("snd_wnd");
        c.check(
            bracketed(first.snd_wnd.into(), second.snd_wnd.into(), window),
            || {
                format!(
                    "snd_wnd {}..{} vs ss {window}",
                    first.snd_wnd, second.snd_wnd
                )
            },
        );
    }
    check_timer(c, m);
}

/// The `ss -o` timer of an ESTABLISHED socket, compared when it did not change between the two
/// readings (a retransmit timer is armed for the round trip of every send).
fn check_timer(c: &mut Checker<'_>, m: &Matched<'_>) {
    let (first, second, line) = (&m.before, &m.after, &m.ss.sock);
    if first.state == tcp_state::ESTABLISHED
        && first.pending_timer == second.pending_timer
        && first.flags == second.flags
    {
        let shown = line.fields.get("timer").map(|t| {
            t.trim_start_matches('(')
                .split(',')
                .next()
                .unwrap_or("")
                .to_owned()
        });
        c.check(shown.as_deref() == expected_timer(first), || {
            format!(
                "timer {:?} (pending {}, flags {:#x}) vs ss {shown:?}",
                expected_timer(first),
                first.pending_timer,
                first.flags
            )
        });
    }
}

/// The matched record whose local or remote port is `port` and whose state `ss` names `state`.
fn find(
    matched: &[(u64, KernelSockState, KernelSockState)],
    state: u8,
    port: u16,
) -> Vec<&KernelSockState> {
    matched
        .iter()
        .map(|(_, a, _)| a)
        .filter(|r| diag_state(r) == state && (r.sport == port || r.dport == port))
        .collect()
}

fn one<'a>(found: &[&'a KernelSockState], what: &str) -> &'a KernelSockState {
    assert_eq!(found.len(), 1, "exactly one {what}: {found:?}");
    found[0]
}

fn ss_socket(rows: &[SsRow], cookie: u64) -> &SsRow {
    rows.iter()
        .find(|r| r.sock.cookie == Some(cookie))
        .expect("listed by ss")
}

#[test]
fn idle_keepalive_listening_and_unread_sockets_match_ss() {
    let Some(sc) = scenario("kernel_state_idle", Need::RootAndKernelBtf) else {
        return;
    };
    let hz = hz();
    let (_probes, reader) = load_reader();
    let net = sc.net();
    let _ip = net.server_ip.as_str();
    let _server = sc.server(&["echo"]);
    let _idle = sc.client(&["idle"]);
    let _keepalive = sc.client(&["keepalive", "3"]);
    // Sends a byte every 0.5 s and never reads the echo: its receive queue grows.
    let _unread = sc.client(&["heartbeat"]);
    // IPv6 on loopback, inside the server's namespace.
    let _server6 = Peer::start(&net.server, &["server", "::1", "7005", "echo"]).expect("server");
    let _client6 = Peer::start(&net.server, &["client", "::1", "7005", "idle"]).expect("client");
    wait_for(
        "an idle connection 2 s old and 2 unread bytes",
        SETTLE,
        || {
            let rows = ss_rows(&net.client);
            let idle = rows.iter().any(|r| ms_field(&r.sock, "lastsnd") >= 2_000);
            let unread = rows.iter().any(|r| r.recv_q >= 2);
            (idle && unread).then_some(())
        },
    );

    let (rows, client) = compare(&reader, &net.client, hz);
    let established = find(&client, tcp_state::ESTABLISHED, 7000);
    assert_eq!(
        established.len(),
        3,
        "three client connections: {established:?}"
    );
    let keepalive: Vec<_> = established
        .iter()
        .filter(|r| r.flags & KS_KEEPOPEN != 0)
        .collect();
    let ka = one(
        &keepalive.into_iter().copied().collect::<Vec<_>>(),
        "keepalive socket",
    );
    assert_eq!(
        (ka.keepalive_time, ka.keepalive_intvl, ka.keepalive_probes),
        (hz, hz, 3),
        "TCP_KEEPIDLE/KEEPINTVL 1 s in jiffies, TCP_KEEPCNT 3"
    );
    assert!(
        ss_socket(&rows, ka.cookie).sock.fields["timer"].starts_with("(keepalive"),
        "ss shows the keepalive timer"
    );
    let unread: Vec<_> = established
        .iter()
        .copied()
        .filter(|r| recv_queue_bytes(r) >= 2)
        .collect();
    let unread = one(&unread, "socket with unread data");
    assert_eq!(
        unread.flags & KS_KEEPOPEN,
        0,
        "heartbeat client has no keepalive"
    );
    assert_eq!(
        u64::from(recv_queue_bytes(unread)),
        ss_socket(&rows, unread.cookie).recv_q,
        "unread bytes"
    );
    let idle: Vec<_> = established
        .iter()
        .copied()
        .filter(|r| r.cookie != ka.cookie && r.cookie != unread.cookie)
        .collect();
    let idle = one(&idle, "idle socket");
    assert!(
        secs(since_last_send(idle, hz)) >= 2.0 && secs(since_last_recv(idle, hz)) >= 2.0,
        "idle for 2 s: {idle:?}"
    );
    assert_eq!(idle.flags & (KS_KEEPOPEN | KS_DEAD), 0);
    assert!(
        !ss_socket(&rows, idle.cookie)
            .sock
            .fields
            .contains_key("timer"),
        "no timer on an idle socket without keepalive"
    );
    assert!(idle.inode != 0, "a socket held by a process has an inode");

    let server = compare(&reader, &net.server, hz).1;
    let v6 = find(&server, tcp_state::ESTABLISHED, 7005);
    assert_eq!(v6.len(), 2, "both ends of the IPv6 connection: {v6:?}");
    assert!(v6.iter().all(|r| r.family == AF_INET6
        && Ipv6Addr::from(r.saddr) == Ipv6Addr::LOCALHOST
        && Ipv6Addr::from(r.daddr) == Ipv6Addr::LOCALHOST));
    let listener = one(&find(&server, tcp_state::LISTEN, 7000), "listener");
    assert_eq!(
        listener.max_ack_backlog, 4096,
        "listen(4096), somaxconn 4096"
    );
    assert_eq!(find(&server, tcp_state::ESTABLISHED, 7000).len(), 3);
}

#[test]
fn vanished_peer_with_a_send_queue_matches_ss() {
    let Some(sc) = scenario("kernel_state_vanished", Need::RootAndKernelBtf) else {
        return;
    };
    let hz = hz();
    let (_probes, reader) = load_reader();
    let net = sc.net();
    let ip = net.server_ip.as_str();
    let _server = Peer::start(&net.server, &["server", ip, "7001", "sink"]).expect("server");
    // Writes 1000 B every 0.1 s.
    let _client = Peer::start(&net.client, &["client", ip, "7001", "send"]).expect("client");
    wait_for("bytes acknowledged", SETTLE, || {
        ss_rows(&net.client)
            .iter()
            .any(|r| r.sock.state == "established" && r.sock.fields.contains_key("bytes_acked"))
            .then_some(())
    });
    net.server.drop_input().expect("the server vanishes");
    wait_for("backoff 3 and 5 kB queued", SETTLE, || {
        ss_rows(&net.client)
            .iter()
            .any(|r| ms_field(&r.sock, "backoff") >= 3 && r.send_q >= 5_000)
            .then_some(())
    });

    let (rows, client) = compare(&reader, &net.client, hz);
    let sender = one(&find(&client, tcp_state::ESTABLISHED, 7001), "sender");
    assert_eq!(sender.pending_timer, 1, "the retransmit timer is pending");
    assert!(sender.backoff >= 3, "backoff {}", sender.backoff);
    assert!(
        sender.total_retrans >= 3,
        "retransmits {}",
        sender.total_retrans
    );
    assert!(
        sender.retransmits >= 3,
        "consecutive timeouts {}",
        sender.retransmits
    );
    let unacked = unacked_bytes(sender);
    let queued = send_queue_bytes(sender);
    assert!(
        unacked > 0 && queued >= 5_000 && queued >= unacked,
        "unacked {unacked}, queued {queued}"
    );
    // ss runs just after the iterator while the application keeps writing 1000 B every 0.1 s:
    // equal, or a few whole writes more.
    let ss_queued = ss_socket(&rows, sender.cookie).send_q;
    let written_between = ss_queued.checked_sub(u64::from(queued));
    assert!(
        written_between.is_some_and(|b| b % 1000 == 0 && b <= 5_000),
        "send queue {queued} vs ss {ss_queued}"
    );
    let silent = secs(since_last_ack(sender, hz));
    assert!(silent >= 1.0, "peer silent for {silent} s");
    // The loss episode began with the first segment the peer never acknowledged, sent within
    // 0.1 s of its last ACK: retrans_stamp (ms of CLOCK_MONOTONIC) must agree with rcv_tstamp.
    let retrying = since_retrans_start(sender)
        .expect("retrans_stamp set")
        .as_secs_f64();
    assert!(
        (retrying - silent).abs() <= 1.0,
        "retransmitting for {retrying} s, peer silent for {silent} s"
    );
    compare(&reader, &net.server, hz);
}

#[test]
fn close_wait_time_wait_and_request_sockets_match_ss() {
    let Some(sc) = scenario("kernel_state_closing", Need::RootAndKernelBtf) else {
        return;
    };
    let hz = hz();
    let (_probes, reader) = load_reader();
    let net = sc.net();
    let ip = net.server_ip.as_str();
    // CLOSE_WAIT on the server (it never closes), an orphaned FIN_WAIT2 on the client.
    let _leaky = Peer::start(&net.server, &["server", ip, "7002", "no-close"]).expect("server");
    let _closer = Peer::start(&net.client, &["client", ip, "7002", "close"]).expect("client");
    // Five connections closed by the client first: five TIME_WAIT on the client.
    let _echo = Peer::start(&net.server, &["server", ip, "7003", "echo"]).expect("server");
    let _churn =
        Peer::start(&net.client, &["client", ip, "7003", "churn-orderly", "5"]).expect("churn");
    // A handshake that never completes: the client drops the SYN-ACKs, the server keeps a
    // request socket (NEW_SYN_RECV) and the client stays in SYN_SENT.
    let _listener = Peer::start(&net.server, &["server", ip, "7004", "echo"]).expect("server");
    net.client
        .run(
            "iptables",
            &["-A", "INPUT", "-p", "tcp", "--sport", "7004", "-j", "DROP"],
        )
        .expect("drop SYN-ACKs");
    let script = format!(
        "import socket,time; s=socket.socket(); s.setblocking(False); s.connect_ex(('{ip}',7004)); time.sleep(120)"
    );
    let _connecting = ChildGuard::new(
        net.client
            .command("python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the connecting client"),
    );
    wait_for("CLOSE_WAIT, 5 TIME_WAIT and a SYN-RECV", SETTLE, || {
        let server = ss::state_counts(&ss::sockets(&net.server).ok()?);
        let client = ss::state_counts(&ss::sockets(&net.client).ok()?);
        (server.get("close_wait") == Some(&1)
            && server.get("syn_recv") == Some(&1)
            && client.get("time_wait") == Some(&5)
            && client.get("fin_wait2") == Some(&1)
            && client.get("syn_sent") == Some(&1))
        .then_some(())
    });

    let (server_rows, server) = compare(&reader, &net.server, hz);
    let (_, client) = compare(&reader, &net.client, hz);

    let leaked = one(
        &find(&server, tcp_state::CLOSE_WAIT, 7002),
        "CLOSE_WAIT socket",
    );
    assert_eq!(leaked.kind, KIND_FULL);
    assert_eq!(leaked.flags & KS_DEAD, 0, "the server still holds it");
    assert_ne!(leaked.inode, 0);
    assert_eq!(
        Some(leaked.inode),
        ss_socket(&server_rows, leaked.cookie)
            .sock
            .inode()
            .map(u64::from)
    );
    let request = one(&find(&server, tcp_state::SYN_RECV, 7004), "request socket");
    assert_eq!(
        (request.kind, request.state),
        (KIND_REQUEST, tcp_state::NEW_SYN_RECV)
    );
    assert_eq!(request.sport, 7004);

    // The client closed its socket: the kernel finishes FIN_WAIT2 with a TIME_WAIT mini-socket
    // standing in for it (tw_substate FIN_WAIT2), which sock_diag reports as FIN-WAIT-2.
    let orphan = one(
        &find(&client, tcp_state::FIN_WAIT2, 7002),
        "orphaned FIN_WAIT2",
    );
    assert_eq!(
        (orphan.kind, orphan.state, orphan.tw_substate),
        (KIND_TIME_WAIT, tcp_state::TIME_WAIT, tcp_state::FIN_WAIT2)
    );
    assert_eq!(orphan.inode, 0, "no file");
    let time_wait = find(&client, tcp_state::TIME_WAIT, 7003);
    assert_eq!(time_wait.len(), 5, "TIME_WAIT counted: {time_wait:?}");
    assert!(
        time_wait
            .iter()
            .all(|r| r.kind == KIND_TIME_WAIT && r.tw_substate == tcp_state::TIME_WAIT)
    );
    let syn_sent = one(&find(&client, tcp_state::SYN_SENT, 7004), "SYN_SENT socket");
    assert_eq!(syn_sent.kind, KIND_FULL);
}
