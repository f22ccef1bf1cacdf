//! Who a connection is counted against in bounded-cardinality outputs (the `CLOSE_WAIT` metrics
//! and the alert groups): its process name, its cgroup with `group_by = "cgroup"`, or its
//! Kubernetes pod with `group_by = "pod"`.

use std::sync::Arc;

use super::{Comm, Connection, labels};

/// Top-N settings for owner-labelled metrics and alert groups: the caps that keep their
/// cardinality bounded whatever one process does (3,000 leaked sockets on 3,000 ports are at
/// most `top_ports` + 2 series and alert groups per reason, not 3,000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grouping {
    /// Owners kept as their own series; the rest are folded into [`labels::OTHER`].
    pub top_n: usize,
    /// Service ports kept per owner (by socket count) as their own series and alert groups; the
    /// rest of the owner's ports are folded into `local_port` [`labels::OTHER`]. Outbound
    /// connections are one group already and are never folded.
    pub top_ports: usize,
    /// Alert groups listed per scan (`/alerts`, the Alertmanager push, `check`), folded groups
    /// included: past it, the smallest groups are folded into one `owner="other"` group per reason.
    pub max_alert_groups: usize,
    /// What an owner is: a process name or a cgroup v2 path (`group_by`).
    pub group_by: GroupBy,
}

/// How connection owners are grouped for the `CLOSE_WAIT` top-N and for alerts (`group_by`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// By the owning process's name (`comm`).
    #[default]
    Process,
    /// By cgroup v2 path: one group per container or systemd unit.
    Cgroup,
    /// By Kubernetes pod (`namespace/pod`); a connection in no pod by its process name.
    Pod,
}

impl GroupBy {
    /// Every value, as [`GroupBy::as_str`] spells it.
    pub const ALL: [Self; 3] = [Self::Process, Self::Cgroup, Self::Pod];

    /// The config value: `process`, `cgroup` or `pod`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Cgroup => "cgroup",
            Self::Pod => "pod",
        }
    }
}

impl Default for Grouping {
    fn default() -> Self {
        Self {
            top_n: 20,
            top_ports: 10,
            max_alert_groups: 200,
            group_by: GroupBy::Process,
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
    /// The owning process's Kubernetes pod, `namespace/pod`.
    Pod(Arc<str>),
    /// Not known (no owner seen yet, or no cgroup when grouping by cgroup; with `group_by =
    /// "pod"`, neither a named pod nor a process name).
    Unknown,
}

impl Owner {
    /// `c`'s owner: its cgroup when grouping by cgroup; its pod when grouping by pod and the
    /// pod's name is known, else its process name; its process name when grouping by process.
    #[must_use]
    pub fn of(c: &Connection, grouping: Grouping) -> Self {
        let pod = || c.pod.as_deref().and_then(|pod| pod.owner());
        match (grouping.group_by, c.comm, &c.cgroup) {
            (GroupBy::Cgroup, _, Some(cgroup)) => Owner::Cgroup(Arc::clone(cgroup)),
            (GroupBy::Pod, comm, _) => match (pod(), comm) {
                (Some(pod), _) => Owner::Pod(Arc::clone(pod)),
                (None, Some(comm)) => Owner::Process(comm),
                (None, None) => Owner::Unknown,
            },
            (GroupBy::Process, Some(comm), _) => Owner::Process(comm),
            _ => Owner::Unknown,
        }
    }

    /// The `owner` label value: the name, the cgroup path, or [`labels::UNKNOWN`].
    #[must_use]
    pub fn label(&self) -> &str {
        match self {
            Owner::Process(comm) => comm.as_str(),
            Owner::Cgroup(cgroup) | Owner::Pod(cgroup) => cgroup,
            Owner::Unknown => labels::UNKNOWN,
        }
    }
}

/// One owner's connections on one local port: (port, None for outbound; count; the caller's data).
pub(crate) type PortGroup<T> = (Option<u16>, u64, T);

/// Splits one owner's groups, each `(port, count, data)` with port None for outbound, into the
/// kept ones and the folded ones: the `keep` service ports with the most connections (ties broken
/// by the lower port) are kept, and outbound always (it is one group already); the rest are
/// folded. Both halves come back largest first.
#[must_use]
pub fn split_top_ports<T>(
    mut groups: Vec<PortGroup<T>>,
    keep: usize,
) -> (Vec<PortGroup<T>>, Vec<PortGroup<T>>) {
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut services = 0;
    groups.into_iter().partition(|(port, _, _)| {
        if port.is_none() {
            return true;
        }
        services += 1;
        services <= keep
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_largest_service_ports_and_outbound() {
        let groups = vec![
            (Some(80), 5, 'a'),
            (None, 1, 'o'),
            (Some(443), 9, 'b'),
            (Some(22), 5, 'c'),
            (Some(8080), 1, 'd'),
        ];
        let (kept, folded) = split_top_ports(groups, 2);
        // 80 and 22 tie at 5: the lower port wins. Outbound is kept although smallest.
        assert_eq!(
            kept,
            [(Some(443), 9, 'b'), (Some(22), 5, 'c'), (None, 1, 'o')]
        );
        assert_eq!(folded, [(Some(80), 5, 'a'), (Some(8080), 1, 'd')]);
    }

    #[test]
    fn pod_grouping_names_the_pod_and_falls_back_to_the_process() {
        use crate::model::{Comm, PodIdentity};
        let addr = "127.0.0.1:80".parse().expect("address");
        let mut c = Connection::new(1, monitor_common::tcp_state::ESTABLISHED, addr, addr);
        let by_pod = Grouping {
            group_by: GroupBy::Pod,
            ..Grouping::default()
        };
        assert_eq!(Owner::of(&c, by_pod), Owner::Unknown);
        c.comm = Some(Comm::new("sshd"));
        assert_eq!(Owner::of(&c, by_pod).label(), "sshd", "in no pod");
        let uid_only = PodIdentity::new(None, None, Some("u".into()), None);
        c.pod = Some(Arc::new(uid_only));
        assert_eq!(
            Owner::of(&c, by_pod).label(),
            "sshd",
            "a pod without a name"
        );
        let named = |container: &str| {
            let (ns, pod) = (Some("shop".into()), Some("web-1".into()));
            Some(Arc::new(PodIdentity::new(
                ns,
                pod,
                None,
                Some(container.into()),
            )))
        };
        c.pod = named("nginx");
        let owner = Owner::of(&c, by_pod);
        assert_eq!(owner.label(), "shop/web-1");
        c.pod = named("sidecar");
        assert_eq!(
            Owner::of(&c, by_pod),
            owner,
            "one owner for the pod's containers"
        );
        assert_eq!(Owner::of(&c, Grouping::default()).label(), "sshd");
        assert_eq!(
            GroupBy::ALL.map(GroupBy::as_str),
            ["process", "cgroup", "pod"]
        );
    }

    #[test]
    fn three_thousand_ports_fold_to_the_cap() {
        let groups: Vec<_> = (1..=3000).map(|p| (Some(p), 1, ())).collect();
        let (kept, folded) = split_top_ports(groups, 10);
        assert_eq!(kept.len(), 10);
        assert_eq!(folded.len(), 2990);
        let (kept, folded) = split_top_ports(vec![(Some(1), 1, ())], 0);
        assert_eq!(
            (kept.len(), folded.len()),
            (0, 1),
            "0 folds every service port"
        );
    }
}
