//! Which local ports are services (something listens on them) and which are ephemeral.

use std::collections::HashSet;

use super::Connection;

/// The ports this host serves on: (network namespace, port) of every listening socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePorts(HashSet<(Option<u32>, u16)>);

impl ServicePorts {
    /// Records a listening socket.
    pub fn insert(&mut self, netns: Option<u32>, port: u16) {
        self.0.insert((netns, port));
    }

    /// The local port of `c` when it is a port something listens on (an accepted connection);
    /// None for outbound connections, whose local port is ephemeral: labelling or grouping by it
    /// would make one series or alert per leaked socket.
    #[must_use]
    pub fn service_port(&self, c: &Connection) -> Option<u16> {
        self.resolve(c.netns, c.local.port())
    }

    /// [`service_port`](Self::service_port) for a (namespace, local port) pair.
    #[must_use]
    pub fn resolve(&self, netns: Option<u32>, port: u16) -> Option<u16> {
        self.0.contains(&(netns, port)).then_some(port)
    }
}
