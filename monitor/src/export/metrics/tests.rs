use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use monitor_common::tcp_state::{CLOSE_WAIT, ESTABLISHED, LISTEN, NEW_SYN_RECV, TIME_WAIT};

use super::*;
use crate::{
    bpf::{HookStatus, KernelCounters},
    model::{Connection, Grouping},
    scan::Snapshot,
};

fn conn(state: u8, idle_ms: Option<u64>) -> Connection {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 80));
    Connection {
        idle: idle_ms.map(Duration::from_millis),
        ..Connection::new(1, state, addr, addr)
    }
}

fn snapshot() -> Snapshot {
    let connections = [
        conn(ESTABLISHED, Some(200)),
        conn(ESTABLISHED, Some(45_000)),
        conn(ESTABLISHED, None),
        conn(CLOSE_WAIT, Some(20_000_000)),
        conn(CLOSE_WAIT, Some(3_000)),
        conn(NEW_SYN_RECV, None),
        conn(LISTEN, None),
        conn(TIME_WAIT, Some(1_000)),
    ];
    Snapshot {
        counters: KernelCounters {
            retransmits: 7,
            resets_sent: 3,
            resets_received: 0,
            table_insert_failures: 2,
            // 12 → 1 and 3 → 1 share the name syn_recv → established; 200 is not a state.
            transitions: vec![
                (NEW_SYN_RECV, ESTABLISHED, 4),
                (3, ESTABLISHED, 1),
                (200, 1, 9),
            ],
            socket_errors: vec![(libc::ETIMEDOUT as u32, 5), (150, 1), (0, 4)],
            recursion_misses: vec![("inet_sock_set_state", 67), ("tcp_probe", 0)],
        },
        tracked_sockets: 8,
        table_capacity: 262_144,
        hooks: vec![
            HookStatus {
                hook: "inet_sock_set_state",
                attached: true,
                error: None,
            },
            HookStatus {
                hook: "tcp_retransmit_skb",
                attached: false,
                error: Some("x".into()),
            },
        ],
        scan_duration: Duration::from_millis(3),
        ..Snapshot::from_connections(connections, Grouping::default())
    }
}

fn rendered() -> String {
    let store = Arc::new(SnapshotStore::new());
    store.publish(snapshot(), BTreeMap::default());
    let metrics = Metrics::new(store, "1.2.3");
    metrics.observe_scan(Duration::from_millis(3));
    metrics.render()
}

#[test]
fn render_contains_expected_lines() {
    let text = rendered();
    let expected = [
        r#"tcp_liveness_connections{state="established"} 3"#,
        r#"tcp_liveness_connections{state="close_wait"} 2"#,
        r#"tcp_liveness_connections{state="syn_recv"} 1"#,
        r#"tcp_liveness_connections{state="listen"} 1"#,
        r#"tcp_liveness_connections{state="fin_wait1"} 0"#,
        r#"tcp_liveness_idle_seconds_bucket{state="established",le="0.5"} 1"#,
        r#"tcp_liveness_idle_seconds_bucket{state="established",le="30"} 1"#,
        r#"tcp_liveness_idle_seconds_bucket{state="established",le="60"} 2"#,
        r#"tcp_liveness_idle_seconds_bucket{state="established",le="+Inf"} 2"#,
        r#"tcp_liveness_idle_seconds_count{state="established"} 2"#,
        r#"tcp_liveness_idle_seconds_sum{state="established"} 45.2"#,
        r#"tcp_liveness_idle_seconds_bucket{state="close_wait",le="5"} 1"#,
        r#"tcp_liveness_idle_seconds_bucket{state="close_wait",le="14400"} 1"#,
        r#"tcp_liveness_idle_seconds_bucket{state="close_wait",le="+Inf"} 2"#,
        r#"tcp_liveness_idle_seconds_count{state="syn_recv"} 0"#,
        "tcp_liveness_tracked_sockets 8",
        "tcp_liveness_table_capacity 262144",
        "tcp_liveness_table_insert_failures_total 2",
        r#"tcp_liveness_hook_attached{hook="inet_sock_set_state"} 1"#,
        r#"tcp_liveness_hook_attached{hook="tcp_retransmit_skb"} 0"#,
        r#"tcp_liveness_state_transitions_total{from="syn_recv",to="established"} 5"#,
        "tcp_liveness_retransmits_total 7",
        r#"tcp_liveness_resets_total{direction="sent"} 3"#,
        r#"tcp_liveness_resets_total{direction="received"} 0"#,
        r#"tcp_liveness_socket_errors_total{error="ETIMEDOUT"} 5"#,
        r#"tcp_liveness_socket_errors_total{error="errno_150"} 1"#,
        r#"tcp_liveness_hook_recursion_misses_total{hook="inet_sock_set_state"} 67"#,
        r#"tcp_liveness_hook_recursion_misses_total{hook="tcp_probe"} 0"#,
        r#"tcp_liveness_build_info{version="1.2.3"} 1"#,
        "tcp_liveness_scan_duration_seconds_count 1",
        r#"tcp_liveness_scan_duration_seconds_bucket{le="0.005"} 1"#,
        "# TYPE tcp_liveness_idle_seconds histogram",
        "# TYPE tcp_liveness_resets_total counter",
    ];
    let lines: Vec<&str> = text.lines().collect();
    for line in expected {
        assert!(lines.contains(&line), "missing {line:?} in:\n{text}");
    }
    // A TIME_WAIT table entry is not a series: TIME_WAIT is counted from the kernel's own state,
    // unknown (absent) in this snapshot.
    for absent in [
        r#"state="time_wait""#,
        r#"state="listen",le"#,
        "from=\"unknown",
        "errno_0",
    ] {
        assert!(!text.contains(absent), "unexpected {absent:?} in:\n{text}");
    }
    assert_eq!(text.matches("tcp_liveness_connections{").count(), 9);
    assert_eq!(text.matches("tcp_liveness_idle_seconds_count{").count(), 8);
}

#[test]
fn every_family_has_help() {
    let text = rendered();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        let help = text
            .lines()
            .find(|l| l.starts_with(&format!("# HELP {name} ")));
        assert!(
            help.is_some_and(|h| h.len() > 30),
            "{name} lacks a useful HELP"
        );
    }
}

/// Parses the text output back and checks each histogram's buckets never decrease and end at
/// `_count` — the invariant Prometheus relies on.
#[test]
#[expect(clippy::float_cmp, reason = "the last bound is exactly +Inf")]
fn histogram_buckets_are_monotonic() {
    let text = rendered();
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let Some((name, labels)) = key.split_once("_bucket{") else {
            continue;
        };
        let (rest, le) = labels.trim_end_matches("\"}").split_once("le=\"").unwrap();
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        series
            .entry(format!("{name}{{{rest}"))
            .or_default()
            .push((le, value));
    }
    assert!(series.len() >= 9, "{series:?}");
    for (name, buckets) in &series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}"
        );
        assert_eq!(buckets.last().unwrap().0, f64::INFINITY, "{name}");
    }
}

#[test]
fn empty_store_still_renders_every_state() {
    let metrics = Metrics::new(Arc::new(SnapshotStore::new()), "0");
    let text = metrics.render();
    assert!(text.contains(r#"tcp_liveness_connections{state="closing"} 0"#));
    assert!(text.contains("tcp_liveness_tracked_sockets 0"));
    assert!(
        text.contains("process_resident_memory_bytes "),
        "the agent's own cost"
    );
    // No transitions yet: that family is absent. The errors worth alerting on start at 0.
    assert!(!text.contains("tcp_liveness_state_transitions_total{"));
    assert!(text.contains(r#"tcp_liveness_socket_errors_total{error="ETIMEDOUT"} 0"#));
}

/// Scan health: every stage's error counter exists at 0 from the start, failures count up, and
/// the last success is a Unix timestamp (`node_exporter`'s per-collector success metrics).
#[test]
fn scan_health_metrics() {
    let metrics = Metrics::new(Arc::new(SnapshotStore::new()), "0");
    let text = metrics.render();
    assert!(text.contains(r#"tcp_liveness_scan_errors_total{stage="counters"} 0"#));
    assert!(text.contains(r#"tcp_liveness_scan_errors_total{stage="scan"} 0"#));
    assert!(text.contains("tcp_liveness_last_scan_success_timestamp_seconds 0"));

    metrics.scan_failed(ScanStage::Counters);
    metrics.scan_failed(ScanStage::Counters);
    metrics.scan_succeeded(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500));
    metrics.set_scan_interval(Duration::from_secs(5));
    let text = metrics.render();
    assert!(text.contains(r#"tcp_liveness_scan_errors_total{stage="counters"} 2"#));
    assert!(text.contains(r#"tcp_liveness_scan_errors_total{stage="scan"} 0"#));
    assert!(text.contains("tcp_liveness_last_scan_success_timestamp_seconds 1700000000.5"));
    assert!(text.contains("tcp_liveness_scan_interval_seconds 5"));
}
