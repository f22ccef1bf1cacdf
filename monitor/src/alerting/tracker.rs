//! Alert transitions: one log line when a connection becomes suspect (or stops being), and the
//! detections counted for the metrics.
//!
//! The diffing ([`Tracker::diff`]) and the choice of lines ([`plan`]) are pure; only
//! [`Tracker::observe`] writes logs.

use std::{
    collections::{BTreeMap, hash_map::Entry},
    net::SocketAddr,
    time::Duration,
};

use super::groups;
use crate::{
    model::{Comm, Connection, Reason, format::seconds},
    scan::{Cookies, Snapshot, kernel_state::FastMap},
};

/// What is remembered about a suspect connection, so its "cleared" line can still name it after
/// the socket is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub cookie: u64,
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: Option<u32>,
}

impl From<&Connection> for Seen {
    fn from(c: &Connection) -> Self {
        Self {
            cookie: c.cookie,
            pid: c.pid,
            comm: c.comm,
            local: c.local,
            remote: c.remote,
            netns: c.netns,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Change {
    New,
    Cleared,
}

/// One connection entering or leaving one reason.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Event {
    pub change: Change,
    pub reason: Reason,
    pub conn: Seen,
    /// New: how long it has been in trouble. Cleared: unknown.
    pub age: Option<Duration>,
    /// Cleared: the socket is gone (rather than recovered).
    pub closed: bool,
}

/// Per-reason counts of one scan's transitions (non-zero only, in reason order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub new: Vec<(Reason, usize)>,
    pub cleared: Vec<(Reason, usize)>,
}

fn count(events: &[Event], change: Change) -> Vec<(Reason, usize)> {
    let mut counts = BTreeMap::new();
    for e in events.iter().filter(|e| e.change == change) {
        *counts.entry(e.reason).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Suspect (connection, reason) pairs from one scan to the next.
#[derive(Debug)]
pub(super) struct Tracker {
    /// Each pair as first seen, and the last scan (a count of [`diff`](Self::diff) calls) that
    /// had it: updated in place, so a host with a steady crowd of suspects (idle pools without
    /// keepalive) re-inserts nothing from one scan to the next.
    suspects: FastMap<(u64, Reason), (Seen, u64)>,
    /// Scans diffed so far.
    scans: u64,
    detections: BTreeMap<Reason, u64>,
    log_limit: usize,
}

impl Tracker {
    /// `log_limit`: individual lines per scan before the rest is summarized per reason.
    pub(super) fn new(log_limit: usize) -> Self {
        Self {
            suspects: FastMap::default(),
            scans: 0,
            // Every reason from the start, so the counter exists at 0 before the first detection.
            detections: Reason::ALL.into_iter().map(|r| (r, 0)).collect(),
            log_limit,
        }
    }

    /// New detections per reason since the agent started.
    pub(super) fn detections(&self) -> &BTreeMap<Reason, u64> {
        &self.detections
    }

    /// The cookies of the previous scan's suspects: the next scan reports which are still open
    /// ([`Snapshot::watched_open`]).
    pub(super) fn watched(&self) -> Cookies {
        self.suspects.keys().map(|(cookie, _)| *cookie).collect()
    }

    /// Compares `snapshot` with the previous one: new events in snapshot order, then cleared ones
    /// by reason and cookie. Updates the state and the detection counts; logs nothing.
    pub(super) fn diff(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        self.scans += 1;
        let scan = self.scans;
        let mut events = Vec::new();
        for c in &snapshot.suspects {
            for &reason in &c.suspect {
                match self.suspects.entry((c.cookie, reason)) {
                    Entry::Occupied(mut known) => known.get_mut().1 = scan,
                    Entry::Vacant(new) => {
                        *self.detections.entry(reason).or_default() += 1;
                        events.push(Event {
                            change: Change::New,
                            reason,
                            conn: Seen::from(c),
                            age: groups::age(c, reason),
                            closed: false,
                        });
                        new.insert((Seen::from(c), scan));
                    }
                }
            }
        }
        let mut cleared = Vec::new();
        self.suspects.retain(|&key, (seen, last)| {
            if *last == scan {
                return true;
            }
            cleared.push((key, seen.clone()));
            false
        });
        if !cleared.is_empty() {
            let open = &snapshot.watched_open;
            cleared.sort_by_key(|((cookie, reason), _)| (*reason, *cookie));
            events.extend(cleared.into_iter().map(|((cookie, reason), conn)| Event {
                change: Change::Cleared,
                reason,
                conn,
                age: None,
                closed: !open.contains(&cookie),
            }));
        }
        events
    }

    /// One scan: diff, log (rate-limited), and the per-reason counts.
    pub(super) fn observe(&mut self, snapshot: &Snapshot) -> Transitions {
        let events = self.diff(snapshot);
        let (lines, rest) = plan(&events, self.log_limit);
        lines.iter().for_each(log_event);
        for (change, reason, more) in rest {
            let reason = reason.as_str();
            match change {
                Change::New => tracing::warn!(reason, more, "and {more} more {reason}"),
                Change::Cleared => tracing::info!(reason, more, "and {more} more {reason} cleared"),
            }
        }
        Transitions {
            new: count(&events, Change::New),
            cleared: count(&events, Change::Cleared),
        }
    }
}

/// The first `limit` events get a line each; the rest are counted per (change, reason).
pub(super) fn plan(events: &[Event], limit: usize) -> (&[Event], Vec<(Change, Reason, usize)>) {
    let (lines, rest) = events.split_at(events.len().min(limit));
    let mut counts: BTreeMap<(Change, Reason), usize> = BTreeMap::new();
    for e in rest {
        *counts.entry((e.change, e.reason)).or_default() += 1;
    }
    let summary = counts.into_iter().map(|((c, r), n)| (c, r, n)).collect();
    (lines, summary)
}

fn log_event(e: &Event) {
    let (reason, c) = (e.reason.as_str(), &e.conn);
    let comm = c.comm.as_deref();
    match e.change {
        Change::New => tracing::warn!(
            reason,
            pid = c.pid,
            comm,
            local = %c.local,
            remote = %c.remote,
            netns = c.netns,
            age_seconds = seconds(e.age),
            remedy = e.reason.remedy(),
            "suspect connection: {reason}"
        ),
        Change::Cleared => tracing::info!(
            reason,
            pid = c.pid,
            comm,
            local = %c.local,
            remote = %c.remote,
            netns = c.netns,
            closed = e.closed,
            "suspect connection cleared: {reason}"
        ),
    }
}

#[cfg(test)]
mod tests;
