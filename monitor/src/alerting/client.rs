//! Pushes alert groups to Alertmanager from a dedicated thread, so a slow or unreachable
//! Alertmanager never delays a scan. Only the latest groups are kept: when a POST takes longer
//! than a scan, the intermediate scans are skipped (firing alerts are re-sent anyway, and
//! [`PushState`] still resolves what disappeared meanwhile).

use std::{
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant, SystemTime},
};

use prometheus::IntCounter;

use crate::model::{
    format::error_chain,
    metric_families::{ALERTMANAGER_PUSH_FAILURES, ALERTMANAGER_PUSHES, Family},
};

use super::{
    AlertGroup,
    alertmanager::{PostableAlert, PushState},
    exhaustion::{ExhaustionAlert, push::ExhaustionPushState},
    http_config::LoadedHttpConfig,
};

/// Per POST. Short: the next scan brings fresh data anyway.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one "still failing" log line per this long.
const FAILURE_LOG_EVERY: Duration = Duration::from_mins(1);

#[derive(Default)]
struct Slot {
    latest: Option<(Vec<AlertGroup>, Vec<ExhaustionAlert>)>,
    closed: bool,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

/// `tcp_liveness_alertmanager_pushes_total` and `…_push_failures_total`.
#[derive(Clone, Debug)]
pub(super) struct PushCounters {
    pub pushes: IntCounter,
    pub failures: IntCounter,
}

impl PushCounters {
    pub(super) fn new() -> Self {
        // Constant, valid names: creation cannot fail.
        let counter = |f: Family| IntCounter::new(f.name, f.help).expect("valid counter");
        Self {
            pushes: counter(ALERTMANAGER_PUSHES),
            failures: counter(ALERTMANAGER_PUSH_FAILURES),
        }
    }
}

pub(super) struct AlertmanagerClient {
    shared: Shared,
}

impl AlertmanagerClient {
    /// Starts the sender thread for Alertmanager at `base_url` (`http://host:9093` or
    /// `https://…`, reached with `http`'s TLS and basic auth settings), counting into `counters`.
    /// Firing alerts end `hold` after each send unless re-sent: long enough to survive a few
    /// skipped sends, short enough that alerts resolve by themselves if the agent dies.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(super) fn start(
        base_url: &str,
        http: &LoadedHttpConfig,
        hold: Duration,
        counters: PushCounters,
    ) -> std::io::Result<Self> {
        let base = base_url.trim_end_matches('/');
        let url = format!("{base}/api/v2/alerts");
        let shared: Shared = Arc::default();
        let worker = Worker {
            url,
            agent: http.agent(SEND_TIMEOUT),
            authorization: http.authorization().map(str::to_owned),
            hold,
            instance: hostname(),
            shared: Arc::clone(&shared),
            counters,
        };
        std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || {
                // Reads Alertmanager's answers: no capability (this thread starts before the
                // agent drops them).
                crate::privileges::drop_all_in_thread();
                worker.run();
            })?;
        Ok(Self { shared })
    }

    /// Hands the current groups to the sender thread (never blocks on the network).
    pub(super) fn push(&self, groups: Vec<AlertGroup>, exhaustion: Vec<ExhaustionAlert>) {
        let (slot, wake) = &*self.shared;
        crate::locks::lock(slot).latest = Some((groups, exhaustion));
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
    agent: ureq::Agent,
    /// `Authorization` header value (basic auth), if configured.
    authorization: Option<String>,
    hold: Duration,
    instance: String,
    shared: Shared,
    counters: PushCounters,
}

impl Worker {
    fn next(&self) -> Option<(Vec<AlertGroup>, Vec<ExhaustionAlert>)> {
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
        let mut state = PushState::default();
        let mut processes = ExhaustionPushState::default();
        let mut failures = FailureLog::default();
        while let Some((groups, exhaustion)) = self.next() {
            let now = SystemTime::now();
            let mut alerts = state.alerts(groups, now, self.hold, &self.instance);
            alerts.extend(processes.alerts(exhaustion, now, self.hold, &self.instance));
            if alerts.is_empty() {
                continue;
            }
            self.counters.pushes.inc();
            match post(
                &self.agent,
                &self.url,
                self.authorization.as_deref(),
                &alerts,
            ) {
                Ok(()) => {
                    state.delivered();
                    processes.delivered();
                    failures.succeeded(&self.url);
                }
                Err(error) => {
                    self.counters.failures.inc();
                    failures.failed(&self.url, &error);
                }
            }
        }
    }
}

/// Why one push did not reach Alertmanager.
#[derive(Debug, thiserror::Error)]
pub(super) enum PushError {
    /// No answer: connection refused, timeout, DNS, TLS (an unknown CA, a refused client
    /// certificate), …
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

fn post(
    agent: &ureq::Agent,
    url: &str,
    authorization: Option<&str>,
    alerts: &[PostableAlert],
) -> Result<(), PushError> {
    let mut request = agent.post(url);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let mut response = request
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
