//! The process-level alert `TcpLivenessFdExhaustionPredicted`: a process holding suspect sockets is
//! predicted to reach its open-file limit within `fd_exhaustion_horizon` (from the scan's
//! [`forecast`](crate::scan::forecast)s). One alert per process, not per connection: it is the
//! process that will fail (`accept()` and `open()` returning `EMFILE`).

pub(super) mod push;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::scan::{Snapshot, forecast::ProcessForecast};

/// The alert's name, in `/alerts`, the logs and Alertmanager.
pub const ALERT_NAME: &str = "TcpLivenessFdExhaustionPredicted";

/// One process predicted to run out of descriptors within the horizon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExhaustionAlert {
    /// The owner label of its connections (process name, cgroup or pod per `group_by`).
    pub owner: String,
    pub pid: u32,
    /// Descriptors in use (`/proc/PID/fd`).
    pub open_fds: u64,
    /// Its soft limit (`/proc/PID/limits` "Max open files").
    pub max_fds: u64,
    /// Growth of its descriptors, per second, over the forecast window.
    pub fds_per_second: f64,
    /// Growth of its suspect (leaked) connections, per second, over the same window.
    pub leaked_per_second: Option<f64>,
    /// Its suspect connections now.
    pub suspects: u64,
    /// Predicted seconds until `open_fds` reaches `max_fds`.
    pub exhaustion_seconds: f64,
}

impl ExhaustionAlert {
    fn from_forecast(f: &ProcessForecast) -> Option<Self> {
        Some(Self {
            owner: f.owner.clone(),
            pid: f.pid,
            open_fds: f.descriptors.open,
            max_fds: f.descriptors.max?,
            fds_per_second: f.fds_per_second.unwrap_or(0.0),
            leaked_per_second: f.suspects_per_second,
            suspects: f.suspects,
            exhaustion_seconds: f.exhaustion_in?.as_secs_f64(),
        })
    }

    /// One line: who, how fast, and when.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{} (pid {}) uses {} of {} descriptors, growing {:.2}/s: runs out in {:.0}s",
            self.owner,
            self.pid,
            self.open_fds,
            self.max_fds,
            self.fds_per_second,
            self.exhaustion_seconds
        )
    }
}

/// The processes of `snapshot` predicted to run out within its `fd_exhaustion_horizon`, soonest
/// first.
#[must_use]
pub fn predicted(snapshot: &Snapshot) -> Vec<ExhaustionAlert> {
    let mut alerts: Vec<ExhaustionAlert> = snapshot
        .forecasts
        .iter()
        .filter(|f| f.within(snapshot.fd_exhaustion_horizon))
        .filter_map(ExhaustionAlert::from_forecast)
        .collect();
    alerts.sort_by(|a, b| {
        a.exhaustion_seconds
            .total_cmp(&b.exhaustion_seconds)
            .then(a.pid.cmp(&b.pid))
    });
    alerts
}

/// Which processes are alerted on, to log each alert once when it starts and once when it
/// clears.
#[derive(Debug, Default)]
pub(super) struct ExhaustionLog {
    firing: BTreeSet<u32>,
}

impl ExhaustionLog {
    /// Logs the alerts that started (warn) and cleared (info) since the last scan.
    pub(super) fn observe(&mut self, alerts: &[ExhaustionAlert]) {
        let now: BTreeSet<u32> = alerts.iter().map(|a| a.pid).collect();
        for a in alerts.iter().filter(|a| !self.firing.contains(&a.pid)) {
            tracing::warn!(
                alertname = ALERT_NAME,
                owner = %a.owner,
                pid = a.pid,
                open_fds = a.open_fds,
                max_fds = a.max_fds,
                fds_per_second = a.fds_per_second,
                leaked_per_second = a.leaked_per_second,
                exhaustion_seconds = a.exhaustion_seconds,
                "descriptor exhaustion predicted: {}",
                a.summary()
            );
        }
        for pid in self.firing.difference(&now) {
            tracing::info!(
                alertname = ALERT_NAME,
                pid,
                "descriptor exhaustion no longer predicted"
            );
        }
        self.firing = now;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scan::forecast::Descriptors;

    #[test]
    fn only_forecasts_within_the_horizon_alert_soonest_first() {
        let f = |pid, eta: Option<u64>| ProcessForecast {
            pid,
            owner: "leaky".into(),
            suspects: 40,
            descriptors: Descriptors {
                open: 150,
                max: Some(300),
            },
            fds_per_second: Some(4.0),
            suspects_per_second: Some(4.0),
            exhaustion_in: eta.map(Duration::from_secs),
        };
        let snapshot = Snapshot {
            forecasts: vec![
                f(1, Some(7200)),
                f(2, Some(600)),
                f(3, None),
                f(4, Some(30)),
            ],
            fd_exhaustion_horizon: Duration::from_hours(1),
            ..Snapshot::default()
        };
        let alerts = predicted(&snapshot);
        let pids: Vec<u32> = alerts.iter().map(|a| a.pid).collect();
        assert_eq!(pids, [4, 2]);
        assert_eq!(
            alerts[0].summary(),
            "leaky (pid 4) uses 150 of 300 descriptors, growing 4.00/s: runs out in 30s"
        );
    }
}
