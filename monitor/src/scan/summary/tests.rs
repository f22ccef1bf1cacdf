#![expect(
    clippy::float_cmp,
    reason = "ages and sums built from whole seconds are exact in f64"
)]

use std::time::Duration;

use monitor_common::tcp_state::{CLOSE_WAIT, ESTABLISHED, LISTEN, NEW_SYN_RECV, TIME_WAIT};

use super::*;
use crate::model::Keepalive;

fn conn(cookie: u64, state: u8, port: u16) -> Connection {
    let local = format!("10.0.0.1:{port}").parse().unwrap();
    Connection::new(cookie, state, local, "10.0.0.2:1".parse().unwrap())
}

fn cw(comm: &str, port: u16, age: u64) -> Connection {
    let mut c = conn(1, CLOSE_WAIT, port);
    c.comm = Some(comm.into());
    c.state_age = Some(Duration::from_secs(age));
    c
}

fn listener(port: u16) -> Connection {
    let mut c = cw("server", port, 0);
    c.state = LISTEN;
    c
}

fn top_n(n: usize) -> Grouping {
    Grouping {
        top_n: n,
        ..Grouping::default()
    }
}

#[test]
fn counts_states_idle_histogram_suspects_and_keepalive_off() {
    let idle = |state, ms: Option<u64>| {
        let mut c = conn(1, state, 80);
        c.idle = ms.map(Duration::from_millis);
        c
    };
    let mut suspect = idle(ESTABLISHED, Some(45_000));
    suspect.suspect = vec![Reason::IdleNoKeepalive, Reason::PeerUnresponsive];
    suspect.keepalive = Some(Keepalive {
        enabled: false,
        idle: None,
        interval: None,
        count: None,
    });
    let snapshot = Snapshot::from_connections(
        [
            idle(ESTABLISHED, Some(200)),
            suspect,
            idle(ESTABLISHED, None),
            idle(NEW_SYN_RECV, None),
            idle(TIME_WAIT, Some(1)),
        ],
        Grouping::default(),
    );
    let s = &snapshot.summary;
    assert_eq!(snapshot.tracked_sockets, 5);
    assert_eq!(s.states[&ESTABLISHED].count, 3);
    assert_eq!(
        s.states[&tcp_state::SYN_RECV].count,
        1,
        "request sockets are syn_recv"
    );
    assert!(!s.states.contains_key(&TIME_WAIT), "not reported");
    let h = &s.states[&ESTABLISHED].idle;
    assert_eq!((h.count, h.sum), (2, 45.2));
    assert_eq!(h.per_bucket[1], 1, "0.2 s in le=0.5");
    assert_eq!(h.per_bucket[6], 1, "45 s in le=60");
    assert_eq!(s.suspects[&Reason::IdleNoKeepalive], 1);
    assert_eq!(
        s.suspects[&Reason::CloseWaitStuck],
        0,
        "every reason present"
    );
    assert_eq!(s.keepalive_off["established"], 1);
    assert_eq!(s.keepalive_off["close_wait"], 0, "every state present");
    assert_eq!(snapshot.suspects.len(), 1, "only suspects are kept");
}

#[test]
fn empty_summary_has_every_series() {
    let s = Summary::default();
    assert_eq!(s.states.len(), tcp_state::REPORTED.len());
    assert_eq!(s.suspects.len(), Reason::ALL.len());
    assert_eq!(s.keepalive_off.len(), tcp_state::REPORTED.len() - 1);
    assert_eq!(
        Snapshot::from_connections([], Grouping::default()).summary,
        s
    );
}

#[test]
fn close_wait_top_n_folds_the_rest_into_other() {
    let mut connections = vec![
        cw("redis", 6379, 10),
        cw("redis", 6379, 50),
        cw("redis", 6380, 5),
        cw("nginx", 80, 7),
        cw("java", 8080, 99),
    ];
    connections.extend([6379, 6380, 80, 8080].map(listener));
    let top = Snapshot::from_connections(connections, top_n(2))
        .summary
        .close_wait;
    assert_eq!(top.by_port[&("redis".into(), "6379".into())], 2);
    assert_eq!(top.by_port[&("redis".into(), "6380".into())], 1);
    // java and nginx tie at one socket each; names break the tie, so nginx is cut.
    assert_eq!(top.by_port[&("java".into(), "8080".into())], 1);
    assert_eq!(top.by_port[&(OTHER.into(), OTHER.into())], 1);
    assert_eq!(top.by_port.len(), 4);
    assert_eq!(top.oldest["redis"], 50.0);
    assert_eq!(top.oldest[OTHER], 7.0);
    assert_eq!((top.folded_owners, top.folded_ports), (1, 0));
}

/// The case: one process with `CLOSE_WAIT` sockets on 3,000 service ports makes
/// `top_ports` + 2 series (its largest ports, "other", outbound), not 3,000.
#[test]
fn close_wait_ports_past_top_ports_fold_into_other() {
    let mut connections: Vec<Connection> = (0..3000).map(|i| cw("leaky", 20_000 + i, 1)).collect();
    connections.extend([cw("leaky", 20_000, 5), cw("leaky", 45_000, 2)]);
    connections.extend((0..3000).map(|i| listener(20_000 + i)));
    let mut grouping = top_n(5);
    grouping.top_ports = 10;
    let top = Snapshot::from_connections(connections, grouping)
        .summary
        .close_wait;
    let leaky: Vec<_> = top
        .by_port
        .iter()
        .filter(|((o, _), _)| o == "leaky")
        .collect();
    assert_eq!(leaky.len(), 12, "10 ports, other, outbound: {leaky:?}");
    assert_eq!(top.by_port[&("leaky".into(), "20000".into())], 2);
    assert_eq!(
        top.by_port[&("leaky".into(), "20009".into())],
        1,
        "ties: lowest ports"
    );
    assert_eq!(top.by_port[&("leaky".into(), OTHER.into())], 2990);
    assert_eq!(top.by_port[&("leaky".into(), "outbound".into())], 1);
    assert_eq!((top.folded_owners, top.folded_ports), (0, 2990));
    assert_eq!(top.oldest["leaky"], 5.0);
}

#[test]
fn outbound_connections_share_one_port_label() {
    // A client leaking CLOSE_WAIT sockets on ephemeral ports: one series, not one per socket.
    let connections = (40000..40100).map(|port| cw("client", port, 1));
    let top = Snapshot::from_connections(connections, Grouping::default())
        .summary
        .close_wait;
    assert_eq!(top.by_port.len(), 1);
    assert_eq!(top.by_port[&("client".into(), "outbound".into())], 100);
}

#[test]
fn ports_resolve_after_the_pass_per_namespace() {
    // The listener comes after its accepted sockets in table order, and a socket on the same
    // port in another namespace is outbound.
    let mut other_ns = cw("app", 6379, 3);
    other_ns.netns = Some(2);
    let mut listening = listener(6379);
    listening.netns = Some(1);
    let mut accepted = cw("app", 6379, 4);
    accepted.netns = Some(1);
    let snapshot = Snapshot::from_connections([accepted, other_ns, listening], top_n(5));
    let top = &snapshot.summary.close_wait;
    assert_eq!(top.by_port[&("app".into(), "6379".into())], 1);
    assert_eq!(top.by_port[&("app".into(), "outbound".into())], 1);
    assert_eq!(top.oldest["app"], 4.0);
    assert_eq!(snapshot.service_ports.resolve(Some(1), 6379), Some(6379));
    assert_eq!(snapshot.service_ports.resolve(Some(2), 6379), None);
}

#[test]
fn owners_by_cgroup_and_unknown_merge_by_label() {
    let mut in_container = cw("redis", 1, 1);
    in_container.cgroup = Some("/pod/a".into());
    let mut same_container = cw("sidecar", 2, 2);
    same_container.cgroup = Some("/pod/a".into());
    let no_cgroup = cw("redis", 3, 3);
    let mut named_unknown = cw("unknown", 4, 4);
    named_unknown.cgroup = None;
    let by_cgroup = Grouping {
        top_n: 5,
        group_by: crate::model::GroupBy::Cgroup,
        ..Grouping::default()
    };
    let top = Snapshot::from_connections(
        [in_container, same_container, no_cgroup, named_unknown],
        by_cgroup,
    )
    .summary
    .close_wait;
    assert_eq!(top.by_port[&("/pod/a".into(), "outbound".into())], 2);
    assert_eq!(top.by_port[&("unknown".into(), "outbound".into())], 2);
    assert_eq!(top.oldest["unknown"], 4.0);

    let mut no_comm = cw("x", 1, 9);
    no_comm.comm = None;
    let by_process = Snapshot::from_connections([no_comm, cw("unknown", 2, 1)], top_n(5));
    let top = by_process.summary.close_wait;
    assert_eq!(top.by_port[&("unknown".into(), "outbound".into())], 2);
    assert_eq!(top.oldest["unknown"], 9.0);
}

#[test]
fn watched_cookies_report_whether_they_are_still_open() {
    let mut builder = SnapshotBuilder::new(
        Grouping::default(),
        Cookies::from_iter([1, 2]),
        Arc::default(),
    );
    builder.add(&conn(1, ESTABLISHED, 80));
    builder.add(&conn(3, ESTABLISHED, 80));
    let snapshot = builder.finish();
    assert_eq!(snapshot.watched_open, Cookies::from_iter([1]));
}

fn suspect(comm: &str, port: u16, reasons: &[Reason]) -> Connection {
    let mut c = conn(1, ESTABLISHED, port);
    c.comm = Some(comm.into());
    c.suspect = reasons.to_vec();
    c
}

/// Suspects by reason and owner are cut as `CLOSE_WAIT` is, per reason: the top N owners (the
/// rest one `owner="other"` series) and each owner's top ports (the rest `local_port="other"`).
#[test]
fn suspects_by_owner_keep_the_top_n_owners_and_ports_per_reason() {
    let unresponsive = [Reason::PeerUnresponsive];
    let mut connections = vec![
        suspect("api", 7000, &unresponsive),
        suspect(
            "api",
            7000,
            &[Reason::PeerUnresponsive, Reason::IdleNoKeepalive],
        ),
        suspect("api", 7001, &unresponsive),
        suspect("api", 7002, &unresponsive),
        suspect("worker", 41_000, &unresponsive),
        suspect("worker", 41_001, &unresponsive),
        suspect("cron", 41_002, &unresponsive),
        suspect("healthy", 7000, &[]),
    ];
    connections.extend([7000, 7001, 7002].map(listener));
    let grouping = Grouping {
        top_n: 2,
        top_ports: 2,
        ..Grouping::default()
    };
    let by_owner = Snapshot::from_connections(connections, grouping)
        .summary
        .suspects_by_owner;
    assert_eq!(
        by_owner.len(),
        2,
        "only reasons with suspects: {by_owner:?}"
    );
    let top = &by_owner[&Reason::PeerUnresponsive];
    let series: Vec<_> = top
        .by_port
        .iter()
        .map(|((o, p), n)| (o.as_str(), p.as_str(), *n))
        .collect();
    assert_eq!(
        series,
        [
            ("api", "7000", 2),
            ("api", "7001", 1),
            ("api", OTHER, 1),
            (OTHER, OTHER, 1),
            ("worker", "outbound", 2),
        ]
    );
    assert_eq!((top.folded_owners, top.folded_ports), (1, 1));
    let idle = &by_owner[&Reason::IdleNoKeepalive];
    assert_eq!(idle.by_port[&("api".into(), "7000".into())], 1);
    assert_eq!(idle.by_port.len(), 1);
}

#[test]
fn idle_beyond_counts_each_socket_by_its_own_idle_after() {
    use crate::verdict::{Matcher, Override};
    let idle_for = |cookie, state, port, mins: u64| {
        let mut c = conn(cookie, state, port);
        c.idle = Some(Duration::from_mins(mins));
        c
    };
    // The defaults (15 min) everywhere but port 6379, where idle_after is 5 min.
    let policy = Policy {
        overrides: vec![Override {
            matcher: Matcher {
                local_port: Some(6379),
                ..Matcher::default()
            },
            close_wait_after: None,
            fin_wait2_after: None,
            unresponsive_after: None,
            idle_after: Some(Duration::from_mins(5)),
            probe: None,
        }],
        ..Policy::default()
    };
    let mut builder =
        SnapshotBuilder::new(Grouping::default(), Cookies::default(), Arc::new(policy));
    for c in [
        idle_for(1, ESTABLISHED, 80, 20),
        idle_for(2, ESTABLISHED, 80, 10),
        idle_for(3, ESTABLISHED, 6379, 10),
        idle_for(4, CLOSE_WAIT, 80, 16),
        idle_for(5, LISTEN, 80, 60),
        conn(6, ESTABLISHED, 80),
    ] {
        builder.add(&c);
    }
    let s = builder.finish().summary;
    assert_eq!(
        s.idle_beyond["established"], 2,
        "20 min > 15, 10 min > 5 on 6379"
    );
    assert_eq!(s.idle_beyond["close_wait"], 1);
    assert_eq!(s.idle_beyond["fin_wait2"], 0, "every state present");
    assert!(
        !s.idle_beyond.contains_key("listen"),
        "a listener is never idle"
    );
}

/// Every configured path has a series from the start; a connection counts for the path it
/// crosses only while it carries the verdict.
#[test]
fn path_timeout_at_risk_counts_per_configured_path() {
    use crate::verdict::{Cidr, PathTimeout};
    let path = |name: &str, cidr| PathTimeout {
        name: name.into(),
        remote: Cidr::parse(cidr).expect("range"),
        local_port: None,
        remote_port: None,
        idle_timeout: Duration::from_secs(20),
        report_after: Duration::from_secs(16),
    };
    let policy = Policy {
        paths: vec![path("router", "10.0.0.0/24"), path("nlb", "192.0.2.0/24")],
        ..Policy::default()
    };
    let mut builder =
        SnapshotBuilder::new(Grouping::default(), Cookies::default(), Arc::new(policy));
    let mut at_risk = conn(1, ESTABLISHED, 40000);
    at_risk.suspect = vec![Reason::IdleBeyondPathTimeout];
    builder.add(&at_risk);
    builder.add(&conn(2, ESTABLISHED, 40001));
    // Outside both ranges, found by this host's conntrack.
    let mut tracked = conn(3, ESTABLISHED, 40002);
    tracked.remote = "198.51.100.1:443".parse().expect("address");
    tracked.suspect = vec![Reason::IdleBeyondPathTimeout];
    tracked.conntrack = Some(crate::model::ConntrackDrop {
        timeout: Duration::from_secs(20),
        drops_at_idle: Duration::from_secs(20),
    });
    builder.add(&tracked);
    let summary = builder.finish().summary;
    assert_eq!(
        summary.path_at_risk,
        BTreeMap::from([
            ("conntrack".to_owned(), 1),
            ("nlb".to_owned(), 0),
            ("router".to_owned(), 1)
        ])
    );
}
