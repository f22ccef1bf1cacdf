//! Metric families about suspects and owners: bounded cardinality by construction (reasons are a
//! fixed set; owners are cut to the top N plus "other").

use prometheus::proto::MetricFamily;

use super::{
    proto::{counter, gauge},
    specs::{CLOSE_WAIT_BY_OWNER, CLOSE_WAIT_OLDEST, DETECTIONS, KEEPALIVE_DISABLED, SUSPECTS},
};
use crate::{export::Published, model::Reason};

/// From the snapshot's summary: the suspects and keepalive counts (every reason and state
/// present, 0 included, like `tcp_liveness_connections`) and the `CLOSE_WAIT` top N.
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
                .map(|(s, n)| gauge(&[("state", s)], *n as f64))
                .collect(),
        ),
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
    }
}
