//! Alert groups: suspect connections grouped by (reason × owner × local port), the unit a human
//! (and Alertmanager) acts on. Ten thousand leaked sockets of one service are one problem, not ten
//! thousand. The owner is the process name, the cgroup with `group_by = "cgroup"` or the
//! Kubernetes pod with `group_by = "pod"`, as in the `CLOSE_WAIT` metrics. The count is bounded as the metrics are: an owner's service ports past
//! its top `top_ports` fold into one `local_port: "other"` group, and past `max_alert_groups` the
//! smallest groups fold into one `owner: "other"` group per reason. Pure: Snapshot in, groups out.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use self::{
    paths::{OpeningPath, PathCounts},
    pod::OnePod,
};
use crate::{
    kubernetes::PodIdentity,
    model::{
        Connection, ConnectionView, LocalPort, Owner, Reason, RemediationResult, format::seconds,
        labels::OTHER, split_top_ports,
    },
    scan::Snapshot,
    verdict::{self, Policy},
};

/// Bounds what one group carries, so a 100k-socket leak still answers in a few kilobytes.
const MAX_PIDS: usize = 10;
const MAX_SAMPLES: usize = 3;

/// One alert: the connections sharing a reason, an owner and a local port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    #[serde(with = "reason_name")]
    pub reason: Reason,
    /// The owner (the `owner` label): process name (`comm`), cgroup v2 path with
    /// `group_by = "cgroup"`, `namespace/pod` with `group_by = "pod"` (the process name for a
    /// connection in no pod); `unknown` when not known.
    pub owner: String,
    /// The service port (a port something listens on); null for outbound connections, whose
    /// ephemeral local ports would otherwise make one alert per socket; `"other"` for a folded
    /// group.
    pub local_port: LocalPort,
    pub count: usize,
    /// How many reason × owner × port groups this one sums: 0 for a plain group; for a folded
    /// one (`local_port: "other"`), the ports or groups folded into it.
    #[serde(default)]
    pub folded_groups: usize,
    /// Age of the oldest connection in the group, by the clock that matters for the reason (see
    /// [`age`]); null when no connection's age is known.
    pub oldest_seconds: Option<f64>,
    /// Distinct owning pids, ascending, at most 10.
    pub pids: Vec<u32>,
    /// Up to 3 connections of the group, oldest first.
    pub samples: Vec<ConnectionView>,
    /// What to do about it (the reason's remedy), so `curl /alerts` alone is actionable.
    #[serde(default)]
    pub remedy: String,
    /// What `[[remediate]]` policies did to the group's connections at this scan, by result
    /// (`destroyed`, `dry_run`, …); the Alertmanager alert sums them while it fires.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remediations: BTreeMap<String, u64>,
    /// The Kubernetes pod every connection of the group is in (its container when one), as
    /// the connections' `kubernetes`; absent when they are not all in one named pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<PodIdentity>,
    /// The call paths that opened the group's connections, most connections first, at most 3
    /// (`[forensics] stacks`; connections whose stack is known); absent without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opening_paths: Vec<OpeningPath>,
}

/// Identity of a group across scans (Alertmanager labels are built from it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub reason: Reason,
    pub owner: String,
    pub local_port: LocalPort,
}

impl AlertGroup {
    #[must_use]
    pub fn key(&self) -> GroupKey {
        GroupKey {
            reason: self.reason,
            owner: self.owner.clone(),
            local_port: self.local_port,
        }
    }
}

/// How long a connection has been in trouble for a reason (in `model`: `[[remediate]]`'s
/// `min_age` uses the same clock).
pub(super) use crate::model::verdict_age as age;

#[derive(Default)]
struct Acc<'a> {
    count: usize,
    oldest: Option<Duration>,
    pids: BTreeSet<u32>,
    /// The oldest connections so far, oldest first, at most `MAX_SAMPLES`.
    samples: Vec<(Option<Duration>, &'a Connection)>,
    /// Remediation results of the group's connections at this scan.
    remediations: BTreeMap<&'static str, u64>,
    /// The pod they are all in, while they are.
    pod: OnePod,
    /// The call paths that opened them.
    paths: PathCounts<'a>,
}

/// Oldest first; unknown ages last; cookie breaks ties so the answer is stable between scans.
fn older_first(
    a: &(Option<Duration>, &Connection),
    b: &(Option<Duration>, &Connection),
) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then(a.1.cookie.cmp(&b.1.cookie))
}

impl<'a> Acc<'a> {
    fn add(&mut self, c: &'a Connection, age: Option<Duration>, acted: Option<RemediationResult>) {
        self.count += 1;
        self.pod.add(c.pod.as_ref());
        self.paths.add(c.stack.as_ref());
        if let Some(result) = acted {
            *self.remediations.entry(result.as_str()).or_default() += 1;
        }
        // Option orders None below Some: an unknown age never hides a known one.
        self.oldest = self.oldest.max(age);
        if let Some(pid) = c.pid {
            self.add_pid(pid);
        }
        self.samples.push((age, c));
        if self.samples.len() > MAX_SAMPLES {
            self.samples.sort_by(older_first);
            self.samples.truncate(MAX_SAMPLES);
        }
    }

    fn add_pid(&mut self, pid: u32) {
        self.pids.insert(pid);
        if self.pids.len() > MAX_PIDS {
            self.pids.pop_last();
        }
    }

    /// Folds `other` into this group: the sum, the oldest, the lowest pids, the oldest samples.
    fn merge(&mut self, other: Acc<'a>) {
        self.count += other.count;
        self.oldest = self.oldest.max(other.oldest);
        self.pod.merge(other.pod);
        self.paths.merge(other.paths);
        for (result, n) in other.remediations {
            *self.remediations.entry(result).or_default() += n;
        }
        for pid in other.pids {
            self.add_pid(pid);
        }
        self.samples.extend(other.samples);
        self.samples.sort_by(older_first);
        self.samples.truncate(MAX_SAMPLES);
    }
}

/// A group on its way to an [`AlertGroup`]: `folded` counts the groups merged into it.
struct Pending<'a> {
    reason: Reason,
    owner: String,
    port: LocalPort,
    folded: usize,
    acc: Acc<'a>,
}

impl<'a> Pending<'a> {
    /// Largest first, then by key, so the listing and the cut are stable between scans.
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.acc
            .count
            .cmp(&a.acc.count)
            .then_with(|| (a.reason, &a.owner, a.port).cmp(&(b.reason, &b.owner, b.port)))
    }

    /// Folds the groups of `folded` into one (`reason`, `owner`, "other"); None if empty.
    fn folded(
        reason: Reason,
        owner: &str,
        folded: impl IntoIterator<Item = (usize, Acc<'a>)>,
    ) -> Option<Self> {
        let mut into: Option<Self> = None;
        for (groups, acc) in folded {
            let into = into.get_or_insert_with(|| Self {
                reason,
                owner: owner.to_owned(),
                port: LocalPort::Other,
                folded: 0,
                acc: Acc::default(),
            });
            into.folded += groups;
            into.acc.merge(acc);
        }
        into
    }

    /// The group as served; its samples explain their verdicts by `policy`'s thresholds.
    fn finish(mut self, policy: &Policy) -> AlertGroup {
        self.acc.samples.sort_by(older_first);
        AlertGroup {
            reason: self.reason,
            owner: self.owner,
            local_port: self.port,
            count: self.acc.count,
            folded_groups: self.folded,
            oldest_seconds: seconds(self.acc.oldest),
            pids: self.acc.pids.into_iter().collect(),
            samples: self
                .acc
                .samples
                .iter()
                .map(|(_, c)| ConnectionView::from(*c).explained(verdict::explain(c, policy)))
                .collect(),
            remedy: self.reason.remedy().to_owned(),
            remediations: self
                .acc
                .remediations
                .into_iter()
                .map(|(result, n)| (result.to_owned(), n))
                .collect(),
            kubernetes: self.acc.pod.identity(),
            opening_paths: self.acc.paths.top(),
        }
    }
}

/// The active alerts: suspect connections grouped by reason, owner (per the snapshot's
/// grouping) and service port, largest group first, folded to the snapshot's caps (see the
/// module documentation).
#[must_use]
pub fn group(snapshot: &Snapshot) -> Vec<AlertGroup> {
    let grouping = snapshot.grouping;
    let services = &snapshot.service_ports;
    let mut per_owner: HashMap<(Reason, Owner), HashMap<Option<u16>, Acc<'_>>> = HashMap::new();
    let acted: HashMap<(u64, Reason), RemediationResult> = snapshot
        .remediations
        .iter()
        .map(|a| ((a.cookie, a.reason), a.result))
        .collect();
    for c in &snapshot.suspects {
        let owner = Owner::of(c, grouping);
        for &reason in &c.suspect {
            per_owner
                .entry((reason, owner.clone()))
                .or_default()
                .entry(services.service_port(c))
                .or_default()
                .add(c, age(c, reason), acted.get(&(c.cookie, reason)).copied());
        }
    }
    let mut pending = Vec::new();
    for ((reason, owner), ports) in per_owner {
        let owner = owner.label();
        let ports = ports
            .into_iter()
            .map(|(port, acc)| (port, acc.count as u64, acc));
        let (kept, folded) = split_top_ports(ports.collect(), grouping.top_ports);
        pending.extend(kept.into_iter().map(|(port, _, acc)| Pending {
            reason,
            owner: owner.to_owned(),
            port: LocalPort::from(port),
            folded: 0,
            acc,
        }));
        let folded = folded.into_iter().map(|(_, _, acc)| (1, acc));
        pending.extend(Pending::folded(reason, owner, folded));
    }
    pending.sort_by(Pending::order);
    cap(&mut pending, grouping.max_alert_groups);
    pending
        .into_iter()
        .map(|p| p.finish(&snapshot.policy))
        .collect()
}

/// Cuts `groups` (sorted largest first) to at most `max` entries: the largest are kept and the
/// rest fold into one (reason, "other", "other") group per reason, which count against `max`
/// too. At least one group per reason present is left when `max` is smaller than that.
fn cap(groups: &mut Vec<Pending<'_>>, max: usize) {
    if groups.len() <= max {
        return;
    }
    let reasons_past =
        |keep: usize| -> BTreeSet<Reason> { groups[keep..].iter().map(|g| g.reason).collect() };
    let mut keep = max;
    while keep > 0 && keep + reasons_past(keep).len() > max {
        keep -= 1;
    }
    let mut rest: HashMap<Reason, Vec<(usize, Acc<'_>)>> = HashMap::new();
    for g in groups.drain(keep..) {
        rest.entry(g.reason)
            .or_default()
            .push((g.folded.max(1), g.acc));
    }
    groups.extend(
        rest.into_iter()
            .filter_map(|(reason, folded)| Pending::folded(reason, OTHER, folded)),
    );
    groups.sort_by(Pending::order);
}

/// The `/alerts` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertsView {
    pub alerts: Vec<AlertGroup>,
    /// Processes predicted to run out of descriptors within `fd_exhaustion_horizon`
    /// (`TcpLivenessFdExhaustionPredicted`), soonest first; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fd_exhaustion: Vec<super::exhaustion::ExhaustionAlert>,
}

/// Reasons travel as their contract names (`close_wait_stuck`), as everywhere else.
mod reason_name {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    use crate::model::Reason;

    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's `with` passes the field by reference"
    )]
    pub(super) fn serialize<S: Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(reason.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let name = String::deserialize(d)?;
        Reason::parse(&name).ok_or_else(|| D::Error::custom(format!("unknown reason {name:?}")))
    }
}

/// The unit tests' one alert group fixture.
#[cfg(test)]
impl AlertGroup {
    /// A plain (unfolded) group: `count` connections flagged `reason`, owned by `owner` (pid 1)
    /// on service port `port`, the oldest `oldest_seconds` old; the reason's remedy, no samples
    /// and no remediations.
    pub(crate) fn example(
        reason: Reason,
        owner: &str,
        port: u16,
        count: usize,
        oldest_seconds: f64,
    ) -> Self {
        Self {
            reason,
            owner: owner.into(),
            local_port: LocalPort::Service(port),
            count,
            folded_groups: 0,
            oldest_seconds: Some(oldest_seconds),
            pids: vec![1],
            samples: Vec::new(),
            remedy: reason.remedy().into(),
            remediations: BTreeMap::new(),
            kubernetes: None,
            opening_paths: Vec::new(),
        }
    }
}

pub(crate) mod paths;
mod pod;
#[cfg(test)]
mod tests;
