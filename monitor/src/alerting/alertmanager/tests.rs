use std::time::{Duration, SystemTime};

use super::*;
use crate::model::Reason;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// A group whose oldest connection is 5 minutes old.
fn group(reason: Reason, owner: &str, port: u16, count: usize) -> AlertGroup {
    AlertGroup::example(reason, owner, port, count, 300.0)
}

#[test]
fn names_and_summaries() {
    assert_eq!(
        Reason::CloseWaitStuck.alert_name(),
        "TcpLivenessCloseWaitStuck"
    );
    assert_eq!(
        Reason::FinWait2Stuck.alert_name(),
        "TcpLivenessFinWait2Stuck"
    );
    assert_eq!(
        Reason::IdleNoKeepalive.alert_name(),
        "TcpLivenessIdleNoKeepalive"
    );
    assert_eq!(
        summary(&group(Reason::CloseWaitStuck, "redis-server", 6379, 3)),
        "3 connections of redis-server on port 6379 stuck in CLOSE_WAIT, oldest 5m00s"
    );
    let mut one = group(Reason::PeerUnresponsive, "curl", 51000, 1);
    one.oldest_seconds = None;
    assert_eq!(
        summary(&one),
        "1 connection of curl on port 51000 with an unresponsive peer"
    );
}

#[test]
fn firing_alert_has_identity_labels_and_a_future_end() {
    let g = group(Reason::CloseWaitStuck, "redis-server", 6379, 3);
    let alerts = build_alerts(&[(&g, at(0))], at(20), "web-1");
    assert_eq!(alerts.len(), 1);
    let json = serde_json::to_value(&alerts[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "labels": {
                "alertname": "TcpLivenessCloseWaitStuck",
                "reason": "close_wait_stuck",
                "owner": "redis-server",
                "local_port": "6379",
                "instance": "web-1",
                "severity": "warning",
            },
            "annotations": {
                "summary": "3 connections of redis-server on port 6379 stuck in CLOSE_WAIT, oldest 5m00s",
                "description": Reason::CloseWaitStuck.remedy(),
            },
            "startsAt": "2023-11-14T22:13:20.000Z",
            "endsAt": "2023-11-14T22:13:40.000Z",
        })
    );
    let idle = group(Reason::IdleNoKeepalive, "app", 80, 1);
    let alerts = build_alerts(&[(&idle, at(0))], at(5), "web-1");
    assert_eq!(alerts[0].labels["severity"], "info");
}

/// A group in one pod adds its labels (its container only when one), which identify it as the
/// owner does; a group in no pod has none of them.
#[test]
fn a_group_in_one_pod_is_labelled_with_it() {
    let mut g = group(Reason::CloseWaitStuck, "shop/web-1", 6379, 3);
    let named = |s: &str| Some(s.to_owned());
    g.kubernetes = Some(crate::kubernetes::PodIdentity::new(
        named("shop"),
        named("web-1"),
        named("1b3c"),
        named("nginx"),
    ));
    let alerts = build_alerts(&[(&g, at(0))], at(20), "node-1");
    let labels = &alerts[0].labels;
    assert_eq!(labels["pod"], "web-1");
    assert_eq!(labels["namespace"], "shop");
    assert_eq!(labels["container"], "nginx");
    assert_eq!(labels["owner"], "shop/web-1");
    g.kubernetes.as_mut().unwrap().container = None;
    let alerts = build_alerts(&[(&g, at(0))], at(20), "node-1");
    assert!(!alerts[0].labels.contains_key("container"));
    assert_eq!(
        alerts[0].labels.len(),
        8,
        "six of every alert, pod and namespace"
    );
    g.kubernetes = None;
    let alerts = build_alerts(&[(&g, at(0))], at(20), "node-1");
    assert_eq!(alerts[0].labels.len(), 6);
}

#[test]
fn end_never_precedes_start() {
    let g = group(Reason::CloseWaitStuck, "x", 1, 1);
    let alerts = build_alerts(&[(&g, at(10))], at(5), "h");
    assert_eq!(alerts[0].ends_at, alerts[0].starts_at);
}

fn ends(alerts: &[PostableAlert]) -> Vec<(&str, &str, &str)> {
    alerts
        .iter()
        .map(|a| {
            (
                a.labels["owner"].as_str(),
                a.starts_at.as_str(),
                a.ends_at.as_str(),
            )
        })
        .collect()
}

#[test]
fn groups_fire_every_scan_then_resolve_once_delivered() {
    let hold = Duration::from_secs(20);
    let mut state = PushState::default();
    let a = || group(Reason::CloseWaitStuck, "a", 1, 1);
    let b = || group(Reason::CloseWaitStuck, "b", 2, 1);

    let first = state.alerts(vec![a(), b()], at(0), hold, "h");
    assert_eq!(
        ends(&first),
        [
            ("a", "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:40.000Z"),
            ("b", "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:40.000Z"),
        ]
    );
    state.delivered();

    // `b` is gone: resolved (ends now), and `a` keeps its original start.
    let second = state.alerts(vec![a()], at(5), hold, "h");
    assert_eq!(
        ends(&second),
        [
            ("a", "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:45.000Z"),
            ("b", "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:25.000Z"),
        ]
    );
    assert_eq!(state.firing(), 1);

    // The POST failed (no `delivered`): the resolution is sent again.
    let third = state.alerts(vec![a()], at(10), hold, "h");
    assert_eq!(third.len(), 2);
    assert_eq!(third[1].ends_at, "2023-11-14T22:13:30.000Z");
    state.delivered();

    // Delivered: only `a` again; everything gone: `a` resolved, then nothing to send.
    assert_eq!(state.alerts(vec![a()], at(15), hold, "h").len(), 1);
    state.delivered();
    let last = state.alerts(Vec::new(), at(20), hold, "h");
    assert_eq!(
        ends(&last),
        [("a", "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:40.000Z")]
    );
    state.delivered();
    assert!(state.alerts(Vec::new(), at(25), hold, "h").is_empty());
}

#[test]
fn a_group_that_comes_back_fires_again_with_a_new_start() {
    let hold = Duration::from_secs(20);
    let mut state = PushState::default();
    let a = || group(Reason::CloseWaitStuck, "a", 1, 1);
    state.alerts(vec![a()], at(0), hold, "h");
    state.alerts(Vec::new(), at(5), hold, "h");
    // Back before the resolution was delivered: no resolution is sent for it.
    let back = state.alerts(vec![a()], at(10), hold, "h");
    assert_eq!(
        ends(&back),
        [("a", "2023-11-14T22:13:30.000Z", "2023-11-14T22:13:50.000Z")]
    );
}

/// What `[[remediate]]` did is an annotation of the group's alert, summed while it fires, and
/// kept on the resolved alert (the destroyed connections were its last ones).
#[test]
fn remediations_annotate_the_alert_and_add_up_while_it_fires() {
    let acted = |n: u64| {
        let mut g = group(Reason::PeerUnresponsive, "app", 7000, 3);
        g.remediations.insert("destroyed".into(), n);
        g.remediations.insert("rate_limited".into(), 2);
        g
    };
    let mut state = PushState::default();
    let hold = Duration::from_mins(1);
    let first = state.alerts(vec![acted(1)], at(0), hold, "web-1");
    assert_eq!(
        first[0].annotations.get("remediation").map(String::as_str),
        Some("destroyed 1, rate_limited 2 ([[remediate]])")
    );
    let second = state.alerts(vec![acted(1)], at(5), hold, "web-1");
    assert_eq!(
        second[0].annotations.get("remediation").map(String::as_str),
        Some("destroyed 2, rate_limited 4 ([[remediate]])")
    );
    let resolved = state.alerts(Vec::new(), at(10), hold, "web-1");
    assert_eq!(
        resolved[0]
            .annotations
            .get("remediation")
            .map(String::as_str),
        Some("destroyed 2, rate_limited 4 ([[remediate]])")
    );
    let quiet = state.alerts(
        vec![group(Reason::CloseWaitStuck, "db", 5432, 1)],
        at(20),
        hold,
        "web-1",
    );
    assert!(
        !quiet[0].annotations.contains_key("remediation"),
        "none without actions"
    );
}

/// A group whose connections' opening paths are known carries them as `call_paths`; without,
/// the annotation is absent.
#[test]
fn opening_paths_are_annotated() {
    let mut g = group(Reason::CloseWaitStuck, "leaky", 7102, 300);
    let path = |count, path: &str| crate::alerting::OpeningPath {
        count,
        path: path.into(),
    };
    g.opening_paths = vec![
        path(
            297,
            "open_report_connection (report.c:41) ← handle_request ← main",
        ),
        path(3, "serve_leaky_client (report.c:75) ← main"),
    ];
    let alerts = build_alerts(&[(&g, at(0))], at(20), "web-1");
    assert_eq!(
        alerts[0].annotations["call_paths"],
        "297 opened at open_report_connection (report.c:41) ← handle_request ← main; \
         3 opened at serve_leaky_client (report.c:75) ← main"
    );
    let plain = group(Reason::CloseWaitStuck, "leaky", 7102, 3);
    let alerts = build_alerts(&[(&plain, at(0))], at(20), "web-1");
    assert!(!alerts[0].annotations.contains_key("call_paths"));
}
