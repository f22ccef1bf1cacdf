//! The config reload's outcome, as Prometheus and Alertmanager export theirs
//! (`prometheus_config_last_reload_successful`): a rejected file is otherwise only a log line.

use std::time::SystemTime;

use prometheus::Gauge;

use super::{FamilyExt as _, Metrics};
use crate::model::metric_families::{RELOAD_SUCCESS_TIME, RELOAD_SUCCESSFUL};

/// `tcp_liveness_config_last_reload_successful` and
/// `tcp_liveness_config_last_reload_success_timestamp_seconds`, registered with [`Metrics`].
pub struct ReloadMetrics {
    successful: Gauge,
    success_time: Gauge,
}

impl ReloadMetrics {
    /// Registers both gauges with `metrics`; call once.
    ///
    /// # Panics
    /// When called twice for the same `metrics` (duplicate registration: a programming error).
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let successful = Gauge::with_opts(RELOAD_SUCCESSFUL.opts()).expect("valid reload gauge");
        let success_time =
            Gauge::with_opts(RELOAD_SUCCESS_TIME.opts()).expect("valid reload timestamp gauge");
        for gauge in [&successful, &success_time] {
            metrics
                .registry
                .register(Box::new(gauge.clone()))
                .expect("register reload metrics");
        }
        Self {
            successful,
            success_time,
        }
    }

    /// The config was loaded (at start) or reloaded, at wall-clock time `at`.
    pub fn succeeded(&self, at: SystemTime) {
        self.successful.set(1.0);
        let unix = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.success_time.set(unix.as_secs_f64());
    }

    /// A reload was rejected; the previous config stays.
    pub fn failed(&self) {
        self.successful.set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::export::SnapshotStore;

    #[test]
    fn outcome_of_the_last_reload() {
        let metrics = Metrics::new(Arc::new(SnapshotStore::new()), "0");
        let reload = ReloadMetrics::register(&metrics);
        reload.succeeded(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let text = metrics.render();
        assert!(
            text.contains("tcp_liveness_config_last_reload_successful 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tcp_liveness_config_last_reload_success_timestamp_seconds 1700000000\n"),
            "{text}"
        );
        reload.failed();
        let text = metrics.render();
        assert!(
            text.contains("tcp_liveness_config_last_reload_successful 0\n"),
            "{text}"
        );
        assert!(
            text.contains("tcp_liveness_config_last_reload_success_timestamp_seconds 1700000000\n"),
            "the last success stays"
        );
    }
}
