//! The one way a feature joins the per-socket pipeline: it implements [`Feature`] and is
//! registered once ([`Pipeline::with_feature`](super::Pipeline::with_feature)). A feature
//! writes its state into every connection a pass judges ([`Annotator`]: before the verdicts,
//! at scans and `/connections` reads alike), follows each scan's live connections after their
//! verdicts ([`ScanPass`]), and adds its own entries to every snapshot's summary.

use super::Summary;
use crate::{model::Connection, verdict::Policy};

/// A feature of the pipeline (`[probe]`, `[[enforce]]`). Every hook has a default that does
/// nothing, so a feature implements only what it needs.
pub trait Feature: Send + Sync {
    /// A scan starts, before it reads anything (so what this returns may publish state the
    /// scan's [`annotator`](Self::annotator) then reads): the scan's own state for this
    /// feature, or None when it follows no scan.
    fn start_scan(&self) -> Option<Box<dyn ScanPass + '_>> {
        None
    }

    /// What this feature writes into each connection of one pass (a scan or a `/connections`
    /// read), taken once at the pass's start; None when it writes nothing.
    fn annotator(&self) -> Option<Box<dyn Annotator + '_>> {
        None
    }

    /// Adds this feature's own entries to a scan's summary (a gauge's label values at 0, so
    /// each series exists from the first scrape).
    fn summarize(&self, _summary: &mut Summary) {}
}

/// A feature's view of one pass.
pub trait Annotator {
    /// Writes the feature's state into `c` (converted, owner known, verdicts not yet judged),
    /// as of `now_ns` (`CLOCK_MONOTONIC`), under the pass's `policy`.
    fn annotate(&self, c: &mut Connection, now_ns: u64, policy: &Policy);
}

/// A feature's part in one scan.
pub trait ScanPass {
    /// One live connection of the scan, with its verdicts, under the scan's `policy`.
    fn observe(&mut self, c: &Connection, policy: &Policy);

    /// The scan's table pass ended; called after the pipeline released its locks (a
    /// `/connections` reader never waits for what a feature does here).
    fn finish(self: Box<Self>);
}

#[cfg(test)]
mod tests;
