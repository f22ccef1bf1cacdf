use std::net::{Ipv6Addr, SocketAddr};

use serde_json::json;

use super::*;
use crate::model::{ConnectionView, Holder, Holders};

fn conn(state: u8, idle: Option<Duration>) -> Connection {
    let local = SocketAddr::from((Ipv6Addr::LOCALHOST, 8080));
    Connection {
        netns: Some(4_026_531_840),
        pid: Some(1234),
        comm: Some("nginx".into()),
        state_age: Some(Duration::from_millis(61_250)),
        idle,
        since_send: Some(Duration::from_micros(1_500_900)),
        bytes_sent: 10,
        bytes_received: 20,
        srtt: Some(Duration::from_micros(1_250)),
        retransmits: 3,
        seeded: true,
        suspect: vec![crate::model::Reason::PeerUnresponsive],
        cgroup: Some(
            format!(
                "/system.slice/docker-{}.scope",
                "0123456789abcdef".repeat(4)
            )
            .into(),
        ),
        ..Connection::new(42, state, local, "10.0.0.2:51000".parse().unwrap())
    }
}

#[test]
fn view_serializes_unknown_as_null() {
    let view = ConnectionView::from(&conn(tcp_state::CLOSE_WAIT, None));
    let value = serde_json::to_value(&view).unwrap();
    assert_eq!(
        value,
        json!({
            "cookie": 42, "state": "close_wait", "local": "[::1]:8080",
            "remote": "10.0.0.2:51000", "netns": 4_026_531_840_u32, "pid": 1234, "comm": "nginx",
            "holders": null, "state_age_seconds": 61.25, "idle_seconds": null, "since_send_seconds": 1.5,
            "since_recv_seconds": null, "since_peer_seconds": null, "bytes_sent": 10,
            "bytes_received": 20, "unacked_bytes": null, "srtt_ms": 1.25, "kubernetes": null,
            "send_queue_bytes": null, "recv_queue_bytes": null, "retransmits": 3,
            "seeded": true, "state_age_at_least_seconds": null, "keepalive": null,
            "user_timeout_seconds": null, "orphan": false, "accept_queue": false,
            "cgroup": "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
            "container": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "since_retrans_start_seconds": null, "gives_up_in_seconds": null,
            "suspect": ["peer_unresponsive"], "why": [],
        })
    );
    let back: ConnectionView = serde_json::from_value(value).unwrap();
    assert_eq!(back, view);
}

#[test]
fn holders_are_an_array_by_pid_and_empty_when_no_process_holds_the_socket() {
    let mut c = conn(tcp_state::ESTABLISHED, None);
    let holder = |pid, comm: Option<&str>| Holder {
        pid,
        comm: comm.map(Into::into),
    };
    c.holders = Holders::Many(vec![holder(1234, Some("nginx")), holder(1300, None)]);
    let value = serde_json::to_value(ConnectionView::from(&c)).unwrap();
    assert_eq!(
        value["holders"],
        json!([{"pid": 1234, "comm": "nginx"}, {"pid": 1300, "comm": null}])
    );
    c.holders = Holders::One(holder(1234, Some("nginx")));
    let value = serde_json::to_value(ConnectionView::from(&c)).unwrap();
    assert_eq!(value["holders"], json!([{"pid": 1234, "comm": "nginx"}]));
    c.holders = Holders::Many(Vec::new());
    let value = serde_json::to_value(ConnectionView::from(&c)).unwrap();
    assert_eq!(value["holders"], json!([]));
}

fn params(state: Option<&str>, min_idle: Option<&str>) -> FilterParams {
    FilterParams {
        state: state.map(Into::into),
        min_idle: min_idle.map(Into::into),
        ..FilterParams::default()
    }
}

#[test]
fn filter_parses_state_spellings_and_durations() {
    for spelling in ["close_wait", "close-wait", "CLOSE_WAIT"] {
        let f = ConnectionFilter::from_params(&params(Some(spelling), None)).unwrap();
        assert_eq!(f.state, Some(tcp_state::CLOSE_WAIT));
    }
    let f = ConnectionFilter::from_params(&params(None, Some("1m 30s"))).unwrap();
    assert_eq!(f.min_idle, Some(Duration::from_secs(90)));
    assert_eq!(
        ConnectionFilter::from_params(&params(None, None)).unwrap(),
        ConnectionFilter::default()
    );
}

#[test]
fn bad_parameters_name_the_parameter() {
    let err = ConnectionFilter::from_params(&params(Some("open"), None)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid query parameter state=\"open\""),
        "{err}"
    );
    let err = ConnectionFilter::from_params(&params(None, Some("soon"))).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid query parameter min_idle=\"soon\""),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn filter_matches_state_and_min_idle() {
    let secs = |s| Some(Duration::from_secs(s));
    let by_state = ConnectionFilter {
        state: Some(tcp_state::SYN_RECV),
        ..ConnectionFilter::default()
    };
    assert!(by_state.matches(&conn(tcp_state::NEW_SYN_RECV, None)));
    assert!(!by_state.matches(&conn(tcp_state::ESTABLISHED, None)));

    let idle = ConnectionFilter {
        state: None,
        min_idle: secs(30),
        ..ConnectionFilter::default()
    };
    assert!(idle.matches(&conn(tcp_state::ESTABLISHED, secs(30))));
    assert!(!idle.matches(&conn(tcp_state::ESTABLISHED, secs(29))));
    assert!(
        !idle.matches(&conn(tcp_state::ESTABLISHED, None)),
        "unknown idle excluded"
    );

    let connections = [
        conn(tcp_state::ESTABLISHED, secs(60)),
        conn(tcp_state::LISTEN, None),
    ];
    let mut writer = ViewsWriter::new(idle);
    for c in &connections {
        writer.push(c);
    }
    let views: Vec<ConnectionView> = serde_json::from_slice(&writer.finish()).unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].state, "established");
}

#[test]
fn writer_output_is_a_serialized_vector() {
    let connections = [
        conn(tcp_state::ESTABLISHED, Some(Duration::from_mins(1))),
        conn(tcp_state::CLOSE_WAIT, None),
    ];
    let mut writer = ViewsWriter::new(ConnectionFilter::default());
    for c in &connections {
        writer.push(c);
    }
    let views: Vec<ConnectionView> = connections
        .iter()
        .map(|c| ConnectionView::from(c).explained(verdict::explain(c, &Policy::default())))
        .collect();
    assert_eq!(views[0].why.len(), 1, "{views:?}");
    assert_eq!(writer.finish(), serde_json::to_vec(&views).unwrap());
    let empty = ViewsWriter::new(ConnectionFilter::default()).finish();
    assert_eq!(empty, b"[]");
}

#[test]
fn netns_filter() {
    let filter = ConnectionFilter::from_params(&FilterParams {
        netns: Some("4026531840".into()),
        ..FilterParams::default()
    })
    .unwrap();
    assert!(filter.matches(&conn(tcp_state::ESTABLISHED, None)));
    let other = ConnectionFilter {
        netns: Some(1),
        ..filter
    };
    assert!(!other.matches(&conn(tcp_state::ESTABLISHED, None)));
    let bad = FilterParams {
        netns: Some("host".into()),
        ..FilterParams::default()
    };
    assert!(
        ConnectionFilter::from_params(&bad)
            .unwrap_err()
            .to_string()
            .contains("netns=\"host\"")
    );
}

#[test]
fn filter_by_suspect_pid_and_either_port() {
    let parse = |suspect: Option<&str>, pid: Option<&str>, port: Option<&str>| {
        ConnectionFilter::from_params(&FilterParams {
            suspect: suspect.map(Into::into),
            pid: pid.map(Into::into),
            port: port.map(Into::into),
            ..FilterParams::default()
        })
    };
    let suspect = conn(tcp_state::ESTABLISHED, None);
    let mut healthy = suspect.clone();
    healthy.suspect.clear();
    let only_suspects = parse(Some("true"), None, None).unwrap();
    assert!(only_suspects.matches(&suspect));
    assert!(!only_suspects.matches(&healthy));
    assert!(parse(Some("false"), None, None).unwrap().matches(&healthy));

    let local = parse(None, None, Some("8080")).unwrap();
    let remote = parse(None, None, Some("51000")).unwrap();
    assert!(local.matches(&healthy) && remote.matches(&healthy));
    assert!(!parse(None, None, Some("22")).unwrap().matches(&healthy));

    assert!(parse(None, Some("1234"), None).unwrap().matches(&healthy));
    let by_holder = parse(None, Some("1300"), None).unwrap();
    assert!(!by_holder.matches(&healthy));
    healthy.holders = Holders::Many(vec![
        Holder {
            pid: 1234,
            comm: None,
        },
        Holder {
            pid: 1300,
            comm: None,
        },
    ]);
    assert!(by_holder.matches(&healthy), "a second holder counts");

    for (bad, name) in [
        (parse(Some("yes"), None, None), "suspect"),
        (parse(None, Some("-1"), None), "pid"),
        (parse(None, None, Some("0")), "port"),
        (parse(None, None, Some("70000")), "port"),
    ] {
        let err = bad.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid query parameter {name}=")),
            "{err}"
        );
    }
}
