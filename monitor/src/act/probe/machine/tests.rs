use monitor_common::sockopt::{OUTCOME_NOT_SEEN, SockoptValues};

use super::{round_trip::probe_departure, *};

const SECOND: u64 = 1_000_000_000;

fn settings() -> ProbeSettings {
    ProbeSettings {
        enabled: true,
        after: Some(Duration::from_secs(10)),
        interval: Duration::from_secs(2),
        count: 3,
        max_per_second: 100,
        max_per_scan: 2,
    }
}

fn candidate(cookie: u64) -> Candidate {
    Candidate {
        cookie,
        netns: 7,
        local: "10.0.0.1:40000".parse().unwrap(),
        remote: "10.0.0.2:80".parse().unwrap(),
        pid: Some(1),
        comm: None,
        silent_for: Duration::from_mins(1),
    }
}

const APP: SockoptValues = SockoptValues {
    keepalive: 0,
    keepidle_s: 7200,
    keepintvl_s: 75,
    keepcnt: 9,
    user_timeout_ms: 0,
};

/// The probe's options for a candidate silent a minute ([`candidate`]).
const STARTED: SockoptValues = SockoptValues {
    keepalive: 1,
    keepidle_s: 60,
    keepintvl_s: 2,
    keepcnt: 127,
    user_timeout_ms: 0,
};

/// What the kernel answers to a start: everything applied, the application's options before.
fn started_outcome(rcv_tstamp: u32, now_jiffies: u32) -> SockoptRequest {
    SockoptRequest {
        set: START_SET,
        outcome: OUTCOME_DONE,
        applied: START_SET,
        want: STARTED,
        before: APP,
        rcv_tstamp,
        now_jiffies,
        ..SockoptRequest::default()
    }
}

fn finish_outcome(rcv_tstamp: u32, probes_out: u32) -> SockoptRequest {
    SockoptRequest {
        set: RESTORE_SET,
        outcome: OUTCOME_DONE,
        applied: RESTORE_SET,
        rcv_tstamp,
        probes_out,
        ..SockoptRequest::default()
    }
}

fn machine() -> Machine {
    Machine::new(settings(), Some(250))
}

/// Offers, then a scan end, then starts: each step of the candidate's way in.
fn start(m: &mut Machine, cookie: u64, at: u64) {
    m.offer(candidate(cookie));
    m.end_scan();
    let starts = m.starts(at);
    assert_eq!(starts.len(), 1);
    assert!(m.started(
        candidate(cookie),
        // Silent a minute (15000 jiffies at HZ=250), as the candidate: the probe leaves at once.
        &started_outcome(1000, 16_000),
        at,
        SystemTime::UNIX_EPOCH
    ));
}

#[test]
fn start_sets_keepalive_with_probe_timers_and_restore_puts_back_before() {
    let m = machine();
    let req = m.start_request(Duration::from_millis(5_900));
    assert_eq!(req.set, START_SET);
    assert_eq!(
        req.want,
        SockoptValues {
            keepalive: 1,
            keepidle_s: 5,
            keepintvl_s: 2,
            keepcnt: 127,
            user_timeout_ms: 0
        }
    );
    let restore = restore_request(&started_outcome(1, 2));
    assert_eq!(restore.set, RESTORE_SET, "all five options");
    let idle = |silent: Duration| m.start_request(silent).want.keepidle_s;
    assert_eq!(idle(Duration::from_millis(300)), 1, "at least a second");
    assert_eq!(
        idle(Duration::from_secs(1 << 20)),
        32_767,
        "the kernel's maximum"
    );
    assert_eq!(restore.want, APP, "exactly what the application had");
}

/// `max_per_scan` bounds the probes in progress; `max_per_second` the starts per second.
#[test]
fn caps_hold() {
    let mut m = machine();
    for cookie in 1..=5 {
        m.offer(candidate(cookie));
    }
    m.end_scan();
    let first = m.starts(SECOND);
    assert_eq!(first.len(), 2, "max_per_scan = 2");
    for (c, _) in &first {
        assert!(m.started(*c, &started_outcome(0, 0), SECOND, SystemTime::UNIX_EPOCH));
    }
    m.offer(candidate(3));
    m.end_scan();
    assert!(m.starts(SECOND).is_empty(), "two in flight: no room");

    let mut per_second = Machine::new(
        ProbeSettings {
            max_per_second: 1,
            max_per_scan: 10,
            ..settings()
        },
        None,
    );
    for cookie in 1..=3 {
        per_second.offer(candidate(cookie));
    }
    per_second.end_scan();
    assert_eq!(per_second.starts(SECOND).len(), 1);
    assert!(
        per_second.starts(SECOND + SECOND / 2).is_empty(),
        "same second"
    );
    assert_eq!(per_second.starts(2 * SECOND).len(), 1, "next second");
}

#[test]
fn offers_are_capped_per_scan_and_skip_running_and_dead() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    m.offer(candidate(1));
    for cookie in 2..=9 {
        m.offer(candidate(cookie));
    }
    m.end_scan();
    assert_eq!(m.pending.len(), 2, "max_per_scan offers per scan");
    assert!(
        m.pending.iter().all(|c| c.cookie != 1),
        "running: not offered"
    );
}

#[test]
fn answered_probe_finishes_early_with_rtt() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    assert!(
        m.due(SECOND + SECOND / 2, false).is_empty(),
        "not answered, not out of time"
    );
    // The hooks saw the peer 0.2 s ago, after the start.
    m.heard(1, Duration::from_millis(200), 2 * SECOND);
    let due = m.due(2 * SECOND, false);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1.want, APP);
    // The answer came 2 jiffies after the start (rcv_tstamp 16002, start jiffies 16000).
    let conclusion = m.finished(1, &finish_outcome(16_002, 0), 2 * SECOND);
    assert_eq!(conclusion, Conclusion::Answered);
    let r = m.results[&1];
    assert!(r.answered && !r.dead);
    assert_eq!(r.rtt, Some(Duration::from_millis(8)), "2 jiffies at HZ=250");
    assert!(m.running.is_empty());
}

/// Each running probe's socket is queried every quarter of its keepidle (at most every
/// second); an ACK after the start finishes the probe at once, before the kernel's next probe.
#[test]
fn a_polled_answer_finishes_the_probe_before_the_next_one_leaves() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    assert!(
        m.due_for_query(SECOND + SECOND / 2).is_empty(),
        "polled at the start"
    );
    let polled = m.due_for_query(2 * SECOND);
    assert_eq!(polled.iter().map(|c| c.cookie).collect::<Vec<_>>(), [1]);
    assert!(
        m.due_for_query(2 * SECOND + SECOND / 2).is_empty(),
        "once a second"
    );
    // The last ACK 61 s ago: before the start (the silence that made it a candidate).
    let before = Polled {
        last_ack_recv: Duration::from_secs(61),
        last_data_sent: Duration::from_secs(90),
    };
    m.polled(1, before, 2 * SECOND);
    assert!(m.due(2 * SECOND, false).is_empty(), "no answer yet");
    // 0.3 s ago, 0.7 s after the start: answered.
    let answer = Polled {
        last_ack_recv: Duration::from_millis(300),
        ..before
    };
    m.polled(1, answer, 2 * SECOND);
    assert_eq!(m.due(2 * SECOND, false).len(), 1, "finished at once");
    assert!(
        m.due_for_query(10 * SECOND).is_empty(),
        "no query once answered"
    );
    let conclusion = m.finished(1, &finish_outcome(16_000 + 175, 0), 2 * SECOND);
    assert_eq!(conclusion, Conclusion::Answered);
    assert_eq!(m.results[&1].rtt, Some(Duration::from_millis(700)));

    // A quarter of a short keepidle: 2 s → every 0.5 s.
    assert_eq!(poll_every(2), Duration::from_millis(500));
    assert_eq!(poll_every(600), Duration::from_secs(1));
}

/// An ACK read a whole keepidle or more after the first probe left may answer a later probe
/// (the kernel sends the next one keepidle after an answer); one after data the application
/// sent may answer that data. Neither is the first probe's round trip: the peer is alive, the
/// round trip unknown.
#[test]
fn no_round_trip_from_a_later_probes_answer_or_from_data() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    // keepidle 60 s = 15000 jiffies after the departure at 16000, and 1 jiffy more.
    let late = m.finished(1, &finish_outcome(16_000 + 15_001, 0), 70 * SECOND);
    assert_eq!(late, Conclusion::Answered);
    assert!(m.results[&1].answered);
    assert_eq!(m.results[&1].rtt, None);
    start(&mut m, 2, SECOND);
    let sent = Polled {
        last_ack_recv: Duration::from_millis(100),
        last_data_sent: Duration::from_millis(200),
    };
    m.polled(2, sent, 2 * SECOND);
    m.finished(2, &finish_outcome(16_000 + 200, 0), 2 * SECOND);
    assert!(m.results[&2].answered);
    assert_eq!(m.results[&2].rtt, None, "data went out after the start");
}

#[test]
fn the_peers_own_segment_is_no_answer_to_our_probe() {
    // The peer's keepalive arrives (the scans hear it; `rcv_tstamp` stays: it is out of window)
    // after two of our probes went unanswered: one way, neither alive nor dead.
    let mut m = machine();
    start(&mut m, 1, SECOND);
    m.heard(1, Duration::from_millis(100), 4 * SECOND);
    assert_eq!(
        m.due(4 * SECOND, false).len(),
        1,
        "the round ends when heard"
    );
    let conclusion = m.finished(1, &finish_outcome(1000, 2), 4 * SECOND);
    assert_eq!(conclusion, Conclusion::OneWay);
    let r = m.results[&1];
    assert!(!r.answered && !r.dead && r.one_way && r.rtt.is_none());
    // Heard right after our first probe went out: too early to tell.
    start(&mut m, 2, SECOND);
    m.heard(2, Duration::from_millis(100), SECOND + SECOND / 2);
    let conclusion = m.finished(2, &finish_outcome(1000, 1), SECOND + SECOND / 2);
    assert_eq!(conclusion, Conclusion::Inconclusive);
    assert!(!m.results[&2].one_way && !m.results[&2].answered);
}

#[test]
fn unanswered_probes_are_dead_after_count_intervals() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    // 3 × 2 s + 1 s.
    assert_eq!(m.deadline(), Duration::from_secs(7));
    assert!(m.due(SECOND + 6 * SECOND, false).is_empty());
    assert_eq!(m.due(SECOND + 7 * SECOND, false).len(), 1);
    let conclusion = m.finished(1, &finish_outcome(1000, 3), 8 * SECOND);
    assert_eq!(conclusion, Conclusion::Dead);
    let r = m.results[&1];
    assert!(!r.answered && r.dead && r.rtt.is_none());
    assert_eq!(r.unanswered, 3);
    // A dead connection is not probed again.
    m.offer(candidate(1));
    m.end_scan();
    assert!(m.pending.is_empty());
}

#[test]
fn fewer_probes_than_count_are_inconclusive_and_a_gone_socket_is_forgotten() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    assert_eq!(
        m.finished(1, &finish_outcome(1000, 1), 9 * SECOND),
        Conclusion::Inconclusive
    );
    assert!(!m.results[&1].dead);
    start(&mut m, 2, SECOND);
    let gone = SockoptRequest {
        outcome: OUTCOME_NOT_SEEN,
        ..SockoptRequest::default()
    };
    assert_eq!(m.finished(2, &gone, 9 * SECOND), Conclusion::Gone);
    assert!(!m.results.contains_key(&2));
}

#[test]
fn refused_starts_do_not_run_and_stop_finishes_everything() {
    let mut m = machine();
    let refused = SockoptRequest {
        applied: SET_KEEPALIVE,
        error: -22,
        ..started_outcome(0, 0)
    };
    assert!(!m.started(candidate(1), &refused, SECOND, SystemTime::UNIX_EPOCH));
    assert!(m.running.is_empty());
    start(&mut m, 2, SECOND);
    start(&mut m, 3, SECOND);
    assert_eq!(m.due(SECOND, true).len(), 2, "at stop: every running probe");
}

#[test]
fn results_live_while_the_scans_see_their_connection() {
    let mut m = machine();
    start(&mut m, 1, SECOND);
    m.finished(1, &finish_outcome(1000, 3), 9 * SECOND);
    m.saw(1);
    m.end_scan();
    assert!(m.results.contains_key(&1));
    m.end_scan();
    assert!(!m.results.contains_key(&1), "closed: forgotten");
}

#[test]
fn the_round_trip_starts_when_the_keepalive_timer_sends_the_probe() {
    // HZ=250, the probe's keepidle 2 s = 500 jiffies.
    let start = |lrcvtime: u32, rcv_tstamp: u32| SockoptRequest {
        want: SockoptValues {
            keepidle_s: 2,
            ..APP
        },
        lrcvtime,
        rcv_tstamp,
        ..started_outcome(rcv_tstamp, 10_000)
    };
    // Idle 1 s (the last ACK; the last data earlier): the timer fires 1 s after the start.
    assert_eq!(probe_departure(&start(9_000, 9_750), 250), 10_250);
    // Data 0.4 s ago, the last ACK earlier: counted from the data.
    assert_eq!(probe_departure(&start(9_900, 9_000), 250), 10_400);
    // Idle for longer than keepidle already: the probe leaves at the start.
    assert_eq!(probe_departure(&start(1_000, 2_000), 250), 10_000);
    // Across the 32-bit wrap of jiffies.
    let wrapped = SockoptRequest {
        now_jiffies: 100,
        ..start(u32::MAX - 149, u32::MAX - 149)
    };
    assert_eq!(probe_departure(&wrapped, 250), 100 + 250);
}
