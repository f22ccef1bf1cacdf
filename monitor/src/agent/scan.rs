//! The scan loop: kernel table → Snapshot, published for HTTP and metrics.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{
    export::{SnapshotStore, metrics::Metrics},
    probes::Probes,
    seed,
    table::{self, Snapshot},
};

pub async fn run_loop(
    probes: Arc<Mutex<Probes>>,
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|&s| s) => return,
        }
        let probes = Arc::clone(&probes);
        match tokio::task::spawn_blocking(move || scan_once(&probes)).await {
            Ok(snapshot) => {
                metrics.observe_scan(snapshot.scan_duration);
                store.publish(snapshot);
            }
            Err(error) => tracing::error!(%error, "scan failed"),
        }
    }
}

fn scan_once(probes: &Mutex<Probes>) -> Snapshot {
    let started = Instant::now();
    let probes = probes.lock().expect("probes lock");
    let now = seed::monotonic_now_ns();
    let connections = table::read::connections(&probes.maps, now);
    let counters = probes.maps.counters().unwrap_or_else(|error| {
        tracing::warn!(%error, "reading kernel counters");
        Default::default()
    });
    Snapshot {
        tracked_sockets: connections.len(),
        connections,
        counters,
        table_capacity: probes.capacity,
        hooks: probes.hooks.clone(),
        scan_duration: started.elapsed(),
    }
}
