//! The scan loop: one streaming pass over the kernel table → Snapshot, published for HTTP and
//! metrics.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{
    export::{SnapshotStore, metrics::Metrics},
    probes::Probes,
    seed,
    table::{Grouping, Snapshot, pipeline::Pipeline, read::SocketSource, summary::SnapshotBuilder},
};

pub async fn run_loop(
    probes: Arc<Mutex<Probes>>,
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    interval: Duration,
    context: ScanContext,
    mut stop: watch::Receiver<bool>,
) {
    let context = Arc::new(context);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|&s| s) => return,
        }
        let (probes, context) = (Arc::clone(&probes), Arc::clone(&context));
        let scan = move || {
            let started = Instant::now();
            let mut snapshot = scan_once(&context, seed::monotonic_now_ns());
            let probes = probes.lock().expect("probes lock");
            snapshot.counters = probes.maps.counters().unwrap_or_else(|error| {
                tracing::warn!(%error, "reading kernel counters");
                Default::default()
            });
            snapshot.table_capacity = probes.capacity;
            snapshot.hooks = probes.hooks.clone();
            snapshot.scan_duration = started.elapsed();
            snapshot
        };
        match tokio::task::spawn_blocking(scan).await {
            Ok(snapshot) => {
                metrics.observe_scan(snapshot.scan_duration);
                store.publish(snapshot);
                // The previous snapshot and the scan's transient buffers were just freed.
                crate::memory::release_free_heap();
            }
            Err(error) => tracing::error!(%error, "scan failed"),
        }
    }
}

/// One pass over the table as of `now_ns`, then the alert transitions. Leaves the counters,
/// hooks, capacity and duration to the caller.
pub fn scan_once(context: &ScanContext, now_ns: u64) -> Snapshot {
    // Scans never overlap; the lock only makes the tracker Sync.
    let mut alerting = context.alerting.lock().unwrap_or_else(|e| e.into_inner());
    let mut builder = SnapshotBuilder::new(context.grouping, alerting.tracker.watched());
    context
        .pipeline
        .scan(context.source.as_ref(), now_ns, &mut |c| builder.add(c));
    let mut snapshot = builder.finish();
    // Transition logs and the Alertmanager push; the cumulative counts feed
    // tcp_liveness_suspect_detections_total.
    alerting.observe(&snapshot);
    snapshot.detections = alerting.detections().clone();
    snapshot
}

/// What a scan needs besides the probes; fixed for the agent's lifetime.
pub struct ScanContext {
    pub source: Arc<dyn SocketSource>,
    /// Shared with `/connections`.
    pub pipeline: Arc<Pipeline>,
    pub grouping: Grouping,
    pub alerting: Mutex<super::alerting::Alerting>,
}
