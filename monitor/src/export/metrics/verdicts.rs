//! Metric families about suspects and owners: bounded cardinality by construction (reasons are a
//! fixed set; owners are cut to the top N plus "other").

use prometheus::proto::MetricFamily;

use super::{
    FamilyExt as _,
    proto::{counter, gauge},
};
use crate::{
    alerting,
    export::Published,
    model::{
        Reason,
        metric_families::{
            ALERT_GROUPS, ALERT_GROUPS_FOLDED, CARDINALITY_LIMIT, CLOSE_WAIT_BY_OWNER,
            CLOSE_WAIT_FOLDED_OWNERS, CLOSE_WAIT_FOLDED_PORTS, CLOSE_WAIT_OLDEST, DETECTIONS,
            ENFORCED, IDLE_BEYOND_THRESHOLD, KEEPALIVE_DISABLED, PATH_TIMEOUT_AT_RISK, SUSPECTS,
            SUSPECTS_BY_OWNER, THRESHOLDS,
        },
    },
};

/// From the snapshot's summary: the suspects, keepalive and idle counts (every reason and state
/// present, 0 included, like `tcp_liveness_connections`), the thresholds judged with, the
/// suspects by owner and the `CLOSE_WAIT` top N (series only for what exists).
#[must_use]
pub fn families(published: &Published) -> Vec<MetricFamily> {
    let summary = &published.snapshot.summary;
    let (suspects, keepalive_off, close_wait) = (
        &summary.suspects,
        &summary.keepalive_off,
        &summary.close_wait,
    );
    vec![
        SUSPECTS.family(
            suspects
                .iter()
                .map(|(r, n)| gauge(&[("reason", r.as_str())], *n as f64))
                .collect(),
        ),
        DETECTIONS.family(
            Reason::ALL
                .iter()
                .map(|r| {
                    let n = published.detections.get(r).copied().unwrap_or(0);
                    counter(&[("reason", r.as_str())], n)
                })
                .collect(),
        ),
        CLOSE_WAIT_BY_OWNER.family(
            close_wait
                .by_port
                .iter()
                .map(|((owner, port), n)| {
                    gauge(&[("owner", owner), ("local_port", port)], *n as f64)
                })
                .collect(),
        ),
        CLOSE_WAIT_OLDEST.family(
            close_wait
                .oldest
                .iter()
                .map(|(owner, secs)| gauge(&[("owner", owner)], *secs))
                .collect(),
        ),
        KEEPALIVE_DISABLED.family(
            keepalive_off
                .iter()
                .map(|(s, n)| gauge(&[("state", s.as_ref())], *n as f64))
                .collect(),
        ),
        IDLE_BEYOND_THRESHOLD.family(
            summary
                .idle_beyond
                .iter()
                .map(|(s, n)| gauge(&[("state", s.as_ref())], *n as f64))
                .collect(),
        ),
        THRESHOLDS.family({
            let t = published.snapshot.policy.defaults;
            [
                ("close_wait_after", t.close_wait_after),
                ("fin_wait2_after", t.fin_wait2_after),
                ("unresponsive_after", t.unresponsive_after),
                ("idle_after", t.idle_after),
            ]
            .iter()
            .map(|(key, d)| gauge(&[("threshold", key)], d.as_secs_f64()))
            .collect()
        }),
        ENFORCED.family(
            summary
                .enforced
                .iter()
                .map(|(policy, n)| gauge(&[("policy", policy)], *n as f64))
                .collect(),
        ),
        PATH_TIMEOUT_AT_RISK.family(
            summary
                .path_at_risk
                .iter()
                .map(|(path, n)| gauge(&[("path", path)], *n as f64))
                .collect(),
        ),
        SUSPECTS_BY_OWNER.family(
            summary
                .suspects_by_owner
                .iter()
                .flat_map(|(reason, top)| {
                    top.by_port.iter().map(|((owner, port), n)| {
                        let labels = [
                            ("reason", reason.as_str()),
                            ("owner", owner),
                            ("local_port", port),
                        ];
                        gauge(&labels, *n as f64)
                    })
                })
                .collect(),
        ),
    ]
    .into_iter()
    .chain(cardinality(published))
    .collect()
}

/// The caps and what they folded at the last scan. The alert groups are grouped again here
/// (as `/alerts` does per request): O(suspects), small next to the scan that found them.
fn cardinality(published: &Published) -> Vec<MetricFamily> {
    let snapshot = &published.snapshot;
    let grouping = snapshot.grouping;
    let close_wait = &snapshot.summary.close_wait;
    let groups = alerting::group(snapshot);
    let folded: usize = groups.iter().map(|g| g.folded_groups).sum();
    vec![
        CARDINALITY_LIMIT.family(
            [
                ("top_n", grouping.top_n),
                ("top_ports", grouping.top_ports),
                ("max_alert_groups", grouping.max_alert_groups),
            ]
            .iter()
            .map(|(setting, n)| gauge(&[("setting", setting)], *n as f64))
            .collect(),
        ),
        CLOSE_WAIT_FOLDED_OWNERS.family(vec![gauge(&[], close_wait.folded_owners as f64)]),
        CLOSE_WAIT_FOLDED_PORTS.family(vec![gauge(&[], close_wait.folded_ports as f64)]),
        ALERT_GROUPS.family(vec![gauge(&[], groups.len() as f64)]),
        ALERT_GROUPS_FOLDED.family(vec![gauge(&[], folded as f64)]),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::tcp_state;

    use super::*;
    use crate::{
        model::{Connection, Grouping, Keepalive},
        scan::Snapshot,
    };

    #[test]
    #[expect(clippy::float_cmp, reason = "a sum of gauges of 0 and 1 is exact")]
    fn suspects_and_keepalive_families_have_every_reason() {
        let mut idle = Connection::new(
            1,
            tcp_state::ESTABLISHED,
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:1".parse().unwrap(),
        );
        idle.comm = Some("app".into());
        idle.state_age = Some(Duration::from_secs(1));
        idle.keepalive = Some(Keepalive {
            enabled: false,
            idle: None,
            interval: None,
            count: None,
        });
        idle.suspect = vec![Reason::IdleNoKeepalive];
        let published = Published {
            snapshot: Snapshot::from_connections([idle], Grouping::default()),
            ..Published::default()
        };
        let families = families(&published);
        assert_eq!(families[0].get_metric().len(), Reason::ALL.len());
        let ka = families[4].get_metric();
        assert_eq!(
            ka.len(),
            tcp_state::REPORTED.len() - 1,
            "every state but listen"
        );
        let total: f64 = ka.iter().map(|m| m.get_gauge().get_value()).sum();
        assert_eq!(total, 1.0);
        // The one suspect, by reason and owner: the alert rules name the owner from it.
        let by_owner = families
            .iter()
            .find(|f| f.name() == "tcp_liveness_suspect_connections_by_owner")
            .unwrap()
            .get_metric();
        let labels: Vec<_> = by_owner[0]
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(by_owner.len(), 1);
        assert_eq!(
            labels,
            [
                ("reason", "idle_no_keepalive"),
                ("owner", "app"),
                ("local_port", "outbound")
            ]
        );
        assert_eq!(by_owner[0].get_gauge().get_value(), 1.0);
    }

    /// The caps are exported, and so is what they folded: 30 service ports of one owner with
    /// `top_ports` = 10 are 12 `CLOSE_WAIT` series (10, other, and nothing outbound) and 11 alert
    /// groups, 20 ports folded in each.
    #[test]
    #[expect(clippy::float_cmp, reason = "gauges set from small integers are exact")]
    fn caps_and_folded_counts_are_exported() {
        let mut connections = Vec::new();
        for port in 1000..1030 {
            let local = format!("10.0.0.1:{port}").parse().unwrap();
            let mut c = Connection::new(
                1,
                tcp_state::CLOSE_WAIT,
                local,
                "10.0.0.2:1".parse().unwrap(),
            );
            c.comm = Some("leaky".into());
            c.suspect = vec![Reason::CloseWaitStuck];
            let mut listener = c.clone();
            listener.state = tcp_state::LISTEN;
            listener.suspect.clear();
            connections.extend([c, listener]);
        }
        let published = Published {
            snapshot: Snapshot::from_connections(connections, Grouping::default()),
            ..Published::default()
        };
        let families = families(&published);
        let value = |name: &str, label: Option<&str>| {
            let family = families.iter().find(|f| f.name() == name).unwrap();
            family
                .get_metric()
                .iter()
                .find(|m| label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)))
                .map(|m| m.get_gauge().get_value())
                .unwrap()
        };
        let series = families
            .iter()
            .find(|f| f.name() == "tcp_liveness_close_wait_connections")
            .unwrap()
            .get_metric()
            .len();
        assert_eq!(series, 11, "10 ports and other");
        let got = [
            value("tcp_liveness_cardinality_limit", Some("top_ports")),
            value("tcp_liveness_cardinality_limit", Some("max_alert_groups")),
            value("tcp_liveness_cardinality_limit", Some("top_n")),
            value("tcp_liveness_close_wait_folded_ports", None),
            value("tcp_liveness_close_wait_folded_owners", None),
            value("tcp_liveness_alert_groups", None),
            value("tcp_liveness_alert_groups_folded", None),
        ];
        assert_eq!(got, [10.0, 200.0, 20.0, 20.0, 0.0, 11.0, 20.0]);
    }
}
