use monitor_common::AF_INET;

use super::*;
use monitor_common::holders::HeldSocket;

const SEC: u64 = 1_000_000_000;
const HZ: u32 = 250;

fn defaults() -> SocketDefaults {
    SocketDefaults {
        hz: Some(HZ),
        ..SocketDefaults::default()
    }
}

/// An ESTABLISHED entry the hooks saw enter its state at 100 s, and nothing since.
fn entry() -> SockActivity {
    let mut e = SockActivity::zeroed();
    e.family = AF_INET;
    e.state = tcp_state::ESTABLISHED;
    e.state_since_ns = 100 * SEC;
    e
}

/// A pass's sample at jiffy `10_000`: last data sent 2 s, received 3 s, acknowledged 1 s before it.
fn sample() -> HeldSocket {
    let mut s = HeldSocket::zeroed();
    s.state = tcp_state::ESTABLISHED;
    s.now_jiffies = 10_000;
    s.lsndtime = 10_000 - 2 * HZ;
    s.lrcvtime = 10_000 - 3 * HZ;
    s.rcv_tstamp = 10_000 - HZ;
    (s.snd_una, s.snd_nxt, s.write_seq) = (1_000, 1_500, 4_000);
    s.srtt_us_x8 = 8 * 250;
    (s.bytes_sent, s.bytes_received) = (5_000, 7_000);
    s.recv_queue = 1_200;
    s
}

fn applied(e: &SockActivity, s: &HeldSocket, read_ns: u64, now_ns: u64) -> Connection {
    heard(e, s, read_ns, None, now_ns)
}

fn heard(
    e: &SockActivity,
    s: &HeldSocket,
    read_ns: u64,
    heard_ns: Option<u64>,
    now_ns: u64,
) -> Connection {
    let d = defaults();
    let mut c = convert::connection(1, e, now_ns, &d);
    let view = HeldView {
        sample: *s,
        read_ns,
        heard_ns,
    };
    apply(&mut c, e, view, now_ns, &d);
    c
}

#[test]
fn a_segment_no_kernel_time_records_counts_from_the_pass_that_saw_it() {
    // The last ACK 1 s before the pass at 120 s; a keepalive probe from the peer seen by the
    // pass at 120.2 s.
    let c = heard(
        &entry(),
        &sample(),
        120 * SEC,
        Some(120 * SEC + SEC / 5),
        121 * SEC,
    );
    assert_eq!(c.since_peer, Some(Duration::from_millis(800)));
}

#[test]
fn ages_are_the_kernels_plus_the_time_since_the_pass() {
    // The pass ran at 120 s, the scan at 120.5 s.
    let c = applied(&entry(), &sample(), 120 * SEC, 120 * SEC + SEC / 2);
    assert_eq!(c.since_send, Some(Duration::from_millis(2_500)));
    assert_eq!(c.since_recv, Some(Duration::from_millis(3_500)));
    assert_eq!(c.since_peer, Some(Duration::from_millis(1_500)));
    assert_eq!(c.idle, Some(Duration::from_millis(1_500)));
    assert_eq!(c.unacked_bytes, Some(500));
    assert_eq!(c.send_queue_bytes, Some(3_000));
    assert_eq!(c.recv_queue_bytes, Some(1_200));
    assert_eq!(c.srtt, Some(Duration::from_micros(250)));
    assert_eq!((c.bytes_sent, c.bytes_received), (5_000, 7_000));
    assert_eq!(c.state, tcp_state::ESTABLISHED);
    assert_eq!(
        c.state_age,
        Some(Duration::from_millis(20_500)),
        "the hooks' own"
    );
}

#[test]
fn a_hook_event_after_the_pass_is_more_recent() {
    let mut e = entry();
    // The hooks saw data from the peer at 120.4 s, after the pass at 120 s.
    e.last_peer_ns = 120 * SEC + 400_000_000;
    let c = applied(&e, &sample(), 120 * SEC, 120 * SEC + SEC / 2);
    assert_eq!(c.since_peer, Some(Duration::from_millis(100)));
}

#[test]
fn options_are_the_sockets_with_the_namespaces_defaults_where_unset() {
    let mut s = sample();
    s.flags = HS_KEEPOPEN | HS_TIMERS_READ;
    s.keepalive_time = 5 * HZ;
    s.user_timeout_ms = 3_000;
    let c = applied(&entry(), &s, 120 * SEC, 120 * SEC);
    let ka = c.keepalive.expect("keepalive known");
    assert!(ka.enabled);
    assert_eq!(ka.idle, Some(Duration::from_secs(5)));
    assert_eq!(ka.interval, Some(defaults().keepalive_intvl));
    assert_eq!(ka.count, Some(defaults().keepalive_probes));
    assert_eq!(c.user_timeout, Some(Duration::from_secs(3)));
    let off = applied(&entry(), &sample(), 120 * SEC, 120 * SEC);
    assert!(!off.keepalive.expect("known").enabled);
    assert_eq!(off.user_timeout, None);
}

#[test]
fn a_transition_the_hooks_missed_takes_the_kernels_state_at_least_since_the_pass() {
    let mut s = sample();
    s.state = tcp_state::CLOSE_WAIT;
    let c = applied(&entry(), &s, 120 * SEC, 121 * SEC);
    assert_eq!(c.state, tcp_state::CLOSE_WAIT);
    assert_eq!(c.state_age, None);
    assert_eq!(c.state_age_at_least, Some(Duration::from_secs(1)));
    // A transition the hooks saw after the pass is newer than the pass's state.
    let mut later = entry();
    (later.state, later.state_since_ns) = (tcp_state::FIN_WAIT1, 120 * SEC + 1);
    let c = applied(&later, &sample(), 120 * SEC, 121 * SEC);
    assert_eq!(c.state, tcp_state::FIN_WAIT1);
}

#[test]
fn a_listener_has_no_peer_ages() {
    let mut e = entry();
    e.state = tcp_state::LISTEN;
    let mut s = sample();
    s.state = tcp_state::LISTEN;
    let c = applied(&e, &s, 120 * SEC, 120 * SEC);
    assert_eq!(
        (c.since_send, c.since_peer, c.unacked_bytes),
        (None, None, None)
    );
}

#[test]
fn retransmissions_are_dated_only_while_the_retransmission_timer_runs() {
    let mut s = sample();
    // First sent 4 000 ms before the pass, on the millisecond TCP clock.
    (s.stamp_now, s.retrans_stamp) = (50_000, 46_000);
    let idle = applied(&entry(), &s, 120 * SEC, 121 * SEC);
    assert_eq!(
        idle.since_retrans_start, None,
        "no timeout fired: not a silence"
    );
    s.retransmits = 2;
    let c = applied(&entry(), &s, 120 * SEC, 121 * SEC);
    assert_eq!(c.since_retrans_start, Some(Duration::from_secs(5)));
}

#[test]
fn timers_the_pass_skipped_stay_as_the_slot_has_them() {
    // The slot (the last read of the kernel's socket state) knows the socket's own idle time.
    let mut e = entry();
    e.flags |= monitor_common::FLAG_OPTIONS_KNOWN;
    e.keepalive_time = 7 * HZ;
    // Keepalive off, nothing outstanding: the pass read no timers.
    let c = applied(&e, &sample(), 120 * SEC, 120 * SEC);
    let ka = c.keepalive.expect("keepalive known");
    assert!(!ka.enabled);
    assert_eq!(
        ka.idle,
        Some(Duration::from_secs(7)),
        "the slot's, not a zero"
    );
    // Read: the pass's values replace the slot's.
    let mut s = sample();
    s.flags = HS_KEEPOPEN | HS_TIMERS_READ;
    s.keepalive_time = 5 * HZ;
    let ka = applied(&e, &s, 120 * SEC, 120 * SEC)
        .keepalive
        .expect("known");
    assert!(ka.enabled);
    assert_eq!(ka.idle, Some(Duration::from_secs(5)));
}

#[test]
fn the_walk_says_which_socket_is_an_orphan_and_which_waits_to_be_accepted() {
    // The iter/tcp read (the entry's flags) has not seen either yet.
    let mut s = sample();
    s.flags = HS_DEAD | HS_NO_SOCKET;
    let orphan = applied(&entry(), &s, 120 * SEC, 120 * SEC);
    assert!(orphan.orphan);
    assert!(!in_accept_queue(&s), "an orphan is in no accept queue");
    s.flags = HS_NO_SOCKET;
    assert!(in_accept_queue(&s));
    assert!(!applied(&entry(), &s, 120 * SEC, 120 * SEC).orphan);
    s.flags = 0;
    assert!(!in_accept_queue(&s), "accepted: it has a struct socket");
    s.state = tcp_state::LISTEN;
    s.flags = HS_NO_SOCKET;
    assert!(!in_accept_queue(&s), "a listener is no queued connection");
}
