//! Alerting: which suspect connections are new or cleared since the last scan (log lines and
//! the detection counts), how they group into alerts (reason × owner × service port, for
//! `/alerts`, `tcp-liveness check` and Alertmanager), and the Alertmanager push.
//!
//! Everything here but the push thread ([`client`]) and the log lines is pure: a [`Snapshot`]
//! in, events and groups out.

mod alertmanager;
mod client;
pub mod exhaustion;
mod groups;
mod http_config;
mod tracker;

use std::{collections::BTreeMap, time::Duration};

use self::client::{AlertmanagerClient, PushCounters};
use self::exhaustion::ExhaustionLog;
use self::tracker::Tracker;
pub use self::{
    groups::{AlertGroup, AlertsView, group, paths::OpeningPath},
    http_config::{BasicAuth, HttpConfig, HttpConfigError, LoadedHttpConfig},
    tracker::Transitions,
};
use crate::{
    model::Reason,
    scan::{Cookies, Snapshot},
};

/// The tracker and the optional Alertmanager push, run once per scan.
pub struct Alerting {
    tracker: Tracker,
    exhaustion: ExhaustionLog,
    alertmanager: Option<(AlertmanagerClient, PushCounters)>,
}

/// Why alerting could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    /// A CA, certificate, key or password file named by the settings is unusable.
    #[error(transparent)]
    HttpConfig(#[from] HttpConfigError),
    /// The Alertmanager sender thread could not be started.
    #[error("starting the alertmanager thread")]
    Thread(#[source] std::io::Error),
}

impl Alerting {
    /// `log_limit`: transition lines per scan before the rest are summarized per reason.
    /// `alertmanager_url` (`http://host:9093`, `https://…`): where to push alert groups, if
    /// anywhere, with `http`'s TLS and basic auth settings.
    /// `scan_interval` sets how long a pushed alert stays firing without a resend.
    ///
    /// # Errors
    /// A file of `http` is unusable, or the sender thread could not be started.
    pub fn new(
        log_limit: usize,
        alertmanager_url: Option<&str>,
        http: &HttpConfig,
        scan_interval: Duration,
    ) -> Result<Self, AlertingError> {
        // 4 scans, as Alertmanager's clients conventionally do; at least 4 send timeouts so a
        // slow POST (which makes the sender skip scans) does not let alerts expire and flap.
        let hold = 4 * scan_interval.max(client::SEND_TIMEOUT);
        let alertmanager = match alertmanager_url {
            None => None,
            Some(url) => {
                let counters = PushCounters::new();
                let client = AlertmanagerClient::start(url, &http.load()?, hold, counters.clone())
                    .map_err(AlertingError::Thread)?;
                Some((client, counters))
            }
        };
        Ok(Self {
            tracker: Tracker::new(log_limit),
            exhaustion: ExhaustionLog::default(),
            alertmanager,
        })
    }

    /// Adds the push counters (`tcp_liveness_alertmanager_pushes_total`,
    /// `…_push_failures_total`) to `registry` when there is an Alertmanager to push to.
    ///
    /// # Errors
    /// The names are already registered (a programming error).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        if let Some((_, counters)) = &self.alertmanager {
            registry.register(Box::new(counters.pushes.clone()))?;
            registry.register(Box::new(counters.failures.clone()))?;
        }
        Ok(())
    }

    /// Logs this scan's transitions and hands the alert groups to the Alertmanager sender.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Transitions {
        let transitions = self.tracker.observe(snapshot);
        let predicted = exhaustion::predicted(snapshot);
        self.exhaustion.observe(&predicted);
        if let Some((client, _)) = &self.alertmanager {
            client.push(group(snapshot), predicted);
        }
        transitions
    }

    /// Connections newly found suspect since the agent started, per reason (every reason
    /// present): `tcp_liveness_suspect_detections_total`.
    #[must_use]
    pub fn detections(&self) -> &BTreeMap<Reason, u64> {
        self.tracker.detections()
    }

    /// The previous scan's suspects, for the next scan to report which are still open.
    #[must_use]
    pub fn watched(&self) -> Cookies {
        self.tracker.watched()
    }
}
