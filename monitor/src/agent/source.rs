//! Where the agent reads the socket table from: built here, once, for the scan and `/connections`.

use std::sync::{Arc, Mutex};

use crate::{probes::Probes, table::read::SocketSource};

/// The socket table of the loaded probes.
pub fn socket_source(probes: &Arc<Mutex<Probes>>) -> Arc<dyn SocketSource> {
    Arc::new(LockedProbes(Arc::clone(probes)))
}

/// Reads the table under the probes' lock (the maps are owned by `Probes`); to be replaced by a
/// lock-free reader of the map.
struct LockedProbes(Arc<Mutex<Probes>>);

impl SocketSource for LockedProbes {
    fn for_each_socket(&self, f: &mut dyn FnMut(u64, &monitor_common::SockActivity)) {
        let probes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        probes.maps.for_each_socket(f);
    }
}
