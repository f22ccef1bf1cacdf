//! Read access to the kernel's per-socket table.

use monitor_common::SockActivity;

/// Read access to the per-socket table: the kernel maps in the agent, a vector in tests.
pub trait SocketSource: Send + Sync {
    /// Calls `f` for every entry (socket cookie, activity), in no particular order.
    fn for_each_socket(&self, f: &mut dyn FnMut(u64, &SockActivity));
}

/// A fixed table (tests, benchmarks).
impl SocketSource for Vec<(u64, SockActivity)> {
    fn for_each_socket(&self, f: &mut dyn FnMut(u64, &SockActivity)) {
        for (cookie, entry) in self {
            f(*cookie, entry);
        }
    }
}
