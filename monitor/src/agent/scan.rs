//! The scan loop: kernel table → Snapshot, published for HTTP and metrics.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::cgroups::CgroupCache;
use crate::{
    export::{SnapshotStore, metrics::Metrics},
    probes::Probes,
    seed,
    table::{self, Grouping, Snapshot, convert::SocketDefaults},
    verdict::{self, Policy},
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
    let cgroups = Arc::new(Mutex::new(CgroupCache::default()));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|&s| s) => return,
        }
        let (probes, context, cgroups) = (
            Arc::clone(&probes),
            Arc::clone(&context),
            Arc::clone(&cgroups),
        );
        let scan = move || {
            let mut cgroups = cgroups.lock().expect("cgroup cache lock");
            scan_once(&probes, &context, &mut cgroups)
        };
        match tokio::task::spawn_blocking(scan).await {
            Ok(snapshot) => {
                metrics.observe_scan(snapshot.scan_duration);
                store.publish(snapshot);
            }
            Err(error) => tracing::error!(%error, "scan failed"),
        }
    }
}

fn scan_once(probes: &Mutex<Probes>, context: &ScanContext, cgroups: &mut CgroupCache) -> Snapshot {
    let started = Instant::now();
    let probes = probes.lock().expect("probes lock");
    let now = seed::monotonic_now_ns();
    let connections = table::read::connections(&probes.maps, now, &context.defaults);
    let counters = probes.maps.counters().unwrap_or_else(|error| {
        tracing::warn!(%error, "reading kernel counters");
        Default::default()
    });
    let mut snapshot = Snapshot {
        tracked_sockets: connections.len(),
        connections,
        counters,
        table_capacity: probes.capacity,
        hooks: probes.hooks.clone(),
        scan_duration: Duration::ZERO,
        detections: Default::default(),
        grouping: context.grouping,
    };
    cgroups.annotate(&mut snapshot.connections);
    verdict::rules::apply(&mut snapshot, &context.policy);
    // Transition logs and the Alertmanager push; the cumulative counts feed
    // tcp_liveness_suspect_detections_total.
    let mut alerting = context.alerting.lock().unwrap_or_else(|e| e.into_inner());
    alerting.observe(&snapshot);
    snapshot.detections = alerting.detections().clone();
    snapshot.scan_duration = started.elapsed();
    snapshot
}

/// What a scan needs besides the maps; fixed for the agent's lifetime.
pub struct ScanContext {
    pub defaults: SocketDefaults,
    pub policy: Policy,
    pub grouping: Grouping,
    /// Remembers the previous scan's suspects (scans never overlap; the lock only makes it Sync).
    pub alerting: Mutex<super::alerting::Alerting>,
}
