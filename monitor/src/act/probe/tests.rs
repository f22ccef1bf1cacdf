use std::net::SocketAddr;

use monitor_common::sockopt::{OUTCOME_DONE, SockoptRequest, SockoptValues};

use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

/// A receive-only connection whose peer has been silent for `silent` seconds.
fn quiet(silent: u64) -> Connection {
    let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let remote: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let mut c = Connection::new(1, tcp_state::ESTABLISHED, local, remote);
    c.netns = Some(7);
    c.since_peer = Some(S(silent));
    c.unacked_bytes = Some(0);
    c.send_queue_bytes = Some(0);
    c.keepalive = Some(Keepalive {
        enabled: false,
        idle: Some(S(7200)),
        interval: Some(S(75)),
        count: Some(9),
    });
    c
}

#[test]
fn candidates_are_quiet_established_sockets_without_keepalive() {
    let after = S(10);
    assert_eq!(is_candidate(&quiet(11), after), Some(S(11)));
    assert_eq!(is_candidate(&quiet(9), after), None, "not idle long enough");
    let mut c = quiet(11);
    c.unacked_bytes = Some(1);
    assert_eq!(is_candidate(&c, after), None, "data in flight: never");
    let mut c = quiet(11);
    c.send_queue_bytes = Some(10);
    assert_eq!(
        is_candidate(&c, after),
        None,
        "data waiting to be sent: never"
    );
    let mut c = quiet(11);
    c.keepalive = c.keepalive.map(|ka| Keepalive {
        enabled: true,
        ..ka
    });
    assert_eq!(is_candidate(&c, after), None, "keepalive on");
    let mut c = quiet(11);
    c.keepalive = None;
    assert_eq!(is_candidate(&c, after), None, "keepalive unknown");
    let mut c = quiet(11);
    c.user_timeout = Some(S(30));
    assert_eq!(is_candidate(&c, after), None, "user timeout set");
    let mut c = quiet(11);
    c.state = tcp_state::CLOSE_WAIT;
    assert_eq!(is_candidate(&c, after), None);
}

fn book(enabled: bool) -> ProbeBook {
    ProbeBook::new(
        ProbeSettings {
            enabled,
            after: Some(S(10)),
            interval: S(1),
            count: 3,
            max_per_second: 10,
            max_per_scan: 10,
        },
        Some(1000),
    )
}

/// Offers follow the opt-in; a running probe shows the application's options, not the probe's.
#[test]
fn scans_offer_opted_in_candidates_and_see_the_applications_options() {
    let policy = Policy::default();
    let off = book(false);
    off.observe(&quiet(11), &policy);
    off.end_scan();
    assert!(off.machine().starts(1).is_empty(), "not opted in");

    let on = book(true);
    let c = quiet(11);
    on.observe(&c, &policy);
    on.end_scan();
    let starts = on.machine().starts(1_000_000_000);
    assert_eq!(starts.len(), 1);
    let before = SockoptValues {
        keepalive: 0,
        keepidle_s: 7200,
        keepintvl_s: 75,
        keepcnt: 9,
        user_timeout_ms: 0,
    };
    let outcome = SockoptRequest {
        outcome: OUTCOME_DONE,
        applied: starts[0].1.set,
        before,
        ..SockoptRequest::default()
    };
    let now = std::time::SystemTime::now();
    assert!(
        on.machine()
            .started(starts[0].0, &outcome, 1_000_000_000, now)
    );

    // The kernel read shows the probe's keepalive; the verdicts must see the application's.
    let mut seen = quiet(12);
    seen.keepalive = Some(Keepalive {
        enabled: true,
        idle: Some(S(1)),
        interval: Some(S(1)),
        count: Some(127),
    });
    on.annotate(&mut seen, 2_000_000_000, &policy);
    assert_eq!(seen.keepalive, c.keepalive);
    let probe = seen.probe.expect("in progress");
    assert!(probe.in_progress && probe.verdict.is_none());
}

/// An answered probe is `peer_alive` until the connection is idle for `after` again; a dead
/// verdict lasts until the peer is heard from after it.
#[test]
fn results_expire_with_idleness_and_news_from_the_peer() {
    let policy = Policy::default();
    let b = book(true);
    let finished = |answered: bool, dead: bool| machine::Finished {
        sent_at: std::time::SystemTime::UNIX_EPOCH,
        ended_ns: 100 * 1_000_000_000,
        answered,
        rtt: None,
        unanswered: 0,
        dead,
        one_way: false,
        before: SockoptValues::default(),
    };
    b.machine().results.insert(1, finished(true, false));
    let mut c = quiet(3);
    b.annotate(&mut c, 103 * 1_000_000_000, &policy);
    assert_eq!(c.probe.unwrap().verdict, Some(PeerVerdict::Alive));
    let mut c = quiet(11);
    b.annotate(&mut c, 111 * 1_000_000_000, &policy);
    assert_eq!(c.probe.unwrap().verdict, None, "idle again for after");

    b.machine().results.insert(1, finished(false, true));
    let mut c = quiet(20);
    b.annotate(&mut c, 110 * 1_000_000_000, &policy);
    assert_eq!(
        c.probe.unwrap().verdict,
        Some(PeerVerdict::Dead),
        "silent since the verdict"
    );
    let mut c = quiet(1);
    b.annotate(&mut c, 110 * 1_000_000_000, &policy);
    assert_eq!(
        c.probe.unwrap().verdict,
        None,
        "heard from after the verdict"
    );

    // A kernel read from before the restore still shows the probe's timers: not the
    // application's keepalive.
    let mut stale = quiet(20);
    stale.keepalive = Some(Keepalive {
        enabled: true,
        idle: Some(S(1)),
        interval: Some(S(1)),
        count: Some(127),
    });
    b.annotate(&mut stale, 110 * 1_000_000_000, &policy);
    assert_eq!(stale.keepalive.map(|ka| ka.enabled), Some(false));
}

#[test]
fn counters_count_answered_and_dead_only() {
    let b = book(true);
    b.count(Conclusion::Answered);
    b.count(Conclusion::Dead);
    b.count(Conclusion::Dead);
    b.count(Conclusion::Inconclusive);
    b.count(Conclusion::Gone);
    let v = |r: &str| b.probes_total().with_label_values(&[r]).get();
    assert_eq!((v("answered"), v("unanswered")), (1, 2));
}
