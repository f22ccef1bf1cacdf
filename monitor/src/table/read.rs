//! Reads the kernel table into [`Connection`]s.

use monitor_common::tcp_state;

use super::{Connection, convert};
use crate::probes::KernelMaps;

/// Read access to the per-socket table: the kernel maps in the agent, a vector in tests.
pub trait SocketSource: Send + Sync {
    /// Calls `f` for every entry (socket cookie, activity), in no particular order.
    fn for_each_socket(&self, f: &mut dyn FnMut(u64, &monitor_common::SockActivity));
}

/// Every tracked socket as of `now_ns`. TIME_WAIT and CLOSE are never live entries; skip any
/// straggler so counts match what `ss` shows for live sockets.
pub fn connections(
    maps: &KernelMaps,
    now_ns: u64,
    defaults: &convert::SocketDefaults,
) -> Vec<Connection> {
    let mut connections = Vec::new();
    maps.for_each_socket(&mut |cookie, entry| {
        if entry.state != tcp_state::CLOSE && entry.state != tcp_state::TIME_WAIT {
            connections.push(convert::connection(cookie, entry, now_ns, defaults));
        }
    });
    connections
}
