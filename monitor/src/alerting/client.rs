//! Pushes alert groups to Alertmanager from a dedicated thread, so a slow or unreachable
//! Alertmanager never delays a scan. Only the latest groups are kept: when a POST takes longer
//! than a scan, the intermediate scans are skipped (firing alerts are re-sent anyway, and
//! [`PushState`] still resolves what disappeared meanwhile).

use std::{
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant, SystemTime},
};

use crate::model::format::error_chain;

use super::{
    AlertGroup,
    alertmanager::{PostableAlert, PushState},
};

/// Per POST. Short: the next scan brings fresh data anyway.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one "still failing" log line per this long.
const FAILURE_LOG_EVERY: Duration = Duration::from_mins(1);

#[derive(Default)]
struct Slot {
    latest: Option<Vec<AlertGroup>>,
    closed: bool,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

pub(super) struct AlertmanagerClient {
    shared: Shared,
}

impl AlertmanagerClient {
    /// Starts the sender thread for Alertmanager at `base_url` (`http://host:9093`).
    /// Firing alerts end `hold` after each send unless re-sent: long enough to survive a few
    /// skipped sends, short enough that alerts resolve by themselves if the agent dies.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(super) fn start(base_url: &str, hold: Duration) -> std::io::Result<Self> {
        // config::values::alertmanager_url has checked it is http:// (no TLS stack in this build).
        let base = base_url.trim_end_matches('/');
        let url = format!("{base}/api/v2/alerts");
        let shared: Shared = Arc::default();
        let worker = Worker {
            url,
            hold,
            instance: hostname(),
            shared: Arc::clone(&shared),
        };
        std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || worker.run())?;
        Ok(Self { shared })
    }

    /// Hands the current groups to the sender thread (never blocks on the network).
    pub(super) fn push(&self, groups: Vec<AlertGroup>) {
        let (slot, wake) = &*self.shared;
        crate::locks::lock(slot).latest = Some(groups);
        wake.notify_one();
    }
}

impl Drop for AlertmanagerClient {
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        crate::locks::lock(slot).closed = true;
        wake.notify_one();
    }
}

/// The `instance` label: this host's name, as the other alerts about this host carry it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

struct Worker {
    url: String,
    hold: Duration,
    instance: String,
    shared: Shared,
}

impl Worker {
    fn next(&self) -> Option<Vec<AlertGroup>> {
        let (slot, wake) = &*self.shared;
        let mut slot = crate::locks::lock(slot);
        loop {
            if slot.closed {
                return None;
            }
            if let Some(groups) = slot.latest.take() {
                return Some(groups);
            }
            slot = crate::locks::wait(wake, slot);
        }
    }

    fn run(self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(SEND_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut state = PushState::default();
        let mut failures = FailureLog::default();
        while let Some(groups) = self.next() {
            let alerts = state.alerts(groups, SystemTime::now(), self.hold, &self.instance);
            if alerts.is_empty() {
                continue;
            }
            match post(&agent, &self.url, &alerts) {
                Ok(()) => {
                    state.delivered();
                    failures.succeeded(&self.url);
                }
                Err(error) => failures.failed(&self.url, &error),
            }
        }
    }
}

/// Why one push did not reach Alertmanager.
#[derive(Debug, thiserror::Error)]
pub(super) enum PushError {
    /// No answer: connection refused, timeout, DNS, …
    #[error("POST {url}")]
    Request {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// Alertmanager answered, and refused the alerts.
    #[error("{url} answered {status}: {detail}")]
    Rejected {
        url: String,
        status: ureq::http::StatusCode,
        /// The first 200 characters of Alertmanager's explanation.
        detail: String,
    },
}

fn post(agent: &ureq::Agent, url: &str, alerts: &[PostableAlert]) -> Result<(), PushError> {
    let mut response = agent
        .post(url)
        .send_json(alerts)
        .map_err(|source| PushError::Request {
            url: url.to_owned(),
            source: Box::new(source),
        })?;
    if response.status().is_success() {
        return Ok(());
    }
    // Alertmanager explains a rejected alert in the body ("start time must be before end time").
    let body = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    Err(PushError::Rejected {
        url: url.to_owned(),
        status: response.status(),
        detail: body.trim().chars().take(200).collect(),
    })
}

/// Logs the first failure, then at most one line a minute while failures go on, then the recovery.
#[derive(Default)]
struct FailureLog {
    failing_since_log: u64,
    last_logged: Option<Instant>,
}

impl FailureLog {
    fn failed(&mut self, url: &str, error: &PushError) {
        self.failing_since_log += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY)
        {
            tracing::warn!(
                url,
                error = error_chain(error),
                failures = self.failing_since_log,
                "cannot push alerts to Alertmanager (will keep retrying every scan)"
            );
            self.last_logged = Some(Instant::now());
            self.failing_since_log = 0;
        }
    }

    fn succeeded(&mut self, url: &str) {
        if self.last_logged.take().is_some() {
            tracing::info!(url, "pushing alerts to Alertmanager again");
            self.failing_since_log = 0;
        }
    }
}

#[cfg(test)]
mod tests;
