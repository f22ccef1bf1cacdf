//! The scan loop: every interval, one complete scan ([`Scanner::scan`]), then the alert
//! transitions, then publish for HTTP and metrics. A failed stage is counted and logged, and what
//! it would have produced keeps its last good value: nothing is ever published as zeros.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use crate::{
    alerting::Alerting,
    export::{SnapshotStore, metrics::Metrics},
    scan::{ScanStage, Scanner},
};

/// What the loop publishes to.
pub(crate) struct Outputs {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
}

/// Scans every `interval` until `stop` turns true. Scans never overlap (each waits for the
/// previous one), and run off the async threads (they read memory and /proc).
pub(crate) async fn run(
    scanner: Arc<Scanner>,
    alerting: Alerting,
    outputs: Outputs,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // The alert tracker is only used by one scan at a time; the lock makes it movable into
    // the blocking task.
    let alerting = Arc::new(Mutex::new(alerting));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|&s| s) => return,
        }
        let (scanner, alerting) = (Arc::clone(&scanner), Arc::clone(&alerting));
        let store = Arc::clone(&outputs.store);
        let metrics = Arc::clone(&outputs.metrics);
        let scan = move || scan_and_publish(&scanner, &alerting, &store, &metrics);
        if let Err(error) = tokio::task::spawn_blocking(scan).await {
            // The previous scan stays published; /healthz and the stalled-scan rule see the age.
            tracing::error!(%error, "scan failed; keeping the previous results");
            outputs.metrics.scan_failed(ScanStage::Scan);
        }
    }
}

/// One scan, its alert transitions, and the publication of both.
fn scan_and_publish(
    scanner: &Scanner,
    alerting: &Mutex<Alerting>,
    store: &SnapshotStore,
    metrics: &Metrics,
) {
    let mut alerting = crate::locks::lock(alerting);
    let snapshot = scanner.scan(alerting.watched());
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
    if snapshot.failures.is_empty() {
        metrics.scan_succeeded(SystemTime::now());
    }
    store.publish(snapshot, alerting.detections().clone());
    // The previous snapshot and the scan's transient buffers were just freed.
    crate::memory::release_free_heap();
}
