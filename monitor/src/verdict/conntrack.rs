//! The host's own conntrack as a path nobody configured: a flow tracked in the socket's own
//! network namespace or the host's is forgotten once idle for that namespace's
//! `nf_conntrack_tcp_timeout_established`. Which connections are worth asking the kernel about
//! ([`worth_asking`]: cheap, for every socket of a scan), and the rule once the kernel's entry
//! is known ([`beyond_conntrack`]). A configured `[[path]]` matching the connection wins.

use std::time::Duration;

use monitor_common::tcp_state;

use super::{Policy, rules::outlives_path};
use crate::model::Connection;

/// The path label of a connection found by its conntrack entry: no `[[path]]` may take it.
pub const CONNTRACK_PATH: &str = "conntrack";

/// Whether the kernel's conntrack entry of `c` is worth asking for: ESTABLISHED, conntrack in
/// its own namespace or the host's (`host`: the agent's namespace's
/// `nf_conntrack_tcp_timeout_established`), idle past `path_timeout_share` of the shorter
/// timeout, nothing keeping it alive before that timeout, and no `[[path]]` matching it. A
/// socket that is not ESTABLISHED or has no conntrack costs one or two comparisons.
#[must_use]
pub fn worth_asking(c: &Connection, policy: &Policy, host: Option<Duration>) -> bool {
    if c.state != tcp_state::ESTABLISHED {
        return false;
    }
    let timeout = match (c.conntrack_timeout, host) {
        (Some(own), Some(host)) => own.min(host),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return false,
    };
    c.idle
        .is_some_and(|idle| idle > policy.path_timeout_share.of(timeout))
        && outlives_path(c, timeout)
        && policy.path_of(c).is_none()
}

/// `idle_beyond_path_timeout` by the connection's conntrack entry ([`Connection::conntrack`]):
/// idle past the share of its namespace's timeout, with nothing keeping it alive in time.
pub(super) fn beyond_conntrack(c: &Connection, policy: &Policy) -> bool {
    c.conntrack.is_some_and(|found| {
        c.idle
            .is_some_and(|idle| idle > policy.path_timeout_share.of(found.timeout))
            && outlives_path(c, found.timeout)
    })
}

#[cfg(test)]
mod tests;
