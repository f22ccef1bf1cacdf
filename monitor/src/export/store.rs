//! The latest snapshot, shared between the scan loop (writer) and HTTP handlers (readers).

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicBool, Ordering},
};

use crate::table::Snapshot;

/// Holds the most recent [`Snapshot`]. Readers get an `Arc` and drop the lock at once, so a slow
/// scrape or a large `/connections` answer never holds up the next scan.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    latest: RwLock<Arc<Snapshot>>,
    // Separate from the snapshot because an empty snapshot is a valid scan result (no sockets),
    // while `/healthz` must tell "never scanned" apart from it.
    published: AtomicBool,
}

impl SnapshotStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the latest snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        // A poisoned lock only means a reader panicked while cloning an Arc: the data is intact.
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.published.store(true, Ordering::Release);
    }

    /// The most recent snapshot (an empty one until the first [`publish`](Self::publish)).
    pub fn latest(&self) -> Arc<Snapshot> {
        Arc::clone(&self.latest.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether a snapshot has been published at least once.
    pub fn is_ready(&self) -> bool {
        self.published.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_first_publish() {
        let store = SnapshotStore::new();
        assert!(!store.is_ready());
        assert!(store.latest().suspects.is_empty());
        store.publish(Snapshot {
            tracked_sockets: 3,
            ..Snapshot::default()
        });
        assert!(store.is_ready());
        assert_eq!(store.latest().tracked_sockets, 3);
    }
}
