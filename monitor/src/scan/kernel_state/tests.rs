use std::net::SocketAddr;

use monitor_common::kernel_state::{KIND_REQUEST, KS_USEC_TS};

use super::*;

const SEC: u64 = 1_000_000_000;
const HZ: u32 = 250;

fn record(cookie: u64, kind: u8, state: u8) -> KernelSockState {
    let mut r = KernelSockState::zeroed();
    r.cookie = cookie;
    r.kind = kind;
    r.state = state;
    r.netns = 7;
    r
}

fn entry(state_since_ns: u64) -> SockActivity {
    let mut e = SockActivity::zeroed();
    e.cookie = 1;
    e.state = tcp_state::ESTABLISHED;
    e.netns = 7;
    e.state_since_ns = state_since_ns;
    e
}

/// What the refresh program writes out (sockets the table does not track) is counted by kind.
#[test]
fn records_of_untracked_sockets_are_counted_by_kind() {
    let mut orphan = record(2, KIND_TIME_WAIT, tcp_state::TIME_WAIT);
    orphan.tw_substate = tcp_state::FIN_WAIT2;
    let mut time_wait = record(3, KIND_TIME_WAIT, tcp_state::TIME_WAIT);
    time_wait.tw_substate = tcp_state::TIME_WAIT;
    let mut part = KernelTruth::default();
    for r in [
        record(1, KIND_FULL, tcp_state::ESTABLISHED),
        orphan,
        time_wait,
        record(4, KIND_REQUEST, tcp_state::NEW_SYN_RECV),
    ] {
        part.add(&r);
    }
    let mut truth = KernelTruth::default();
    truth.merge(7, 100 * SEC, part.clone());
    truth.merge(8, 101 * SEC, part);
    assert_eq!(
        (truth.untracked, truth.time_wait, truth.orphan_fin_wait2),
        (2, 2, 2)
    );
    let kept: Vec<u64> = truth.missing.iter().map(|r| r.cookie).collect();
    assert_eq!(
        kept,
        [1, 1],
        "the untracked full sockets, to add to the table"
    );
    assert_eq!(truth.namespaces.get(&8), Some(&(101 * SEC)));
}

/// Gone: its namespace was read, that read did not visit it, and it was in its state before the
/// read began. Anything else stays.
#[test]
fn an_entry_is_gone_only_when_the_read_could_have_seen_it() {
    let mut truth = KernelTruth::default();
    truth.merge(7, 100 * SEC, KernelTruth::default());
    let mut visited = entry(50 * SEC);
    visited.kernel.read_ns = 100 * SEC + 5;
    assert!(!truth.is_gone(&visited), "visited by the read");
    let mut earlier = entry(50 * SEC);
    earlier.kernel.read_ns = 40 * SEC;
    assert!(truth.is_gone(&earlier), "visited only by an earlier read");
    assert!(
        truth.is_gone(&entry(50 * SEC)),
        "never visited, older than the read"
    );
    assert!(!truth.is_gone(&entry(150 * SEC)), "newer than the read");
    assert!(!truth.is_gone(&entry(0)), "state start unknown");
    let mut elsewhere = entry(50 * SEC);
    elsewhere.netns = 8;
    assert!(!truth.is_gone(&elsewhere), "namespace not read");
    elsewhere.netns = 0;
    assert!(!truth.is_gone(&elsewhere), "namespace unknown");
}

fn connection() -> Connection {
    let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
    Connection::new(1, tcp_state::ESTABLISHED, addr, addr)
}

fn defaults() -> SocketDefaults {
    SocketDefaults {
        hz: Some(HZ),
        ..SocketDefaults::default()
    }
}

/// An entry the last read visited at 100 s: peer silent 10 s then, 5 s into a retransmission
/// episode, 1 700 bytes written and not acknowledged, 300 received and not read.
fn sampled(state_since_ns: u64, kernel_state: u8) -> SockActivity {
    let mut e = entry(state_since_ns);
    e.kernel.read_ns = 100 * SEC;
    e.kernel.read_jiffies = 10_000;
    e.kernel.rcv_tstamp = 10_000 - 10 * HZ;
    e.kernel.retrans_stamp = 95_000; // ms: 5 s before the read
    e.kernel.send_queue = 1_700;
    e.kernel.recv_queue = 300;
    e.kernel.state = kernel_state;
    e
}

/// The kernel's values where they are the better observation; the hooks' where they are newer.
#[test]
fn apply_takes_each_value_from_the_better_observation() {
    // A read 1 s ago; the hooks last saw a transition before it, into another state.
    let e = sampled(50 * SEC, tcp_state::CLOSE_WAIT);
    let mut c = connection();
    c.state_age = Some(Duration::from_secs(51));
    c.since_peer = Some(Duration::from_mins(1));
    apply(&mut c, &e, 101 * SEC, &defaults());
    assert_eq!(
        c.state,
        tcp_state::CLOSE_WAIT,
        "a transition the hooks missed"
    );
    assert_eq!(c.state_age, None, "when it happened is not known");
    assert_eq!(
        c.state_age_at_least,
        Some(Duration::from_secs(1)),
        "no later than the read"
    );
    assert_eq!(
        c.since_peer,
        Some(Duration::from_secs(11)),
        "the kernel's is more recent"
    );
    assert_eq!(c.since_retrans_start, Some(Duration::from_secs(6)));
    assert_eq!(c.send_queue_bytes, Some(1_700));
    assert_eq!(c.recv_queue_bytes, Some(300));

    // The hooks saw a transition after the read, and a packet 3 s ago: theirs are newer.
    let e = sampled(100 * SEC + 1, tcp_state::CLOSE_WAIT);
    let mut c = connection();
    c.state_age = Some(Duration::from_secs(1));
    c.since_peer = Some(Duration::from_secs(3));
    apply(&mut c, &e, 101 * SEC, &defaults());
    assert_eq!(c.state, tcp_state::ESTABLISHED);
    assert_eq!(c.state_age, Some(Duration::from_secs(1)));
    assert_eq!(c.since_peer, Some(Duration::from_secs(3)));
}

#[test]
fn apply_without_a_read_or_a_tick_rate_keeps_the_hooks_values() {
    let mut e = sampled(50 * SEC, tcp_state::CLOSE_WAIT);
    e.kernel.read_ns = 0;
    let mut c = connection();
    c.since_peer = Some(Duration::from_mins(1));
    apply(&mut c, &e, 101 * SEC, &defaults());
    assert_eq!(
        (c.state, c.since_peer, c.send_queue_bytes),
        (tcp_state::ESTABLISHED, Some(Duration::from_mins(1)), None)
    );

    // Read, but jiffies cannot be converted: the ACK age stays the hooks'.
    let e = sampled(50 * SEC, tcp_state::ESTABLISHED);
    let mut c = connection();
    c.since_peer = Some(Duration::from_mins(1));
    let no_hz = SocketDefaults {
        hz: None,
        ..defaults()
    };
    apply(&mut c, &e, 101 * SEC, &no_hz);
    assert_eq!(c.since_peer, Some(Duration::from_mins(1)));
    assert_eq!(c.send_queue_bytes, Some(1_700));
}

#[test]
fn microsecond_stamps_and_negative_queues_read_as_the_kernel_reports_them() {
    let mut e = sampled(50 * SEC, tcp_state::ESTABLISHED);
    e.kernel.flags = KS_USEC_TS;
    e.kernel.retrans_stamp = 99_500_000; // µs: 0.5 s before the read
    e.kernel.recv_queue = 0u32.wrapping_sub(5);
    let mut c = connection();
    apply(&mut c, &e, 100 * SEC, &defaults());
    assert_eq!(c.since_retrans_start, Some(Duration::from_millis(500)));
    assert_eq!(c.recv_queue_bytes, Some(0));
}

/// A socket the table missed becomes an entry as seeding would make it: times from the kernel's
/// stamps, the state's start a bound (the peer's FIN for `CLOSE_WAIT`), options known, and the
/// sample the refresh would write.
#[test]
fn a_missed_socket_becomes_an_entry_with_the_kernels_values() {
    let mut r = record(9, KIND_FULL, tcp_state::CLOSE_WAIT);
    r.family = monitor_common::AF_INET;
    r.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
    r.sport = 7000;
    r.dport = 40_000;
    r.now_ns = 100 * SEC;
    r.now_jiffies = 10_000;
    r.rcv_tstamp = 10_000 - 4 * HZ; // peer's last ACK (its FIN) 4 s before the read
    r.lsndtime = 10_000 - 6 * HZ;
    r.lrcvtime = 10_000 - 4 * HZ;
    r.flags = monitor_common::kernel_state::KS_KEEPOPEN;
    r.keepalive_time = 30 * HZ;
    r.total_retrans = 3;
    r.write_seq = 150;
    r.snd_una = 100;
    r.inode = 4242;
    let e = entry_of(&r, Some(HZ));
    assert_eq!(
        (e.state, e.netns, e.sport, e.dport),
        (tcp_state::CLOSE_WAIT, 7, 7000, 40_000)
    );
    assert_eq!(&e.saddr[..4], &[10, 0, 0, 1]);
    assert_eq!(e.last_peer_ns, 96 * SEC);
    assert_eq!(e.last_send_ns, 94 * SEC);
    assert_eq!(e.state_since_ns, 96 * SEC, "no later than the peer's FIN");
    let flags = FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND | FLAG_OPTIONS_KNOWN;
    assert_eq!(e.flags & flags, flags);
    assert_ne!(e.flags & FLAG_KEEPALIVE_ON, 0);
    assert_eq!((e.keepalive_time, e.retransmits), (30 * HZ, 3));
    assert_eq!(
        (e.kernel.read_ns, e.kernel.send_queue, e.kernel.inode),
        (100 * SEC, 50, 4242)
    );
    // Without the tick rate no time is guessed.
    let e = entry_of(&r, None);
    assert_eq!((e.last_peer_ns, e.state_since_ns), (0, 100 * SEC));
}

/// In the accept queue: read, no `struct socket`, not closed by the application, not a listener.
#[test]
fn a_socket_without_a_file_that_is_not_orphaned_is_in_the_accept_queue() {
    let mut e = sampled(50 * SEC, tcp_state::ESTABLISHED);
    assert!(!in_accept_queue(&e), "has a struct socket");
    e.kernel.flags |= monitor_common::kernel_state::KS_NO_SOCKET;
    assert!(in_accept_queue(&e));
    e.flags |= FLAG_ORPHAN;
    assert!(!in_accept_queue(&e), "orphaned: closed by the application");
    e.flags &= !FLAG_ORPHAN;
    e.state = tcp_state::LISTEN;
    assert!(!in_accept_queue(&e), "a listener");
    e.state = tcp_state::ESTABLISHED;
    e.kernel.read_ns = 0;
    assert!(!in_accept_queue(&e), "never read");
}
