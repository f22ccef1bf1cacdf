//! Who a connection is counted against in bounded-cardinality outputs (the `CLOSE_WAIT` metrics
//! and the alert groups): its process name, or its cgroup with `group_by = "cgroup"`.

use std::sync::Arc;

use super::{Comm, Connection, labels};

/// Top-N settings for owner-labelled metrics and alert groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grouping {
    /// Owners kept as their own series; the rest are folded into [`labels::OTHER`].
    pub top_n: usize,
    /// Owners are cgroup v2 paths (containers, systemd units) instead of process names.
    pub by_cgroup: bool,
}

impl Default for Grouping {
    fn default() -> Self {
        Self {
            top_n: 20,
            by_cgroup: false,
        }
    }
}

/// The owner of one connection under a [`Grouping`], before it becomes a label (no allocation
/// per socket: a name is inline, a cgroup is shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The owning process's `comm`.
    Process(Comm),
    /// The owning process's cgroup v2 path.
    Cgroup(Arc<str>),
    /// Not known (no owner seen yet, or no cgroup when grouping by cgroup).
    Unknown,
}

impl Owner {
    /// `c`'s owner: its cgroup when `grouping.by_cgroup`, else its process name.
    #[must_use]
    pub fn of(c: &Connection, grouping: Grouping) -> Self {
        match (grouping.by_cgroup, c.comm, &c.cgroup) {
            (true, _, Some(cgroup)) => Owner::Cgroup(Arc::clone(cgroup)),
            (false, Some(comm), _) => Owner::Process(comm),
            _ => Owner::Unknown,
        }
    }

    /// The `owner` label value: the name, the cgroup path, or [`labels::UNKNOWN`].
    #[must_use]
    pub fn label(&self) -> &str {
        match self {
            Owner::Process(comm) => comm.as_str(),
            Owner::Cgroup(cgroup) => cgroup,
            Owner::Unknown => labels::UNKNOWN,
        }
    }
}
