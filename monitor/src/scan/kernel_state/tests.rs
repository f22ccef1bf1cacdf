use std::net::SocketAddr;

use monitor_common::kernel_state::KIND_REQUEST;

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
    e.state = tcp_state::ESTABLISHED;
    e.netns = 7;
    e.state_since_ns = state_since_ns;
    e
}

#[test]
fn mini_sockets_are_counted_full_sockets_kept() {
    let mut orphan = record(2, KIND_TIME_WAIT, tcp_state::TIME_WAIT);
    orphan.tw_substate = tcp_state::FIN_WAIT2;
    let mut time_wait = record(3, KIND_TIME_WAIT, tcp_state::TIME_WAIT);
    time_wait.tw_substate = tcp_state::TIME_WAIT;
    let records = vec![
        record(1, KIND_FULL, tcp_state::ESTABLISHED),
        orphan,
        time_wait,
        record(4, KIND_REQUEST, tcp_state::NEW_SYN_RECV),
    ];
    let truth = KernelTruth::new(records, HZ, HashSet::from([7]), 100 * SEC);
    assert_eq!(truth.by_cookie.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!((truth.time_wait, truth.orphan_fin_wait2), (1, 1));
}

/// Gone: its namespace was read, the read did not list it, and it was in its state before the
/// read began. Anything else stays.
#[test]
fn an_entry_is_gone_only_when_the_read_could_have_seen_it() {
    let truth = KernelTruth::new(
        vec![record(1, KIND_FULL, tcp_state::ESTABLISHED)],
        HZ,
        HashSet::from([7]),
        100 * SEC,
    );
    assert!(!truth.is_gone(1, &entry(50 * SEC)), "listed");
    assert!(
        truth.is_gone(2, &entry(50 * SEC)),
        "not listed, older than the read"
    );
    assert!(!truth.is_gone(2, &entry(150 * SEC)), "newer than the read");
    let mut elsewhere = entry(50 * SEC);
    elsewhere.netns = 8;
    assert!(!truth.is_gone(2, &elsewhere), "namespace not read");
    elsewhere.netns = 0;
    assert!(!truth.is_gone(2, &elsewhere), "namespace unknown");
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

/// The kernel's values where they are the better observation; the hooks' where they are newer.
#[test]
fn apply_takes_each_value_from_the_better_observation() {
    let mut r = record(1, KIND_FULL, tcp_state::CLOSE_WAIT);
    r.now_ns = 100 * SEC;
    r.now_jiffies = 10_000;
    r.rcv_tstamp = 10_000 - 10 * HZ; // 10 s before the read
    r.snd_una = 1_000;
    r.snd_nxt = 1_100;
    r.write_seq = 2_700;
    r.rcv_nxt = 500;
    r.copied_seq = 200;
    r.total_retrans = 5;
    r.flags = KS_KEEPOPEN;
    r.keepalive_time = 2 * HZ;
    r.user_timeout_ms = 30_000;
    let truth = KernelTruth::new([r], HZ, HashSet::from([7]), 100 * SEC);
    let r = truth.by_cookie[&1];
    let mut c = connection();
    c.retransmits = 2;
    c.since_peer = Some(Duration::from_mins(1));
    // A read 1 s ago; the hooks last saw a transition before it.
    apply(
        &mut c,
        &entry(50 * SEC),
        &r,
        Some(42),
        101 * SEC,
        &defaults(),
    );
    assert_eq!(
        c.state,
        tcp_state::CLOSE_WAIT,
        "a transition the hooks missed"
    );
    assert_eq!(
        c.since_peer,
        Some(Duration::from_secs(11)),
        "the kernel's is more recent"
    );
    assert_eq!(c.pid, Some(42), "the process holding it");
    assert_eq!(c.retransmits, 5);
    assert_eq!(c.unacked_bytes, Some(100));
    assert_eq!(c.send_queue_bytes, Some(1_700));
    assert_eq!(c.recv_queue_bytes, Some(300));
    assert_eq!(c.user_timeout, Some(Duration::from_secs(30)));
    let ka = c.keepalive.expect("keepalive from the kernel");
    assert!(ka.enabled);
    assert_eq!(ka.idle, Some(Duration::from_secs(2)), "the socket's own");
    assert_eq!(
        ka.interval,
        Some(Duration::from_secs(75)),
        "the namespace's default"
    );
    assert_eq!(ka.count, Some(9));

    // The hooks saw a transition after the read, and a packet 3 s ago: theirs are newer.
    let mut c = connection();
    c.since_peer = Some(Duration::from_secs(3));
    apply(
        &mut c,
        &entry(100 * SEC + 1),
        &r,
        None,
        101 * SEC,
        &defaults(),
    );
    assert_eq!(c.state, tcp_state::ESTABLISHED);
    assert_eq!(c.since_peer, Some(Duration::from_secs(3)));
    assert_eq!(c.pid, None, "no holder: the hooks' owner stays");
}
