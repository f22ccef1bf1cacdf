//! At start, probing or not: puts back the application's options on the sockets a previous agent
//! was probing when it died ([`super::journal`]). For each journalled socket still there (same
//! cookie in the same namespace) that still carries the probe's options, the application's
//! options go back through the same `iter_tcp_sockopt` program the probe thread uses; a socket
//! whose options changed since (the application set its own) is left alone, a gone one dropped.

use std::sync::Arc;

use monitor_common::sockopt::{OUTCOME_DONE, SockoptRequest};

use super::{
    journal::{Journal, JournalEntry},
    machine::is_restored,
    thread::{Namespaces, apply_in, by_netns},
};
use crate::bpf::SockoptControl;

/// What to do with one journalled socket, from its options as read now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Not in its namespace any more (closed, or the namespace is gone): nothing to put back.
    Gone,
    /// Its options are no longer the probe's: the application's own, left as they are.
    Changed,
    /// Still the probe's options: the application's go back.
    Restore,
}

/// How the journal was settled: sockets by [`Decision`], and those that could not be put back
/// (kept in the journal for the next start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub restored: usize,
    pub gone: usize,
    pub changed: usize,
    pub failed: usize,
}

/// `entry`'s fate, from `read`: the outcome of a request that sets nothing in the entry's
/// namespace (the socket's options in `before`; None or not seen: the socket is gone).
#[must_use]
pub(super) fn decide(entry: &JournalEntry, read: Option<&SockoptRequest>) -> Decision {
    match read {
        Some(read) if read.outcome == OUTCOME_DONE => {
            if entry.carries_probe_options(&read.before) {
                Decision::Restore
            } else {
                Decision::Changed
            }
        }
        _ => Decision::Gone,
    }
}

/// Settles every entry of `journal` (see the module), logs one line per socket put back and a
/// summary; what is left (the entries that failed) stays in `journal`, for the caller to write.
/// Runs with the capabilities of start-up: entering a namespace needs `CAP_SYS_ADMIN`.
pub fn restore_journalled(control: &Arc<SockoptControl>, journal: &mut Journal) -> Recovery {
    let mut recovery = Recovery::default();
    if journal.is_empty() {
        return recovery;
    }
    let mut namespaces = Namespaces::default();
    let entries: Vec<JournalEntry> = journal.entries().copied().collect();
    for (netns, batch) in by_netns(entries, |e| e.netns) {
        let settled = settle_namespace(control, &mut namespaces, netns, &batch);
        for (entry, outcome) in batch.iter().zip(settled) {
            match outcome {
                Settled::Restored => {
                    recovery.restored += 1;
                    tracing::info!(
                        action = "probe_recover",
                        netns,
                        cookie = entry.cookie,
                        local = %entry.local,
                        remote = %entry.remote,
                        options = ?entry.original,
                        "probe options left by a stopped agent removed: the application's \
                         options put back"
                    );
                }
                Settled::Gone => recovery.gone += 1,
                Settled::Changed => recovery.changed += 1,
                Settled::Failed => {
                    recovery.failed += 1;
                    continue;
                }
            }
            journal.remove(entry.cookie);
        }
    }
    tracing::info!(
        journal = %journal.path().display(),
        restored = recovery.restored,
        gone = recovery.gone,
        changed_by_application = recovery.changed,
        failed = recovery.failed,
        "probe journal of a previous agent settled"
    );
    recovery
}

/// One entry's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Restored,
    Gone,
    Changed,
    /// The namespace could not be entered, or the options not all put back.
    Failed,
}

/// Reads the options of `batch`'s sockets in `netns`, then restores those that still carry
/// the probe's; each entry's outcome, in order.
fn settle_namespace(
    control: &Arc<SockoptControl>,
    namespaces: &mut Namespaces,
    netns: u32,
    batch: &[JournalEntry],
) -> Vec<Settled> {
    if namespaces.find(netns).is_none() {
        return vec![Settled::Gone; batch.len()];
    }
    let reads = batch
        .iter()
        .map(|e| (e.cookie, SockoptRequest::default()))
        .collect();
    let Some(read) = apply_in(control, namespaces, netns, reads) else {
        return vec![Settled::Failed; batch.len()];
    };
    let decisions: Vec<Decision> = batch
        .iter()
        .map(|e| decide(e, read.get(&e.cookie)))
        .collect();
    let restores = batch
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| **d == Decision::Restore)
        .map(|(e, _)| (e.cookie, e.restore_request()))
        .collect();
    let outcomes = apply_in(control, namespaces, netns, restores);
    batch
        .iter()
        .zip(decisions)
        .map(|(entry, decision)| match decision {
            Decision::Gone => Settled::Gone,
            Decision::Changed => Settled::Changed,
            Decision::Restore => match outcomes.as_ref().and_then(|r| r.get(&entry.cookie)) {
                Some(outcome) if outcome.outcome != OUTCOME_DONE => Settled::Gone,
                Some(outcome) if is_restored(outcome) => Settled::Restored,
                _ => Settled::Failed,
            },
        })
        .collect()
}
