//! Where the agent reads the socket table from: built here, once, for the scan and `/connections`.

use std::sync::{Arc, Mutex};

use crate::{probes::Probes, table::read::SocketSource};

/// The socket table of the loaded probes: their memory mapping, read without taking the probes'
/// lock, so a `/connections` request never waits for a scan (or the reverse).
pub fn socket_source(probes: &Arc<Mutex<Probes>>) -> Arc<dyn SocketSource> {
    let probes = probes.lock().unwrap_or_else(|e| e.into_inner());
    probes.maps.reader()
}
