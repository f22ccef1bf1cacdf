//! Alert groups: suspect connections grouped by (reason × owner × local port), the unit a human
//! (and Alertmanager) acts on. Ten thousand leaked sockets of one service are one problem, not ten
//! thousand. The owner is the process name, or the cgroup with `group_by = "cgroup"`, as in the
//! `CLOSE_WAIT` metrics. Pure: Snapshot in, groups out.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    model::{Connection, ConnectionView, Owner, Reason, format::seconds},
    scan::Snapshot,
};

/// Bounds what one group carries, so a 100k-socket leak still answers in a few kilobytes.
const MAX_PIDS: usize = 10;
const MAX_SAMPLES: usize = 3;

/// One alert: the connections sharing a reason, an owner and a local port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    #[serde(with = "reason_name")]
    pub reason: Reason,
    /// The owner (the `owner` label): process name (`comm`), or cgroup v2 path with
    /// `group_by = "cgroup"`; `unknown` when not known.
    pub owner: String,
    /// The service port (a port something listens on); null for outbound connections, whose
    /// ephemeral local ports would otherwise make one alert per socket.
    pub local_port: Option<u16>,
    pub count: usize,
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
}

/// Identity of a group across scans (Alertmanager labels are built from it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub reason: Reason,
    pub owner: String,
    pub local_port: Option<u16>,
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

/// How long a connection has been in trouble for `reason`: time in the state for the stuck
/// states (for sockets that predate the agent, the lower bound the verdicts use too), time since
/// the peer was last heard from for the dead-peer reasons, idle time for `idle_no_keepalive`.
/// Falls back to the idle time when that clock is unknown.
pub(super) fn age(c: &Connection, reason: Reason) -> Option<Duration> {
    let specific = match reason {
        Reason::CloseWaitStuck | Reason::FinWait2Stuck => c.state_age.or(c.state_age_at_least),
        Reason::PeerUnresponsive | Reason::KeepaliveUnanswered => c.since_peer,
        Reason::IdleNoKeepalive => c.idle,
    };
    specific.or(c.idle)
}

#[derive(Default)]
struct Acc<'a> {
    count: usize,
    oldest: Option<Duration>,
    pids: BTreeSet<u32>,
    /// The oldest connections so far, oldest first, at most `MAX_SAMPLES`.
    samples: Vec<(Option<Duration>, &'a Connection)>,
}

/// Oldest first; unknown ages last; cookie breaks ties so the answer is stable between scans.
fn older_first(
    a: &(Option<Duration>, &Connection),
    b: &(Option<Duration>, &Connection),
) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then(a.1.cookie.cmp(&b.1.cookie))
}

impl<'a> Acc<'a> {
    fn add(&mut self, c: &'a Connection, age: Option<Duration>) {
        self.count += 1;
        // Option orders None below Some: an unknown age never hides a known one.
        self.oldest = self.oldest.max(age);
        if let Some(pid) = c.pid {
            self.pids.insert(pid);
            if self.pids.len() > MAX_PIDS {
                self.pids.pop_last();
            }
        }
        self.samples.push((age, c));
        if self.samples.len() > MAX_SAMPLES {
            self.samples.sort_by(older_first);
            self.samples.truncate(MAX_SAMPLES);
        }
    }
}

/// The active alerts: suspect connections grouped by reason, owner (per the snapshot's
/// grouping) and service port, largest group first.
#[must_use]
pub fn group(snapshot: &Snapshot) -> Vec<AlertGroup> {
    let services = &snapshot.service_ports;
    let mut groups: HashMap<(Reason, Owner, Option<u16>), Acc<'_>> = HashMap::new();
    for c in &snapshot.suspects {
        let owner = Owner::of(c, snapshot.grouping);
        for &reason in &c.suspect {
            groups
                .entry((reason, owner.clone(), services.service_port(c)))
                .or_default()
                .add(c, age(c, reason));
        }
    }
    let mut out: Vec<AlertGroup> = groups
        .into_iter()
        .map(|((reason, owner, local_port), mut acc)| {
            acc.samples.sort_by(older_first);
            AlertGroup {
                reason,
                owner: owner.label().to_owned(),
                local_port,
                count: acc.count,
                oldest_seconds: seconds(acc.oldest),
                pids: acc.pids.into_iter().collect(),
                samples: acc
                    .samples
                    .iter()
                    .map(|(_, c)| ConnectionView::from(*c))
                    .collect(),
                remedy: reason.remedy().to_owned(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| {
            (a.reason, &a.owner, a.local_port).cmp(&(b.reason, &b.owner, b.local_port))
        })
    });
    out
}

/// The `/alerts` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertsView {
    pub alerts: Vec<AlertGroup>,
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

#[cfg(test)]
mod tests;
