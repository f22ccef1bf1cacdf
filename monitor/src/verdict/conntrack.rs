//! The host's own conntrack as a path nobody configured: a flow tracked in the socket's own
//! network namespace or the host's is forgotten once idle for that namespace's
//! `nf_conntrack_tcp_timeout_established`. Which connections are worth asking the kernel about
//! ([`Candidates`]: cheap, for every socket of a scan), and the rule once the kernel's entry
//! is known ([`beyond_conntrack`]). A configured `[[path]]` matching the connection wins.

use std::time::Duration;

use monitor_common::tcp_state;

use super::{Policy, Share, rules::outlives_path};
use crate::model::Connection;

/// The path label of a connection found by its conntrack entry: no `[[path]]` may take it.
pub const CONNTRACK_PATH: &str = "conntrack";

/// Which connections of one scan are worth asking the kernel about (their conntrack entry):
/// ESTABLISHED, conntrack in their own namespace or the host's, idle past
/// `path_timeout_share` of the shorter timeout, nothing keeping them alive before that timeout,
/// and no `[[path]]` matching them. The share is applied once per distinct timeout (not per
/// socket), so a socket that is not a candidate costs a few comparisons.
#[derive(Clone, Copy, Debug)]
pub struct Candidates {
    share: Share,
    /// The agent's own namespace's `nf_conntrack_tcp_timeout_established`.
    host: Option<Duration>,
    /// The last timeout met, and its share.
    last: (Option<Duration>, Option<Duration>),
}

impl Candidates {
    /// For a scan under `policy`, with `host` the agent's namespace's timeout (None: no
    /// conntrack there).
    #[must_use]
    pub fn new(policy: &Policy, host: Option<Duration>) -> Self {
        Self {
            share: policy.path_timeout_share,
            host,
            last: (None, None),
        }
    }

    /// Whether `c` is worth asking about (see [`Candidates`]).
    pub fn worth_asking(&mut self, c: &Connection, policy: &Policy) -> bool {
        if c.state != tcp_state::ESTABLISHED {
            return false;
        }
        let timeout = match (c.conntrack_timeout, self.host) {
            (Some(own), Some(host)) => Some(own.min(host)),
            (own, host) => own.or(host),
        };
        if timeout != self.last.0 {
            self.last = (timeout, timeout.map(|t| self.share.of(t)));
        }
        let (Some(timeout), Some(report_after)) = self.last else {
            return false;
        };
        c.idle.is_some_and(|idle| idle > report_after)
            && outlives_path(c, timeout)
            && policy.path_of(c).is_none()
    }
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
