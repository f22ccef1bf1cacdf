//! The latest published scan, shared between the scan loop (writer) and the HTTP handlers and
//! the metrics collector (readers).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use super::health::Health;
use crate::{model::Reason, scan::Snapshot};

/// What one scan publishes: the scan's snapshot and the alerting's cumulative detections, read
/// together so a scrape never mixes two scans.
#[derive(Clone, Debug, Default)]
pub struct Published {
    pub snapshot: Snapshot,
    /// Connections newly found suspect since the agent started, per reason
    /// (`tcp_liveness_suspect_detections_total`).
    pub detections: BTreeMap<Reason, u64>,
}

/// Holds the most recent [`Published`] scan. Readers get an `Arc` and drop the lock at once, so a
/// slow scrape or a large answer never holds up the next scan.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    latest: RwLock<Arc<Published>>,
    // Separate from the snapshot because an empty snapshot is a valid scan result (no sockets),
    // while `/healthz` must tell "never scanned" apart from it.
    published: AtomicBool,
    /// `CLOCK_MONOTONIC` nanoseconds of the last scan with every stage succeeding; 0 for none.
    last_success_ns: AtomicU64,
}

impl SnapshotStore {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the latest scan.
    pub fn publish(&self, snapshot: Snapshot, detections: BTreeMap<Reason, u64>) {
        let published = Arc::new(Published {
            snapshot,
            detections,
        });
        // A poisoned lock only means a reader panicked while cloning an Arc: the data is intact.
        *crate::locks::write(&self.latest) = published;
        self.published.store(true, Ordering::Release);
    }

    /// The most recent scan (an empty one until the first [`publish`](Self::publish)).
    pub fn latest(&self) -> Arc<Published> {
        Arc::clone(&crate::locks::read(&self.latest))
    }

    /// Whether a scan has been published at least once.
    pub fn is_ready(&self) -> bool {
        self.published.load(Ordering::Acquire)
    }

    /// Records that a scan completed with every stage succeeding, at `CLOCK_MONOTONIC`
    /// nanoseconds `at_ns`.
    pub fn scan_succeeded(&self, at_ns: u64) {
        self.last_success_ns.store(at_ns.max(1), Ordering::Release);
    }

    /// [`Health`] as of `now_ns` (`CLOCK_MONOTONIC`); lock-free, so a scan stuck while
    /// publishing cannot hold up the answer.
    pub(crate) fn health(&self, now_ns: u64, stale_after: Duration) -> Health {
        let last_success = self.last_success_ns.load(Ordering::Acquire);
        Health::of(
            self.is_ready(),
            (last_success != 0).then_some(last_success),
            now_ns,
            stale_after,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_first_publish() {
        let store = SnapshotStore::new();
        assert!(!store.is_ready());
        assert!(store.latest().snapshot.suspects.is_empty());
        store.publish(
            Snapshot {
                tracked_sockets: 3,
                ..Snapshot::default()
            },
            BTreeMap::new(),
        );
        assert!(store.is_ready());
        assert_eq!(store.latest().snapshot.tracked_sockets, 3);
    }
}
