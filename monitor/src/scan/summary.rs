//! What a scan keeps: per-label-set aggregates for `/metrics` and the suspect connections.
//!
//! [`SnapshotBuilder`] takes the scan's connections one at a time and keeps only counters keyed
//! by label sets (states, reasons, owners × ports), so rendering `/metrics` costs O(label sets),
//! not O(connections). Pure: connections in, [`Snapshot`] out.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use monitor_common::tcp_state;

use super::{Cookies, Snapshot, kernel_state::FastMap};
use crate::model::{
    Connection, Grouping, LocalPort, Owner, Reason, ServicePorts,
    labels::{self, OTHER, reported_state},
    split_top_ports,
};
use crate::verdict::{Policy, conntrack::CONNTRACK_PATH};

/// Upper bounds of `tcp_liveness_idle_seconds`, up to 4 h: past the 2 h default keepalive time,
/// so a connection kept open by keepalives alone still lands in a finite bucket.
pub const IDLE_BUCKETS: [f64; 13] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Raw data of one histogram: per-bucket (not cumulative) counts over [`IDLE_BUCKETS`], samples
/// past the last bound counted only in `count`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdleHistogram {
    pub per_bucket: [u64; IDLE_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl IdleHistogram {
    pub fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum += seconds;
        // Prometheus buckets are inclusive upper bounds (`le`).
        if let Some(i) = IDLE_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.per_bucket[i] += 1;
        }
    }
}

/// Sockets of one reported state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateSummary {
    pub count: u64,
    /// Idle times of the sockets whose idle time is known.
    pub idle: IdleHistogram,
}

/// Connections grouped by owner and port, cut to the top N owners and their top ports: the
/// `CLOSE_WAIT` sockets, and each reason's suspects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnerPortTop {
    /// (owner, local port) → count; owners beyond the top N are folded into ("other", "other"),
    /// an owner's service ports beyond its top ports into (owner, "other").
    pub by_port: BTreeMap<(String, String), u64>,
    /// owner → oldest state age in seconds (top N owners, the rest as "other").
    pub oldest: BTreeMap<String, f64>,
    /// Owners past the top N, summed as `owner="other"`.
    pub folded_owners: usize,
    /// (owner, service port) pairs past each owner's top ports, summed as `local_port="other"`.
    pub folded_ports: usize,
}

/// Everything `/metrics` reports about the sockets of one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Every reported state, 0 included: a series that vanishes breaks `rate()` and alerts.
    pub states: BTreeMap<u8, StateSummary>,
    /// Suspect connections per reason, every reason present.
    pub suspects: BTreeMap<Reason, u64>,
    /// Sockets with keepalive known to be off, per state name (every reported state but listen
    /// present).
    pub keepalive_off: BTreeMap<std::borrow::Cow<'static, str>, u64>,
    /// Sockets idle for longer than their `idle_after` (overrides applied), per state name
    /// (every reported state but listen present).
    pub idle_beyond: BTreeMap<std::borrow::Cow<'static, str>, u64>,
    pub close_wait: OwnerPortTop,
    /// Suspect connections of each reason by owner and port, cut as `close_wait` is; only
    /// reasons with suspects at the last scan.
    pub suspects_by_owner: BTreeMap<Reason, OwnerPortTop>,
    /// `TIME_WAIT` sockets, from the kernel's own state (they have no table entry); None
    /// without it.
    pub time_wait: Option<u64>,
    /// The reads of the kernel's own socket state so far; None without them.
    pub kernel_reads: Option<KernelReads>,
    /// The passes over the held sockets (`iter/task_file`) so far; None without the program.
    pub held_reads: Option<HeldReads>,
    /// The slot walks so far (None without the walk).
    pub slot_walks: Option<HeldReads>,
    /// Connections an `[[enforce]]` policy set, by policy name (every policy, 0 included).
    pub enforced: BTreeMap<Arc<str>, u64>,
    /// Connections `idle_beyond_path_timeout` by `[[path]]` name (every configured path, 0
    /// included).
    pub path_at_risk: BTreeMap<String, u64>,
}

/// The kernel-state reads (`iter/tcp`, every namespace) so far, and what the last one found
/// outside the table.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelReads {
    /// Reads completed since the agent started.
    pub total: u64,
    /// Time spent in them (wall clock, seconds): with `total`, what the pacing allows.
    pub seconds: f64,
    /// Full sockets the kernel had and the table did not, at the last read.
    pub untracked: u64,
}

/// The passes over every held socket (`iter/task_file`) so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeldReads {
    /// Passes completed since the agent started.
    pub total: u64,
    /// Time spent in them (wall clock, seconds).
    pub seconds: f64,
}

impl Default for Summary {
    /// The summary of an empty table: every series at 0.
    fn default() -> Self {
        Self {
            states: tcp_state::REPORTED
                .iter()
                .map(|&s| (s, StateSummary::default()))
                .collect(),
            suspects: Reason::ALL.iter().map(|&r| (r, 0)).collect(),
            keepalive_off: tcp_state::REPORTED
                .iter()
                .filter(|&&s| s != tcp_state::LISTEN)
                .map(|&s| (labels::state_label(s), 0))
                .collect(),
            idle_beyond: tcp_state::REPORTED
                .iter()
                .filter(|&&s| s != tcp_state::LISTEN)
                .map(|&s| (labels::state_label(s), 0))
                .collect(),
            close_wait: OwnerPortTop::default(),
            suspects_by_owner: BTreeMap::new(),
            time_wait: None,
            kernel_reads: None,
            held_reads: None,
            slot_walks: None,
            enforced: BTreeMap::new(),
            path_at_risk: BTreeMap::new(),
        }
    }
}

/// Connections of one owner on one (namespace, raw local port): the port becomes a label only at
/// the end of the scan, once every listener is known.
#[derive(Clone, Copy, Debug, Default)]
struct OwnerPortGroup {
    count: u64,
    oldest_seconds: f64,
}

impl OwnerPortGroup {
    fn add(&mut self, state_age_seconds: f64) {
        self.count += 1;
        self.oldest_seconds = self.oldest_seconds.max(state_age_seconds);
    }
}

/// A group's key: the owner, the socket's namespace and its raw local port.
type OwnerPortKey = (Owner, Option<u32>, u16);

/// Time in the current state, or its lower bound for a socket older than the agent; 0 unknown.
fn state_age_seconds(c: &Connection) -> f64 {
    c.state_age
        .or(c.state_age_at_least)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Adds counts kept by state number to `by_name`, keyed by the state's label.
fn add_by_state_name(
    counts: &[u64; 256],
    by_name: &mut BTreeMap<std::borrow::Cow<'static, str>, u64>,
) {
    for (state, &count) in (0..=u8::MAX).zip(counts) {
        if count > 0 {
            *by_name.entry(labels::state_label(state)).or_default() += count;
        }
    }
}

/// Counts `c` (`idle_beyond_path_timeout`) under its path's name: the `[[path]]` matching it,
/// else the host's conntrack when its entry was found.
fn count_path_at_risk(at_risk: &mut BTreeMap<String, u64>, c: &Connection, policy: &Policy) {
    if let Some(path) = policy.path_of(c) {
        if let Some(n) = at_risk.get_mut(&path.name) {
            *n += 1;
        }
    } else if c.conntrack.is_some() {
        *at_risk.entry(CONNTRACK_PATH.to_owned()).or_default() += 1;
    }
}

/// Accumulates one scan, connection by connection.
pub struct SnapshotBuilder {
    grouping: Grouping,
    watched: Cookies,
    summary: Summary,
    close_wait: FastMap<OwnerPortKey, OwnerPortGroup>,
    suspects: BTreeMap<Reason, FastMap<OwnerPortKey, OwnerPortGroup>>,
    /// Sockets with keepalive off by state number, folded into
    /// [`Summary::keepalive_off`] at the end (a count per socket, not a string key).
    keepalive_off: [u64; 256],
    /// Sockets idle past their `idle_after` by state number, folded into
    /// [`Summary::idle_beyond`] at the end.
    idle_beyond: [u64; 256],
    /// The thresholds `idle_beyond` counts by.
    policy: Arc<Policy>,
    snapshot: Snapshot,
}

impl SnapshotBuilder {
    /// `watched`: cookies whose presence in the table the snapshot reports (`watched_open`);
    /// `policy`: the thresholds the scan judges with (the snapshot quotes them).
    #[must_use]
    pub fn new(grouping: Grouping, watched: Cookies, policy: Arc<Policy>) -> Self {
        let path_at_risk = policy.paths.iter().map(|p| (p.name.clone(), 0)).collect();
        let expected_suspects = watched.len();
        Self {
            grouping,
            watched,
            summary: Summary {
                path_at_risk,
                ..Summary::default()
            },
            close_wait: FastMap::default(),
            suspects: BTreeMap::new(),
            keepalive_off: [0; 256],
            idle_beyond: [0; 256],
            snapshot: Snapshot {
                // The suspects of the last scan are watched: this one likely has as many, and
                // growing the vector to hundreds of thousands copies it a dozen times.
                suspects: Vec::with_capacity(expected_suspects),
                grouping,
                policy: Arc::clone(&policy),
                ..Snapshot::default()
            },
            policy,
        }
    }

    /// Counts one connection; keeps it only if it is suspect.
    pub fn add(&mut self, c: &Connection) {
        self.snapshot.tracked_sockets += 1;
        if !self.watched.is_empty() && self.watched.contains(&c.cookie) {
            self.snapshot.watched_open.insert(c.cookie);
        }
        if c.state == tcp_state::LISTEN {
            self.snapshot.service_ports.insert(c.netns, c.local.port());
        }
        let summary = &mut self.summary;
        if let Some(entry) = reported_state(c.state).and_then(|s| summary.states.get_mut(&s)) {
            entry.count += 1;
            if let Some(idle) = c.idle {
                entry.idle.observe(idle.as_secs_f64());
            }
        }
        for r in &c.suspect {
            *summary.suspects.entry(*r).or_default() += 1;
        }
        if !c.suspect.is_empty() {
            let key = (Owner::of(c, self.grouping), c.netns, c.local.port());
            for r in &c.suspect {
                let groups = self.suspects.entry(*r).or_default();
                groups
                    .entry(key.clone())
                    .or_default()
                    .add(state_age_seconds(c));
            }
            if c.suspect.contains(&Reason::IdleBeyondPathTimeout) {
                count_path_at_risk(&mut summary.path_at_risk, c, &self.policy);
            }
        }
        if let Some(policy) = &c.enforced {
            *summary.enforced.entry(Arc::clone(policy)).or_default() += 1;
        }
        if c.state != tcp_state::LISTEN {
            if c.keepalive.is_some_and(|ka| !ka.enabled) {
                self.keepalive_off[usize::from(c.state)] += 1;
            }
            if c.idle
                .is_some_and(|idle| idle > self.policy.thresholds_for(c).idle_after)
            {
                self.idle_beyond[usize::from(c.state)] += 1;
            }
        }
        if c.state == tcp_state::CLOSE_WAIT {
            let owner = Owner::of(c, self.grouping);
            let group = self
                .close_wait
                .entry((owner, c.netns, c.local.port()))
                .or_default();
            group.add(state_age_seconds(c));
        }
        if !c.suspect.is_empty() {
            self.snapshot.suspects.push(c.clone());
        }
    }

    /// Counts the sockets the table has no entry for, from the kernel's own state: `TIME_WAIT`
    /// (reported as `time_wait`) and orphaned `FIN_WAIT2` mini-sockets (counted as `fin_wait2`,
    /// as `ss` does); and keeps the reads' own figures.
    pub fn add_kernel_read(&mut self, time_wait: u64, orphan_fin_wait2: u64, reads: KernelReads) {
        self.summary.time_wait = Some(time_wait);
        if let Some(fin_wait2) = self.summary.states.get_mut(&tcp_state::FIN_WAIT2) {
            fin_wait2.count += orphan_fin_wait2;
        }
        self.summary.kernel_reads = Some(reads);
    }

    /// The snapshot (counters, hooks, capacity, timing and detections left for the caller).
    #[must_use]
    pub fn finish(mut self) -> Snapshot {
        add_by_state_name(&self.idle_beyond, &mut self.summary.idle_beyond);
        add_by_state_name(&self.keepalive_off, &mut self.summary.keepalive_off);
        let services = &self.snapshot.service_ports;
        self.summary.close_wait = owner_port_top(&self.close_wait, services, self.grouping);
        self.summary.suspects_by_owner = self
            .suspects
            .iter()
            .map(|(r, groups)| (*r, owner_port_top(groups, services, self.grouping)))
            .collect();
        self.snapshot.summary = self.summary;
        self.snapshot
    }
}

/// One owner's connections of a group: total, oldest, and per port (None: outbound).
#[derive(Default)]
struct OwnerTotals {
    count: u64,
    oldest_seconds: f64,
    ports: HashMap<Option<u16>, u64>,
}

/// Resolves ports to labels, merges groups that end up with the same labels, and cuts to the
/// `top_n` owners with the most sockets (ties broken by name), and each kept owner to its
/// `top_ports` service ports with the most sockets (ties broken by port number), the rest of its
/// ports summed as `local_port="other"`.
fn owner_port_top(
    groups: &FastMap<OwnerPortKey, OwnerPortGroup>,
    services: &ServicePorts,
    grouping: Grouping,
) -> OwnerPortTop {
    let mut per_owner: HashMap<&str, OwnerTotals> = HashMap::new();
    for ((owner, netns, port), group) in groups {
        let entry = per_owner.entry(owner.label()).or_default();
        entry.count += group.count;
        entry.oldest_seconds = entry.oldest_seconds.max(group.oldest_seconds);
        *entry
            .ports
            .entry(services.resolve(*netns, *port))
            .or_default() += group.count;
    }
    let mut owners: Vec<_> = per_owner.into_iter().collect();
    owners.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
    let mut top = OwnerPortTop::default();
    for (rank, (owner, summary)) in owners.into_iter().enumerate() {
        if rank < grouping.top_n {
            let ports = summary.ports.into_iter().map(|(port, n)| (port, n, ()));
            let (kept, folded) = split_top_ports(ports.collect(), grouping.top_ports);
            for (port, n, ()) in kept {
                top.by_port
                    .insert((owner.to_owned(), LocalPort::from(port).label()), n);
            }
            if !folded.is_empty() {
                top.folded_ports += folded.len();
                let n = folded.iter().map(|(_, n, ())| n).sum();
                top.by_port.insert((owner.to_owned(), OTHER.into()), n);
            }
            top.oldest.insert(owner.to_owned(), summary.oldest_seconds);
        } else {
            top.folded_owners += 1;
            *top.by_port.entry((OTHER.into(), OTHER.into())).or_default() += summary.count;
            let other = top.oldest.entry(OTHER.into()).or_default();
            *other = other.max(summary.oldest_seconds);
        }
    }
    top
}

#[cfg(test)]
mod tests;
