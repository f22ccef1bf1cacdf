use std::time::Duration;

use monitor_common::tcp_state::{self, CLOSE_WAIT, ESTABLISHED};

use super::*;
use crate::model::Grouping;

#[expect(
    clippy::unnecessary_wraps,
    reason = "compared with the Option<Duration> ages the grouping returns"
)]
fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

/// A connection of `comm` (pid `pid`) on local port `port`, suspect for `reasons`.
fn conn(cookie: u64, comm: Option<&str>, pid: u32, port: u16, reasons: &[Reason]) -> Connection {
    let mut c = Connection::new(
        cookie,
        CLOSE_WAIT,
        format!("10.0.0.1:{port}").parse().unwrap(),
        format!("10.0.0.2:{}", 40000 + cookie).parse().unwrap(),
    );
    c.comm = comm.map(Into::into);
    c.pid = Some(pid);
    c.state_age = secs(cookie * 10);
    c.idle = secs(cookie);
    c.suspect = reasons.to_vec();
    c
}

/// The connections, plus listeners on the ports the tests use as service ports.
fn snapshot(mut connections: Vec<Connection>) -> Snapshot {
    for port in [443, 6379, 6380] {
        let mut listener = conn(900 + u64::from(port), Some("server"), 1, port, &[]);
        listener.state = tcp_state::LISTEN;
        connections.push(listener);
    }
    Snapshot::from_connections(connections, Grouping::default())
}

/// With `group_by = "cgroup"` an alert is one container's (or unit's) problem: two process
/// names in one cgroup make one group, one name in two cgroups makes two, and a connection whose
/// cgroup is unknown groups as `unknown` (as in the `CLOSE_WAIT` metrics).
#[test]
fn groups_by_cgroup_when_configured() {
    let in_cgroup = |cookie, comm, cgroup: Option<&str>| {
        let mut c = conn(cookie, Some(comm), 10, 6379, &[Reason::CloseWaitStuck]);
        c.cgroup = cgroup.map(Into::into);
        c
    };
    let connections = vec![
        in_cgroup(1, "redis-server", Some("/system.slice/redis.service")),
        in_cgroup(2, "redis-check", Some("/system.slice/redis.service")),
        in_cgroup(3, "redis-server", Some("/kubepods/pod1")),
        in_cgroup(4, "redis-server", None),
    ];
    let by_cgroup = Grouping {
        group_by: crate::model::GroupBy::Cgroup,
        ..Grouping::default()
    };
    let mut snapshot = snapshot(connections);
    snapshot.grouping = by_cgroup;
    let owners: Vec<_> = group(&snapshot)
        .iter()
        .map(|g| (g.owner.clone(), g.count))
        .collect();
    assert_eq!(
        owners,
        [
            ("/system.slice/redis.service".to_owned(), 2),
            ("/kubepods/pod1".to_owned(), 1),
            ("unknown".to_owned(), 1),
        ]
    );
}

#[test]
fn groups_by_reason_owner_and_port_largest_first() {
    use LocalPort::Service;
    use Reason::*;
    let groups = group(&snapshot(vec![
        conn(1, Some("redis-server"), 10, 6379, &[CloseWaitStuck]),
        conn(2, Some("nginx"), 20, 443, &[IdleNoKeepalive]),
        conn(3, Some("redis-server"), 11, 6379, &[CloseWaitStuck]),
        conn(4, Some("redis-server"), 10, 6380, &[CloseWaitStuck]),
        conn(5, None, 30, 6379, &[CloseWaitStuck, IdleNoKeepalive]),
        conn(6, Some("nginx"), 20, 443, &[]),
    ]));
    let keys: Vec<_> = groups
        .iter()
        .map(|g| (g.reason, g.owner.as_str(), g.local_port, g.count))
        .collect();
    assert_eq!(
        keys,
        [
            (CloseWaitStuck, "redis-server", Service(6379), 2),
            (CloseWaitStuck, "redis-server", Service(6380), 1),
            (CloseWaitStuck, "unknown", Service(6379), 1),
            (IdleNoKeepalive, "nginx", Service(443), 1),
            (IdleNoKeepalive, "unknown", Service(6379), 1),
        ]
    );
    let redis = &groups[0];
    assert_eq!(redis.pids, [10, 11]);
    assert_eq!(redis.oldest_seconds, Some(30.0), "state age of cookie 3");
    assert_eq!(redis.remedy, CloseWaitStuck.remedy());
    // idle_no_keepalive goes by idle time, not by time in state.
    assert_eq!(groups[4].oldest_seconds, Some(5.0));
}

#[test]
fn ages_follow_the_reason_and_fall_back_to_idle() {
    let mut c = conn(1, None, 1, 80, &[]);
    c.state_age = secs(100);
    c.since_peer = secs(50);
    c.idle = secs(7);
    assert_eq!(age(&c, Reason::CloseWaitStuck), secs(100));
    assert_eq!(age(&c, Reason::FinWait2Stuck), secs(100));
    assert_eq!(age(&c, Reason::PeerUnresponsive), secs(50));
    assert_eq!(age(&c, Reason::KeepaliveUnanswered), secs(50));
    assert_eq!(age(&c, Reason::IdleNoKeepalive), secs(7));
    c.state_age = None;
    c.state_age_at_least = secs(60);
    assert_eq!(
        age(&c, Reason::CloseWaitStuck),
        secs(60),
        "seeded: the lower bound"
    );
    c.state_age_at_least = None;
    c.since_peer = None;
    assert_eq!(age(&c, Reason::CloseWaitStuck), secs(7));
    assert_eq!(age(&c, Reason::PeerUnresponsive), secs(7));
    c.idle = None;
    assert_eq!(age(&c, Reason::CloseWaitStuck), None);
}

#[test]
fn large_groups_keep_three_oldest_samples_and_ten_pids() {
    let mut conns: Vec<Connection> = (1..=50)
        .map(|i| {
            conn(
                i,
                Some("leaky"),
                1000 - u32::try_from(i).unwrap(),
                8080,
                &[Reason::CloseWaitStuck],
            )
        })
        .collect();
    // An unknown age never outranks a known one.
    conns[0].state_age = None;
    conns[0].idle = None;
    let groups = group(&snapshot(conns));
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g.count, 50);
    assert_eq!(g.oldest_seconds, Some(500.0));
    let cookies: Vec<u64> = g.samples.iter().map(|s| s.cookie).collect();
    assert_eq!(cookies, [50, 49, 48]);
    assert_eq!(g.pids, (950..960).collect::<Vec<u32>>());
}

#[test]
fn unknown_ages_are_null_and_ties_are_stable() {
    let mut a = conn(2, Some("x"), 1, 80, &[Reason::PeerUnresponsive]);
    let mut b = conn(1, Some("x"), 1, 80, &[Reason::PeerUnresponsive]);
    for c in [&mut a, &mut b] {
        c.idle = None;
        c.since_peer = None;
    }
    let g = &group(&snapshot(vec![a, b]))[0];
    assert_eq!(g.oldest_seconds, None);
    assert_eq!(g.pids, [1]);
    let cookies: Vec<u64> = g.samples.iter().map(|s| s.cookie).collect();
    assert_eq!(cookies, [1, 2]);
}

#[test]
fn no_suspects_no_groups() {
    let mut c = conn(1, Some("x"), 1, 80, &[]);
    c.state = ESTABLISHED;
    assert!(group(&snapshot(vec![c])).is_empty());
    assert!(group(&Snapshot::default()).is_empty());
}

#[test]
fn json_round_trips_with_reason_names() {
    let view = AlertsView {
        alerts: group(&snapshot(vec![conn(
            1,
            Some("redis-server"),
            10,
            6379,
            &[Reason::FinWait2Stuck],
        )])),
        fd_exhaustion: Vec::new(),
    };
    let json = serde_json::to_value(&view).unwrap();
    let first = &json["alerts"][0];
    assert_eq!(first["reason"], "fin_wait2_stuck");
    assert_eq!(first["owner"], "redis-server");
    assert_eq!(first["local_port"], 6379);
    assert_eq!(first["folded_groups"], 0);
    assert_eq!(first["samples"][0]["local"], "10.0.0.1:6379");
    let back: AlertsView = serde_json::from_value(json).unwrap();
    assert_eq!(back, view);
    let bad = r#"{"reason":"gremlins","owner":"x","local_port":1,"count":1,
        "oldest_seconds":null,"pids":[],"samples":[]}"#;
    let err = serde_json::from_str::<AlertGroup>(bad).unwrap_err();
    assert!(err.to_string().contains("gremlins"), "{err}");
}

#[test]
fn outbound_leaks_are_one_group_whatever_their_ephemeral_ports() {
    let leaks = (0..50)
        .map(|i| {
            conn(
                i + 1,
                Some("http-client"),
                7,
                41000 + u16::try_from(i).unwrap(),
                &[Reason::CloseWaitStuck],
            )
        })
        .collect();
    let groups = group(&snapshot(leaks));
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].local_port, groups[0].count),
        (LocalPort::Outbound, 50)
    );
}

/// One process leaking on 3,000 service ports (the issue's case): its `top_ports` largest ports
/// are groups of their own, the rest one `local_port: "other"` group that says how many it folds;
/// outbound stays its own group.
#[test]
fn an_owners_ports_past_top_ports_fold_into_other() {
    let mut connections = Vec::new();
    let mut listeners = Vec::new();
    for i in 0..3000_u16 {
        let port = 20_000 + i;
        // Port 20000 has 3 sockets, 20001 has 2, the rest 1 each.
        for _ in 0..(3_u16.saturating_sub(i).max(1)) {
            connections.push(conn(1, Some("leaky"), 7, port, &[Reason::CloseWaitStuck]));
        }
        let mut listener = conn(1, Some("leaky"), 7, port, &[]);
        listener.state = tcp_state::LISTEN;
        listeners.push(listener);
    }
    connections.push(conn(1, Some("leaky"), 7, 45_000, &[Reason::CloseWaitStuck]));
    connections.extend(listeners);
    let snapshot = Snapshot::from_connections(connections, Grouping::default());
    let groups = group(&snapshot);
    assert_eq!(groups.len(), 12, "10 ports, other, outbound");
    let ports: Vec<_> = groups
        .iter()
        .map(|g| (g.local_port, g.count))
        .take(3)
        .collect();
    assert_eq!(
        ports,
        [
            (LocalPort::Other, 2990),
            (LocalPort::Service(20_000), 3),
            (LocalPort::Service(20_001), 2)
        ]
    );
    let other = &groups[0];
    assert_eq!(
        (other.owner.as_str(), other.count, other.folded_groups),
        ("leaky", 2990, 2990)
    );
    assert_eq!(other.samples.len(), 3);
    assert_eq!(other.pids, [7]);
    assert!(groups.iter().any(|g| g.local_port == LocalPort::Outbound));
    let total: usize = groups.iter().map(|g| g.count).sum();
    assert_eq!(
        total,
        3000 + 2 + 1 + 1,
        "every connection still counted once"
    );
}

/// Past `max_alert_groups`, the smallest groups fold into one `owner: "other"` group per reason,
/// which counts against the cap; the largest stay as they are.
#[test]
fn groups_past_the_cap_fold_into_one_other_group_per_reason() {
    let mut connections = Vec::new();
    let mut cookie = 0;
    let mut add = |owner: &str, n: usize, reason| {
        for _ in 0..n {
            cookie += 1;
            connections.push(conn(cookie, Some(owner), 1, 6379, &[reason]));
        }
    };
    for i in 0..20 {
        add(&format!("app{i:02}"), 30 - i, Reason::CloseWaitStuck);
    }
    for i in 0..5 {
        add(&format!("idle{i}"), 1, Reason::IdleNoKeepalive);
    }
    let mut snapshot = snapshot(connections);
    snapshot.grouping.max_alert_groups = 10;
    let groups = group(&snapshot);
    assert_eq!(groups.len(), 10);
    // 8 kept + one "other" per reason = 10.
    let kept: Vec<_> = groups
        .iter()
        .filter(|g| g.local_port != LocalPort::Other)
        .map(|g| g.owner.as_str())
        .collect();
    assert_eq!(
        kept,
        [
            "app00", "app01", "app02", "app03", "app04", "app05", "app06", "app07"
        ]
    );
    let folded: Vec<_> = groups
        .iter()
        .filter(|g| g.local_port == LocalPort::Other)
        .map(|g| (g.reason, g.owner.as_str(), g.count, g.folded_groups))
        .collect();
    // app08..app19: 22 + 21 + ... + 11 = 198 connections in 12 groups.
    assert_eq!(
        folded,
        [
            (Reason::CloseWaitStuck, "other", 198, 12),
            (Reason::IdleNoKeepalive, "other", 5, 5),
        ]
    );
    snapshot.grouping.max_alert_groups = 25;
    assert_eq!(group(&snapshot).len(), 25, "under the cap: nothing folded");
}

/// A remediation is counted in the group of the connection and reason it acted on, only.
#[test]
fn remediations_count_in_their_connections_group() {
    use crate::model::{RemediationAction, RemediationResult};
    let mut snap = snapshot(vec![
        conn(1, Some("app"), 10, 6379, &[Reason::PeerUnresponsive]),
        conn(2, Some("app"), 10, 6379, &[Reason::PeerUnresponsive]),
        conn(3, Some("app"), 10, 6379, &[Reason::PeerUnresponsive]),
        conn(4, Some("db"), 11, 443, &[Reason::PeerUnresponsive]),
    ]);
    let action = |cookie, result| RemediationAction {
        cookie,
        reason: Reason::PeerUnresponsive,
        policy: 1,
        result,
    };
    snap.remediations = vec![
        action(1, RemediationResult::Destroyed),
        action(2, RemediationResult::RateLimited),
        action(3, RemediationResult::RateLimited),
    ];
    let groups = group(&snap);
    let app = groups.iter().find(|g| g.owner == "app").expect("app group");
    let expected: std::collections::BTreeMap<String, u64> =
        [("destroyed".to_owned(), 1), ("rate_limited".to_owned(), 2)].into();
    assert_eq!(app.remediations, expected);
    let db = groups.iter().find(|g| g.owner == "db").expect("db group");
    assert!(db.remediations.is_empty());
}
