//! Metric families about descriptor exhaustion: one series per owner (the owner's process
//! closest to its limit), among the top N processes by suspects, so bounded like the
//! `CLOSE_WAIT` series.

use prometheus::proto::MetricFamily;

use super::{FamilyExt as _, proto::gauge};
use crate::{
    model::metric_families::{FD_EXHAUSTION, PROCESS_MAX_FDS, PROCESS_OPEN_FDS},
    scan::{Snapshot, forecast},
};

/// From the snapshot's forecasts: seconds to exhaustion (only where growing), descriptors in
/// use and the soft limit (only where limited).
#[must_use]
pub(super) fn families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let worst = forecast::worst_per_owner(&snapshot.forecasts);
    let series = |value: &dyn Fn(&forecast::ProcessForecast) -> Option<f64>| {
        worst
            .iter()
            .filter_map(|f| Some(gauge(&[("owner", &f.owner)], value(f)?)))
            .collect()
    };
    vec![
        FD_EXHAUSTION.family(series(&|f| f.exhaustion_in.map(|t| t.as_secs_f64()))),
        PROCESS_OPEN_FDS.family(series(&|f| Some(f.descriptors.open as f64))),
        PROCESS_MAX_FDS.family(series(&|f| f.descriptors.max.map(|m| m as f64))),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scan::forecast::{Descriptors, ProcessForecast};

    #[test]
    fn one_series_per_owner_and_none_where_not_growing() {
        let f = |pid, owner: &str, open, eta: Option<u64>| ProcessForecast {
            pid,
            owner: owner.to_owned(),
            suspects: 3,
            descriptors: Descriptors {
                open,
                max: Some(300),
            },
            fds_per_second: Some(1.0),
            suspects_per_second: Some(1.0),
            exhaustion_in: eta.map(Duration::from_secs),
        };
        let snapshot = Snapshot {
            forecasts: vec![
                f(1, "web", 150, Some(40)),
                f(2, "web", 10, None),
                f(3, "db", 20, None),
            ],
            ..Snapshot::default()
        };
        let families = families(&snapshot);
        let values = |i: usize| -> Vec<(String, f64)> {
            families[i]
                .get_metric()
                .iter()
                .map(|m| {
                    (
                        m.get_label()[0].value().to_owned(),
                        m.get_gauge().get_value(),
                    )
                })
                .collect()
        };
        assert_eq!(values(0), [("web".to_owned(), 40.0)]);
        assert_eq!(
            values(1),
            [("db".to_owned(), 20.0), ("web".to_owned(), 150.0)]
        );
        assert_eq!(
            values(2),
            [("db".to_owned(), 300.0), ("web".to_owned(), 300.0)]
        );
    }
}
