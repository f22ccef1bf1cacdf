use monitor_common::tcp_state::CLOSE_WAIT;

use super::*;
use crate::alerting::{Alerting, HttpConfig};
use crate::model::Grouping;

fn conn(cookie: u64, reasons: &[Reason]) -> Connection {
    let mut c = Connection::new(
        cookie,
        CLOSE_WAIT,
        "10.0.0.1:6379".parse().unwrap(),
        format!("10.0.0.2:{}", 40000 + cookie).parse().unwrap(),
    );
    c.pid = Some(7);
    c.comm = Some("redis-server".into());
    c.state_age = Some(Duration::from_secs(90));
    c.suspect = reasons.to_vec();
    c
}

fn snapshot(connections: Vec<Connection>) -> Snapshot {
    Snapshot::from_connections(connections, Grouping::default())
}

fn summary(events: &[Event]) -> Vec<(Change, Reason, u64, bool)> {
    events
        .iter()
        .map(|e| (e.change, e.reason, e.conn.cookie, e.closed))
        .collect()
}

use Change::{Cleared, New};
use Reason::{CloseWaitStuck as Cw, IdleNoKeepalive as Idle};

#[test]
fn new_once_then_cleared_once() {
    let mut t = Tracker::new(20);
    let events = t.diff(&snapshot(vec![conn(1, &[Cw]), conn(2, &[])]));
    assert_eq!(summary(&events), [(New, Cw, 1, false)]);
    assert_eq!(events[0].age, Some(Duration::from_secs(90)));
    assert_eq!(events[0].conn.comm.as_deref(), Some("redis-server"));

    // Still suspect: nothing to say.
    assert!(
        t.diff(&snapshot(vec![conn(1, &[Cw]), conn(2, &[])]))
            .is_empty()
    );

    // 1 recovers from one reason and gains another; 2 becomes suspect.
    let events = t.diff(&snapshot(vec![conn(1, &[Idle]), conn(2, &[Cw])]));
    assert_eq!(
        summary(&events),
        [
            (New, Idle, 1, false),
            (New, Cw, 2, false),
            (Cleared, Cw, 1, false)
        ]
    );

    // Both sockets close: cleared, and known to be gone.
    let events = t.diff(&snapshot(vec![]));
    assert_eq!(
        summary(&events),
        [(Cleared, Cw, 2, true), (Cleared, Idle, 1, true)]
    );
    // The remembered identity survives the socket.
    assert_eq!(events[0].conn.remote, "10.0.0.2:40002".parse().unwrap());
    assert!(t.diff(&snapshot(vec![])).is_empty());

    let counts = t.detections();
    assert_eq!(counts[&Cw], 2);
    assert_eq!(counts[&Idle], 1);
    assert_eq!(counts[&Reason::FinWait2Stuck], 0, "every reason present");
}

#[test]
fn observe_counts_per_reason() {
    let mut t = Tracker::new(0);
    let scan = snapshot(vec![conn(1, &[Cw, Idle]), conn(2, &[Cw]), conn(3, &[])]);
    assert_eq!(
        t.observe(&scan),
        Transitions {
            new: vec![(Cw, 2), (Idle, 1)],
            cleared: vec![],
        }
    );
    assert_eq!(t.observe(&scan), Transitions::default());
    assert_eq!(
        t.observe(&snapshot(vec![conn(1, &[Idle])])),
        Transitions {
            new: vec![],
            cleared: vec![(Cw, 2)],
        }
    );
}

#[test]
fn lines_beyond_the_limit_are_summarized_per_reason() {
    let mut t = Tracker::new(20);
    let many: Vec<Connection> = (0..10_000)
        .map(|i| conn(i, if i % 2 == 0 { &[Cw] } else { &[Idle] }))
        .collect();
    let events = t.diff(&snapshot(many));
    let (lines, rest) = plan(&events, 20);
    assert_eq!(lines.len(), 20);
    assert_eq!(rest, [(New, Cw, 4990), (New, Idle, 4990)]);

    let events = t.diff(&snapshot(vec![]));
    let (lines, rest) = plan(&events, 3);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e.reason == Cw));
    assert_eq!(rest, [(Cleared, Cw, 4997), (Cleared, Idle, 5000)]);

    let (lines, rest) = plan(&[], 20);
    assert!(lines.is_empty() && rest.is_empty());
}

#[test]
fn alerting_without_alertmanager_only_tracks() {
    let mut a = Alerting::new(20, None, &HttpConfig::default(), Duration::from_secs(5)).unwrap();
    let t = a.observe(&snapshot(vec![conn(1, &[Cw])]));
    assert_eq!(t.new, [(Cw, 1)]);
    assert_eq!(a.detections()[&Cw], 1);
}
