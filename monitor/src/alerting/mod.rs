//! Alerting: which suspect connections are new or cleared since the last scan (log lines and
//! the detection counts), how they group into alerts (reason × owner × service port, for
//! `/alerts`, `tcp-liveness check` and Alertmanager), and the Alertmanager push.
//!
//! Everything here but the push thread ([`client`]) and the log lines is pure: a [`Snapshot`]
//! in, events and groups out.

mod alertmanager;
mod client;
mod groups;
mod tracker;

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use self::client::AlertmanagerClient;
use self::tracker::Tracker;
pub use self::{
    groups::{AlertGroup, AlertsView, group},
    tracker::Transitions,
};
use crate::{model::Reason, scan::Snapshot};

/// The tracker and the optional Alertmanager push, run once per scan.
pub struct Alerting {
    tracker: Tracker,
    alertmanager: Option<AlertmanagerClient>,
}

impl Alerting {
    /// `log_limit`: transition lines per scan before the rest are summarized per reason.
    /// `alertmanager_url` (`http://host:9093`): where to push alert groups, if anywhere.
    /// `scan_interval` sets how long a pushed alert stays firing without a resend.
    ///
    /// # Errors
    /// The Alertmanager sender thread could not be started.
    pub fn new(
        log_limit: usize,
        alertmanager_url: Option<&str>,
        scan_interval: Duration,
    ) -> std::io::Result<Self> {
        // 4 scans, as Alertmanager's clients conventionally do; at least 4 send timeouts so a
        // slow POST (which makes the sender skip scans) does not let alerts expire and flap.
        let hold = 4 * scan_interval.max(client::SEND_TIMEOUT);
        let alertmanager = alertmanager_url
            .map(|url| AlertmanagerClient::start(url, hold))
            .transpose()?;
        Ok(Self {
            tracker: Tracker::new(log_limit),
            alertmanager,
        })
    }

    /// Logs this scan's transitions and hands the alert groups to the Alertmanager sender.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Transitions {
        let transitions = self.tracker.observe(snapshot);
        if let Some(client) = &self.alertmanager {
            client.push(group(snapshot));
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
    pub fn watched(&self) -> HashSet<u64> {
        self.tracker.watched()
    }
}
