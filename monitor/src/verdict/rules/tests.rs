use std::net::SocketAddr;

use super::*;
use crate::{
    model::Keepalive,
    verdict::{Matcher, Override},
};

const S: fn(u64) -> Duration = Duration::from_secs;

fn conn(state: u8) -> Connection {
    let local: SocketAddr = "10.0.0.1:8080".parse().unwrap();
    let remote: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let mut c = Connection::new(1, state, local, remote);
    c.comm = Some("app".into());
    c.state_age = Some(S(1));
    c.since_peer = Some(S(1));
    c.unacked_bytes = Some(0);
    c.keepalive = Some(Keepalive {
        enabled: false,
        idle: Some(S(7200)),
        interval: Some(S(75)),
        count: Some(9),
    });
    c
}

fn policy() -> Policy {
    Policy::default()
}

/// The kernel's default `tcp_retries2`.
const RETRIES2: u32 = 15;

fn reasons(c: &Connection) -> Vec<Reason> {
    evaluate(c, &policy(), RETRIES2).0
}

#[test]
fn healthy_connections_are_clean() {
    let busy = conn(tcp_state::ESTABLISHED);
    assert!(reasons(&busy).is_empty());
    let mut listener = conn(tcp_state::LISTEN);
    listener.state_age = Some(S(86_400));
    assert!(reasons(&listener).is_empty());
}

#[test]
fn close_wait_after_threshold_including_seeded_lower_bound() {
    let mut c = conn(tcp_state::CLOSE_WAIT);
    c.state_age = Some(S(59));
    assert!(reasons(&c).is_empty());
    c.state_age = Some(S(61));
    assert_eq!(reasons(&c), [Reason::CloseWaitStuck]);
    c.state_age = None;
    c.state_age_at_least = Some(S(61));
    assert_eq!(reasons(&c), [Reason::CloseWaitStuck]);
}

#[test]
fn fin_wait2_only_when_the_application_still_holds_it() {
    let mut c = conn(tcp_state::FIN_WAIT2);
    c.state_age = Some(S(121));
    assert_eq!(reasons(&c), [Reason::FinWait2Stuck]);
    c.orphan = true;
    assert!(reasons(&c).is_empty());
}

#[test]
fn peer_unresponsive_needs_unacked_retransmits_and_silence() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.unacked_bytes = Some(1000);
    c.retransmits = 4;
    c.since_peer = Some(S(9));
    assert!(reasons(&c).is_empty());
    c.since_peer = Some(S(11));
    let (r, gives_up) = evaluate(&c, &policy(), RETRIES2);
    assert_eq!(r, [Reason::PeerUnresponsive]);
    assert_eq!(
        gives_up,
        Some(Duration::from_millis(924_600).checked_sub(S(11)).unwrap())
    );
    c.user_timeout = Some(S(30));
    assert_eq!(evaluate(&c, &policy(), RETRIES2).1, Some(S(19)));
    // With the kernel's clock for the give-up timer (retrans_stamp), that one counts.
    c.since_retrans_start = Some(S(20));
    assert_eq!(evaluate(&c, &policy(), RETRIES2).1, Some(S(10)));
    c.since_retrans_start = None;
    c.retransmits = 0;
    assert!(
        reasons(&c).is_empty(),
        "silence without retransmits is not this verdict"
    );
}

/// A half-close in progress is not a leak: the side still sending after the peer's FIN
/// (`CLOSE_WAIT`) and the side still receiving after its own (`FIN_WAIT2`) are stuck only once
/// that data has stopped for longer than the threshold.
#[test]
fn half_close_moving_data_is_not_stuck() {
    let mut server = conn(tcp_state::CLOSE_WAIT);
    server.state_age = Some(S(61));
    server.since_send = Some(Duration::from_millis(150));
    assert!(reasons(&server).is_empty(), "still sending its response");
    server.since_send = Some(S(61));
    assert_eq!(reasons(&server), [Reason::CloseWaitStuck]);
    server.since_send = None;
    assert_eq!(reasons(&server), [Reason::CloseWaitStuck], "never sent");
    let mut client = conn(tcp_state::FIN_WAIT2);
    client.state_age = Some(S(121));
    client.since_recv = Some(Duration::from_millis(150));
    assert!(reasons(&client).is_empty(), "still receiving the response");
    client.since_recv = Some(S(121));
    assert_eq!(reasons(&client), [Reason::FinWait2Stuck]);
    client.since_recv = Some(S(300));
    client.state_age = Some(S(100));
    assert!(
        reasons(&client).is_empty(),
        "data before the state counts from the state"
    );
}

#[test]
fn keepalive_unanswered_after_first_probe_interval() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.keepalive = Some(Keepalive {
        enabled: true,
        idle: Some(S(2)),
        interval: Some(S(1)),
        count: Some(5),
    });
    c.since_peer = Some(Duration::from_millis(2500));
    assert!(reasons(&c).is_empty(), "probe not yet due for an answer");
    c.since_peer = Some(S(4));
    assert_eq!(reasons(&c), [Reason::KeepaliveUnanswered]);
}

#[test]
fn idle_without_keepalive_or_user_timeout() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.since_peer = Some(S(16 * 60));
    assert_eq!(reasons(&c), [Reason::IdleNoKeepalive]);
    c.user_timeout = Some(S(30));
    c.send_queue_bytes = Some(0);
    assert_eq!(
        reasons(&c),
        [Reason::IdleNoKeepalive],
        "with nothing outstanding a user timeout never fires"
    );
    c.send_queue_bytes = Some(500);
    assert!(
        reasons(&c).is_empty(),
        "data queued behind a zero window is probed: the user timeout bounds it"
    );
    c.user_timeout = None;
    c.send_queue_bytes = None;
    c.keepalive = None;
    assert!(reasons(&c).is_empty(), "unknown keepalive is not a verdict");
    c.keepalive = Some(Keepalive {
        enabled: true,
        idle: Some(S(7200)),
        interval: Some(S(75)),
        count: Some(9),
    });
    assert!(reasons(&c).is_empty());
}

/// A sender to a dead peer is `peer_unresponsive` and nothing else, however long the silence:
/// with data outstanding it is not idle, and "enable `SO_KEEPALIVE`" would be the wrong remedy.
#[test]
fn one_reason_per_fault_a_dead_peer_with_data_outstanding_is_not_idle() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.unacked_bytes = Some(1700);
    c.retransmits = 5;
    c.since_peer = Some(S(16 * 60));
    assert_eq!(reasons(&c), [Reason::PeerUnresponsive]);
    c.unacked_bytes = Some(0);
    c.retransmits = 0;
    assert_eq!(
        reasons(&c),
        [Reason::IdleNoKeepalive],
        "acknowledged: idle again"
    );
}

#[test]
fn overrides_and_ignore_list() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.since_peer = Some(S(16 * 60));
    let mut p = policy();
    p.overrides.push(Override {
        matcher: Matcher {
            local_port: Some(8080),
            ..Matcher::default()
        },
        idle_after: Some(S(2 * 3600)),
        ..Override::default()
    });
    assert!(
        evaluate(&c, &p, RETRIES2).0.is_empty(),
        "long-poll port allows 2 h idle"
    );
    p.overrides.clear();
    p.ignore.push(Matcher {
        process: Some("app".into()),
        ..Matcher::default()
    });
    assert!(evaluate(&c, &p, RETRIES2).0.is_empty());
}

fn probed(answered: bool, alive: bool, dead: bool) -> crate::model::ProbeResult {
    use crate::model::PeerVerdict;
    crate::model::ProbeResult {
        sent_at: std::time::SystemTime::UNIX_EPOCH,
        in_progress: false,
        answered,
        rtt: None,
        unanswered: if answered { 0 } else { 3 },
        verdict: match (alive, dead) {
            (true, _) => Some(PeerVerdict::Alive),
            (false, true) => Some(PeerVerdict::Dead),
            (false, false) => None,
        },
    }
}

/// The probe's evidence decides: a dead peer replaces `idle_no_keepalive` with `peer_dead`, an
/// answer clears it while fresh; an expired answer leaves the idle risk as it was.
#[test]
fn probe_results_replace_the_idle_risk() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.since_peer = Some(S(16 * 60));
    assert_eq!(reasons(&c), vec![Reason::IdleNoKeepalive]);
    c.probe = Some(probed(false, false, true));
    assert_eq!(reasons(&c), vec![Reason::PeerDead]);
    c.probe = Some(probed(true, true, false));
    assert!(reasons(&c).is_empty(), "peer_alive: no alert");
    c.probe = Some(probed(true, false, false));
    assert_eq!(reasons(&c), vec![Reason::IdleNoKeepalive], "answer expired");
    let mut ignored = policy();
    ignored.ignore.push(Matcher {
        local_port: Some(8080),
        ..Matcher::default()
    });
    c.probe = Some(probed(false, false, true));
    assert!(evaluate(&c, &ignored, RETRIES2).0.is_empty());
}

/// `probe = true|false` in an override wins over `[probe].enabled`; the last one that says
/// wins; ignored connections are never probed.
#[test]
fn probe_opt_in_and_out_by_override() {
    let c = conn(tcp_state::ESTABLISHED);
    let mut p = policy();
    assert!(!p.probe_opted_in(&c, false));
    assert!(p.probe_opted_in(&c, true));
    p.overrides.push(Override {
        matcher: Matcher {
            local_port: Some(8080),
            ..Matcher::default()
        },
        probe: Some(true),
        ..Override::default()
    });
    p.overrides.push(Override {
        matcher: Matcher {
            process: Some("other".into()),
            ..Matcher::default()
        },
        probe: Some(false),
        ..Override::default()
    });
    assert!(p.probe_opted_in(&c, false), "opted in by port");
    p.overrides.push(Override {
        matcher: Matcher {
            process: Some("app".into()),
            ..Matcher::default()
        },
        probe: Some(false),
        ..Override::default()
    });
    assert!(!p.probe_opted_in(&c, true), "the later override opts out");
    p.overrides.clear();
    p.ignore.push(Matcher {
        process: Some("app".into()),
        ..Matcher::default()
    });
    assert!(!p.probe_opted_in(&c, true), "ignored: never probed");
}

/// A query after a long idle spell: the peer's last ACK is a minute old, but the kernel has
/// been retransmitting the query only since it was sent; it is unanswered only that long.
#[test]
fn peer_unresponsive_counts_from_the_first_transmission_of_what_is_retransmitted() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.unacked_bytes = Some(5);
    c.retransmits = 2;
    c.since_peer = Some(S(60));
    c.since_retrans_start = Some(S(3));
    assert!(
        reasons(&c).is_empty(),
        "3 s of retransmitting is under 10 s"
    );
    c.since_retrans_start = Some(S(11));
    let (r, gives_up) = evaluate(&c, &policy(), RETRIES2);
    assert_eq!(r, [Reason::PeerUnresponsive]);
    assert_eq!(
        gives_up,
        Some(Duration::from_millis(924_600).checked_sub(S(11)).unwrap())
    );
}

/// Before the kernel read dates the retransmissions, the last data sent bounds the silence:
/// the query went out 1 s ago, so the peer has left it unanswered 1 s at most.
#[test]
fn undated_retransmissions_count_from_the_last_data_sent() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.unacked_bytes = Some(5);
    c.retransmits = 2;
    c.since_peer = Some(S(60));
    c.since_send = Some(S(1));
    assert!(reasons(&c).is_empty());
    c.since_send = Some(S(12));
    assert_eq!(reasons(&c), [Reason::PeerUnresponsive]);
    let gives_up = evaluate(&c, &policy(), RETRIES2).1;
    assert_eq!(gives_up, Duration::from_millis(924_600).checked_sub(S(12)));
}
