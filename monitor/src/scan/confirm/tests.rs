use std::net::SocketAddr;

use monitor_common::tcp_state;

use super::*;
use crate::sock_diag::TcpInfoSummary;

fn suspect(cookie: u64, reasons: &[Reason]) -> Connection {
    let local: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let remote: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let mut c = Connection::new(cookie, tcp_state::ESTABLISHED, local, remote);
    c.suspect = reasons.to_vec();
    c
}

/// A verdict confirmed at an earlier scan stands without asking the kernel again; one never
/// confirmed is not raised while the kernel cannot be asked.
#[test]
fn only_confirmed_reasons_stand_without_a_query() {
    let mut confirmer = Confirmer::default();
    confirmer.start_scan();
    let mut c = suspect(1, &[Reason::IdleNoKeepalive]);
    // No key (namespace unknown): nothing to ask, nothing confirmed yet.
    assert_eq!(
        confirmer.confirm(&mut c, None, |_| unreachable!()),
        Outcome::Judged
    );
    assert!(c.suspect.is_empty(), "not raised unconfirmed");
    // Confirmed by an earlier scan (as a query would have): kept, and remembered again.
    confirmer.now.insert(2, vec![Reason::IdleNoKeepalive]);
    confirmer.end_scan();
    confirmer.start_scan();
    let mut c = suspect(2, &[Reason::IdleNoKeepalive]);
    confirmer.confirm(&mut c, None, |_| unreachable!());
    assert_eq!(c.suspect, [Reason::IdleNoKeepalive]);
    // A new reason beside it waits for its own confirmation.
    let mut c = suspect(2, &[Reason::IdleNoKeepalive, Reason::PeerUnresponsive]);
    confirmer.confirm(&mut c, None, |_| unreachable!());
    assert_eq!(c.suspect, [Reason::IdleNoKeepalive]);
    let kept = confirmer.end_scan();
    assert_eq!(
        kept.get(&2).map(Vec::as_slice),
        Some(&[Reason::IdleNoKeepalive][..])
    );
    assert!(!kept.contains_key(&1));
    // A scan where it is no longer suspect forgets it.
    confirmer.start_scan();
    assert!(confirmer.end_scan().is_empty());
}

fn kernel(state: u8, keepalive_timer: bool) -> DiagSocket {
    let mut c = suspect(1, &[]);
    c.state = state;
    DiagSocket {
        netns: 7,
        cookie: 1,
        family: monitor_common::AF_INET,
        state,
        local: c.local,
        remote: c.remote,
        inode: 9,
        tcp_info: Some(TcpInfoSummary {
            retransmits: 0,
            probes: 0,
            rto_us: 200_000,
            last_data_sent_ms: 0,
            last_data_recv_ms: 0,
            last_ack_recv_ms: 2_000,
            unacked_segments: 0,
            total_retrans: 4,
            rtt_us: 100,
            bytes_sent: Some(1_000),
            bytes_acked: Some(900),
            bytes_retrans: Some(0),
            bytes_received: Some(0),
        }),
        keepalive_timer,
    }
}

/// The kernel's answer replaces what the verdict was judged on where it is newer.
#[test]
fn overlay_takes_the_kernels_current_values() {
    let mut c = suspect(1, &[Reason::CloseWaitStuck]);
    c.state = tcp_state::CLOSE_WAIT;
    c.state_age = Some(Duration::from_mins(5));
    c.since_peer = Some(Duration::from_mins(5));
    c.retransmits = 1;
    overlay(&mut c, &kernel(tcp_state::ESTABLISHED, true));
    assert_eq!(
        c.state,
        tcp_state::ESTABLISHED,
        "the table missed a transition"
    );
    assert_eq!(c.state_age, None, "its age is not known");
    assert_eq!(c.since_peer, Some(Duration::from_secs(2)));
    assert_eq!((c.retransmits, c.unacked_bytes), (4, Some(100)));
    assert!(
        c.keepalive.is_some_and(|k| k.enabled),
        "keepalive timer pending"
    );

    // Same state: its age stands; the hooks' more recent packet stands too.
    let mut c = suspect(1, &[]);
    c.state_age = Some(Duration::from_mins(5));
    c.since_peer = Some(Duration::from_secs(1));
    overlay(&mut c, &kernel(tcp_state::ESTABLISHED, false));
    assert_eq!(c.state_age, Some(Duration::from_mins(5)));
    assert_eq!(c.since_peer, Some(Duration::from_secs(1)));
    assert_eq!(c.keepalive, None);
}

/// A socket the last pass over the held sockets read as quiet, which has sent and received
/// since: the kernel's times now stand, and a half-close still streaming is no longer
/// `close_wait_stuck` when judged again on them.
#[test]
fn overlay_takes_the_kernels_last_data_times() {
    let mut c = suspect(1, &[Reason::CloseWaitStuck]);
    c.state = tcp_state::CLOSE_WAIT;
    c.state_age = Some(Duration::from_mins(5));
    c.since_send = Some(Duration::from_mins(2));
    c.since_recv = Some(Duration::from_secs(25));
    c.since_peer = Some(Duration::from_mins(2));
    c.idle = Some(Duration::from_secs(25));
    // `close_wait_after` 1 min by default: stuck, as that pass saw it.
    let policy = crate::verdict::Policy::default();
    let judged = |c: &Connection| crate::verdict::evaluate(c, &policy, 15).0;
    assert!(judged(&c).contains(&Reason::CloseWaitStuck));
    let mut streaming = kernel(tcp_state::CLOSE_WAIT, false);
    let info = streaming.tcp_info.as_mut().expect("tcp_info");
    (
        info.last_data_sent_ms,
        info.last_data_recv_ms,
        info.last_ack_recv_ms,
    ) = (150, 30_000, 140);
    overlay(&mut c, &streaming);
    assert_eq!(c.since_send, Some(Duration::from_millis(150)));
    assert_eq!(
        c.since_recv,
        Some(Duration::from_secs(25)),
        "ours is more recent"
    );
    assert_eq!(c.since_peer, Some(Duration::from_millis(140)));
    assert_eq!(c.idle, Some(Duration::from_millis(140)));
    let reasons = judged(&c);
    assert!(
        !reasons.contains(&Reason::CloseWaitStuck),
        "still sending: {reasons:?}"
    );

    // Retransmitting (the timer has fired twice): the last segment sent is a retransmission,
    // which tells nothing of the application's sending.
    let mut c = suspect(1, &[Reason::PeerUnresponsive]);
    c.since_send = Some(Duration::from_secs(9));
    let mut retransmitting = streaming.clone();
    retransmitting
        .tcp_info
        .as_mut()
        .expect("tcp_info")
        .retransmits = 2;
    overlay(&mut c, &retransmitting);
    assert_eq!(c.since_send, Some(Duration::from_secs(9)));
}

#[test]
fn the_query_key_names_the_socket() {
    let mut c = suspect(5, &[]);
    assert_eq!(key_of(&c), None, "no namespace: cannot be asked");
    c.netns = Some(7);
    let key = key_of(&c).expect("key");
    assert_eq!(
        (key.netns, key.family, key.cookie),
        (7, monitor_common::AF_INET, 5)
    );
    c.local = "[::ffff:10.0.0.1]:80".parse().unwrap();
    assert_eq!(key_of(&c).unwrap().family, monitor_common::AF_INET6);
}
