//! A verdict is raised only once the socket's kernel state at that scan confirms it.
//!
//! The table's values are the hooks' (live) and the last kernel read's (which on a large host
//! may be half a minute old). When a scan finds a connection suspect for a reason not confirmed
//! before, it asks the kernel about that one socket now (an exact `sock_diag` query,
//! [`SocketQueries`]), puts the kernel's answer over the values it judged on ([`overlay`]) and
//! judges again: only the reasons that hold on the kernel's current state are raised. A socket
//! the kernel no longer has is gone. Confirmed reasons are remembered while the connection stays
//! suspect, so a lasting verdict costs one query, not one per scan.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    held_state::{more_recent, most_recent_idle},
    kernel_state::FastMap,
};
use crate::{
    model::{Connection, Keepalive, Reason},
    sock_diag::{DiagSocket, SocketKey, SocketQueries},
};

/// Queries per scan at most (~10–20 µs each): a burst of new suspects beyond it is confirmed
/// over the next scans.
pub(crate) const MAX_QUERIES_PER_SCAN: usize = 1024;

/// The reasons confirmed for each suspect connection, by cookie.
pub(crate) type Confirmed = FastMap<u64, Vec<Reason>>;

/// What confirming one suspect connection decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its reasons are the ones the kernel's state confirms (possibly none).
    Judged,
    /// The kernel has no such socket any more.
    Gone,
}

/// Confirmation state across scans: the netlink sockets, and what was confirmed.
#[derive(Default)]
pub(crate) struct Confirmer {
    queries: SocketQueries,
    /// Confirmed at an earlier scan (read during a scan).
    before: Arc<Confirmed>,
    /// Confirmed at this scan (built during it).
    now: Confirmed,
    queried: usize,
    /// When this scan began: sockets not used since are closed at its end.
    scan_began: Option<Instant>,
    /// Queries that failed (namespace not enterable, netlink error), since the start.
    pub(crate) errors: u64,
}

impl Confirmer {
    /// Starts a scan.
    pub(crate) fn start_scan(&mut self) {
        self.now = Confirmed::default();
        self.queried = 0;
        self.scan_began = Some(Instant::now());
    }

    /// Ends a scan: what it confirmed is what the next scan (and `/connections` until then)
    /// treats as confirmed. Returns it. The netlink sockets of namespaces this scan did not ask
    /// about are closed: each holds its namespace alive (a deleted pod's would outlive the pod
    /// while other namespaces keep raising suspects), and reopening one costs ~0.1 ms when a
    /// suspect appears there.
    pub(crate) fn end_scan(&mut self) -> Arc<Confirmed> {
        if let Some(began) = self.scan_began.take() {
            self.queries.close_unused_since(began);
        }
        self.before = Arc::new(std::mem::take(&mut self.now));
        Arc::clone(&self.before)
    }

    /// Confirms suspect `c` (its `suspect` already judged on the table's values): reasons
    /// confirmed before are kept as they are; otherwise the kernel is asked and `judge` (the
    /// verdict rules) runs again on its answer. When the kernel cannot be asked (a failed query,
    /// or this scan's query budget spent), the reasons not yet confirmed wait for a later scan —
    /// except after a failed query, where the verdict stands unconfirmed rather than be lost
    /// (counted in `errors`).
    pub(crate) fn confirm(
        &mut self,
        c: &mut Connection,
        key: Option<SocketKey>,
        judge: impl Fn(&Connection) -> Vec<Reason>,
    ) -> Outcome {
        let known = self.before.get(&c.cookie);
        if known.is_some_and(|known| c.suspect.iter().all(|r| known.contains(r))) {
            self.now.insert(c.cookie, c.suspect.clone());
            return Outcome::Judged;
        }
        let answer = match key {
            Some(key) if self.queried < MAX_QUERIES_PER_SCAN => {
                self.queried += 1;
                self.queries.query(&key)
            }
            _ => {
                // Not asked this scan: only what was confirmed before stands.
                c.suspect.retain(|r| known.is_some_and(|k| k.contains(r)));
                self.remember(c);
                return Outcome::Judged;
            }
        };
        match answer {
            Ok(Some(kernel)) => {
                overlay(c, &kernel);
                c.suspect = judge(c);
            }
            Ok(None) => return Outcome::Gone,
            Err(error) => {
                self.errors += 1;
                tracing::debug!(%error, cookie = c.cookie, "confirming a verdict");
            }
        }
        self.remember(c);
        Outcome::Judged
    }

    /// The per-namespace exact-query sockets (remediation looks and destroys through them).
    pub(crate) fn queries(&mut self) -> &mut SocketQueries {
        &mut self.queries
    }

    fn remember(&mut self, c: &Connection) {
        if !c.suspect.is_empty() {
            self.now.insert(c.cookie, c.suspect.clone());
        }
    }
}

/// `c` with the kernel's current answer about its socket (`sock_diag` with `tcp_info`): its
/// state (a different one than judged on means a transition the table has not caught: its age
/// is unknown), the last data sent (`tcpi_last_data_sent`, unless a retransmission timeout is
/// outstanding: `tcpi_retransmits` > 0) and received
/// (`tcpi_last_data_recv`), the peer's last ACK (`tcpi_last_ack_recv`; each the more recent of
/// the two, and `idle` the most recent of the three), retransmits and bytes in flight, and
/// keepalive on when the keepalive timer is pending.
pub(crate) fn overlay(c: &mut Connection, kernel: &DiagSocket) {
    if kernel.state != c.state {
        c.state = kernel.state;
        c.state_age = None;
        c.state_age_at_least = Some(Duration::ZERO);
    }
    if let Some(info) = &kernel.tcp_info {
        let ms = |v: u32| Some(Duration::from_millis(v.into()));
        // The last pass over the held sockets may be many seconds old (they are paced): a
        // half-close still moving data is not stuck, whatever that pass read.
        if info.retransmits == 0 {
            // A retransmission moves `lsndtime` too: while the retransmission timer runs the
            // peer is silent, and `peer_unresponsive` dates that silence from older evidence.
            c.since_send = more_recent(c.since_send, ms(info.last_data_sent_ms));
        }
        c.since_recv = more_recent(c.since_recv, ms(info.last_data_recv_ms));
        c.since_peer = more_recent(c.since_peer, ms(info.last_ack_recv_ms));
        most_recent_idle(c);
        c.retransmits = c.retransmits.max(info.total_retrans);
        if let (Some(sent), Some(retrans), Some(acked)) =
            (info.bytes_sent, info.bytes_retrans, info.bytes_acked)
        {
            let unacked = sent.saturating_sub(retrans).saturating_sub(acked);
            c.unacked_bytes = Some(u32::try_from(unacked).unwrap_or(u32::MAX));
        }
    }
    // A running keepalive probe's timer is ours, not the application's.
    let probing = c.probe.is_some_and(|p| p.in_progress);
    if kernel.keepalive_timer && !probing {
        let timers = c.keepalive.unwrap_or(Keepalive {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
        });
        c.keepalive = Some(Keepalive {
            enabled: true,
            ..timers
        });
    }
}

/// The query key of `c`: None without its namespace (it cannot be asked).
pub(crate) fn key_of(c: &Connection) -> Option<SocketKey> {
    Some(SocketKey::new(c.netns?, c.local, c.remote, c.cookie))
}

#[cfg(test)]
mod tests;
