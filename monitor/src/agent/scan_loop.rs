//! The scan thread: every interval, one complete scan ([`Scanner::scan`]), then `[[remediate]]`
//! on its confirmed suspects, then the alert transitions, then publish for HTTP and metrics. A
//! failed stage is counted and logged, and what it would have produced keeps its last good
//! value: nothing is ever published as zeros.
//!
//! A thread of its own, not the runtime's shared blocking pool: HTTP readers (`/connections`
//! streams to slow clients) hold threads of that pool, and must never delay a scan.

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    act::remediate::Remediator,
    alerting::Alerting,
    config::RunConfig,
    error::Error,
    export::{SnapshotStore, metrics::Metrics},
    model::format::counted,
    periodic::Periodic,
    scan::{
        ScanStage, Scanner, Snapshot,
        forecast::{self, Forecaster},
    },
};

/// What the loop publishes to.
pub(crate) struct Outputs {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
}

/// The running scan thread. Scans never overlap: each starts `interval` after the previous one
/// started, or at once when that one took longer. Dropping it stops the thread (at once when it
/// is between scans, else after the current scan) and joins it.
pub(crate) struct ScanThread {
    _thread: Periodic,
}

impl ScanThread {
    /// Starts scanning, the first scan at once; `remediator` (None without `[[remediate]]`)
    /// acts after each scan; then the processes holding the most suspects get their time to
    /// descriptor exhaustion, alerted on within `fd_exhaustion_horizon`. Scans come every
    /// `scan_interval` of `config`.
    ///
    /// # Errors
    /// The thread could not be started ([`Error::Thread`]).
    pub(crate) fn start(
        scanner: Arc<Scanner>,
        mut remediator: Option<Remediator>,
        mut alerting: Alerting,
        outputs: Outputs,
        config: &RunConfig,
    ) -> Result<Self, Error> {
        let (interval, fd_exhaustion_horizon) =
            (config.scan_interval, config.fd_exhaustion_horizon);
        let mut first_scan = true;
        let mut forecaster = Forecaster::default();
        let thread = Periodic::start("scan", move || {
            let started = Instant::now();
            let scan = AssertUnwindSafe(|| {
                let mut snapshot = scanner.scan(alerting.watched());
                snapshot.fd_exhaustion_horizon = fd_exhaustion_horizon;
                forecast(&mut forecaster, &mut snapshot);
                publish(
                    snapshot,
                    &scanner,
                    remediator.as_mut(),
                    &mut alerting,
                    &outputs,
                );
            });
            let outcome = std::panic::catch_unwind(scan);
            if outcome.is_ok() && std::mem::take(&mut first_scan) {
                log_first_scan(&scanner, &outputs.store);
            }
            if outcome.is_err() {
                // The previous scan stays published; /healthz and the stalled-scan rule see its
                // age.
                tracing::error!("scan failed; keeping the previous results");
                outputs.metrics.scan_failed(ScanStage::Scan);
            }
            interval.saturating_sub(started.elapsed())
        })
        .map_err(|source| Error::Thread {
            name: "scan",
            source,
        })?;
        Ok(Self { _thread: thread })
    }
}

/// What the agent found, once, so the start-up log says more than "listening": the sockets
/// tracked, the network namespaces whose settings were read (0 until they are, when the agent
/// does not enter namespaces), and the suspect connections.
fn log_first_scan(scanner: &Scanner, store: &SnapshotStore) {
    let published = store.latest();
    let snapshot = &published.snapshot;
    tracing::info!(
        "first scan: {} in {}, {}",
        counted(snapshot.tracked_sockets, "socket"),
        counted(scanner.pipeline().namespaces_read(), "namespace"),
        counted(snapshot.suspects.len(), "suspect")
    );
}

/// Reads the descriptors of the processes holding the most suspects and forecasts when each
/// runs out; its time counts in the scan's duration.
fn forecast(forecaster: &mut Forecaster, snapshot: &mut Snapshot) {
    let started = Instant::now();
    let candidates = forecast::candidates(&snapshot.suspects, snapshot.grouping);
    let now = Duration::from_nanos(crate::clock::monotonic_now_ns());
    snapshot.forecasts = forecaster.observe(now, candidates, forecast::procfs::read);
    snapshot.scan_duration += started.elapsed();
}

/// A scan's remediation, its alert transitions, and the publication of all.
fn publish(
    mut snapshot: Snapshot,
    scanner: &Scanner,
    remediator: Option<&mut Remediator>,
    alerting: &mut Alerting,
    outputs: &Outputs,
) {
    let Outputs { store, metrics } = outputs;
    if let Some(remediator) = remediator {
        remediate(remediator, scanner, &mut snapshot);
    }
    for failure in &snapshot.failures {
        tracing::warn!(
            stage = failure.stage.as_str(),
            error = %failure.error,
            "scan stage failed; publishing its last good values"
        );
        metrics.scan_failed(failure.stage);
    }
    // Transition logs and the Alertmanager push.
    alerting.observe(&snapshot);
    metrics.observe_scan(snapshot.scan_duration);
    metrics.stale_removed(snapshot.stale_removed);
    // Success first: /healthz must not see the first scan published but not yet successful.
    if snapshot.failures.is_empty() {
        metrics.scan_succeeded(SystemTime::now());
        store.scan_succeeded(crate::clock::monotonic_now_ns());
    }
    store.publish(snapshot, alerting.detections().clone());
    // The previous snapshot and the scan's transient buffers were just freed.
    crate::memory::release_free_heap();
}

/// `[[remediate]]` on the scan's confirmed suspects, before anything reads the snapshot: this
/// scan's alerts and metrics show what was done ([`Snapshot::remediations`]). Its time counts in
/// the scan's duration, as the scan's last step.
fn remediate(remediator: &mut Remediator, scanner: &Scanner, snapshot: &mut Snapshot) {
    let started = Instant::now();
    snapshot.remediations = remediator.act(scanner.pipeline(), &snapshot.suspects);
    snapshot.scan_duration += started.elapsed();
}
