//! The pod an alert group's connections are all in, when they are: Alertmanager labels the
//! alert with it (`pod`, `namespace`, `container`), so a pod's alerts route like its other ones.

use std::sync::Arc;

use crate::kubernetes::PodIdentity;

/// The pod of every connection added so far, while there is one.
#[derive(Clone, Debug, Default)]
pub(super) enum OnePod {
    /// No connection yet.
    #[default]
    Empty,
    /// All in this named pod; `same_container`: all in its container too.
    One {
        pod: Arc<PodIdentity>,
        same_container: bool,
    },
    /// In several pods, or some in a pod without a known name, or in none.
    Several,
}

impl OnePod {
    /// Adds a connection in `pod` (None: in no pod).
    pub(super) fn add(&mut self, pod: Option<&Arc<PodIdentity>>) {
        let next = match pod {
            Some(pod) if pod.owner().is_some() => OnePod::One {
                pod: Arc::clone(pod),
                same_container: true,
            },
            _ => OnePod::Several,
        };
        self.merge(next);
    }

    /// Adds every connection `other` holds.
    pub(super) fn merge(&mut self, other: Self) {
        *self = match (std::mem::take(self), other) {
            (OnePod::Empty, other) | (other, OnePod::Empty) => other,
            (
                OnePod::One {
                    pod,
                    same_container,
                },
                OnePod::One {
                    pod: theirs,
                    same_container: theirs_same,
                },
            ) if pod.owner() == theirs.owner() => OnePod::One {
                same_container: same_container && theirs_same && pod.container == theirs.container,
                pod,
            },
            _ => OnePod::Several,
        };
    }

    /// The pod, its container only when one: None unless all are in one named pod.
    pub(super) fn identity(&self) -> Option<PodIdentity> {
        let OnePod::One {
            pod,
            same_container,
        } = self
        else {
            return None;
        };
        let container = if *same_container {
            pod.container.clone()
        } else {
            None
        };
        Some(PodIdentity::new(
            pod.namespace.clone(),
            pod.pod.clone(),
            pod.pod_uid.clone(),
            container,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, container: &str) -> Arc<PodIdentity> {
        let named = |s: &str| Some(s.to_owned());
        Arc::new(PodIdentity::new(
            named("shop"),
            named(name),
            named("u"),
            named(container),
        ))
    }

    #[test]
    fn one_pod_one_container_then_two_containers_then_two_pods() {
        let mut one = OnePod::default();
        assert_eq!(one.identity(), None, "empty");
        one.add(Some(&pod("web-1", "nginx")));
        one.add(Some(&pod("web-1", "nginx")));
        assert_eq!(one.identity().as_ref(), Some(&*pod("web-1", "nginx")));
        one.add(Some(&pod("web-1", "sidecar")));
        let no_container = one.identity().unwrap();
        assert_eq!(
            (no_container.pod.as_deref(), no_container.container),
            (Some("web-1"), None)
        );
        let mut two = one.clone();
        two.add(Some(&pod("web-2", "nginx")));
        assert_eq!(two.identity(), None);
        one.add(None);
        assert_eq!(one.identity(), None, "a connection in no pod");
        let mut merged = OnePod::default();
        merged.merge(OnePod::default());
        let mut other = OnePod::default();
        other.add(Some(&pod("web-1", "nginx")));
        merged.merge(other);
        assert!(merged.identity().is_some());
    }

    /// With `group_by = "pod"` a pod's two containers make one group labelled with the pod (no
    /// container), a connection in no pod groups by its process, and the samples carry the pod.
    #[test]
    fn groups_by_pod_and_carry_it() {
        use crate::{
            alerting::groups::group,
            model::{Connection, GroupBy, Grouping, Reason},
            scan::Snapshot,
        };
        let leak = |cookie: u64, comm: &str, pod: Option<Arc<PodIdentity>>| {
            let local = "10.0.0.1:6379".parse().unwrap();
            let remote = format!("10.0.0.2:{}", 40000 + cookie).parse().unwrap();
            let state = monitor_common::tcp_state::CLOSE_WAIT;
            let mut c = Connection::new(cookie, state, local, remote);
            (c.comm, c.pid, c.pod) = (Some(comm.into()), Some(7), pod);
            c.suspect = vec![Reason::CloseWaitStuck];
            c
        };
        let connections = vec![
            leak(1, "nginx", Some(pod("web-1", "nginx"))),
            leak(2, "envoy", Some(pod("web-1", "envoy"))),
            leak(3, "sshd", None),
        ];
        let grouping = Grouping {
            group_by: GroupBy::Pod,
            ..Grouping::default()
        };
        let groups = group(&Snapshot::from_connections(connections, grouping));
        let owners: Vec<_> = groups.iter().map(|g| (g.owner.as_str(), g.count)).collect();
        assert_eq!(owners, [("shop/web-1", 2), ("sshd", 1)]);
        let in_pod = groups[0].kubernetes.as_ref().expect("one pod");
        assert_eq!(
            (in_pod.pod.as_deref(), in_pod.container.as_deref()),
            (Some("web-1"), None)
        );
        assert_eq!(groups[1].kubernetes, None);
        let sample = groups[0].samples[0]
            .kubernetes
            .as_ref()
            .expect("sample's pod");
        assert_eq!(sample.namespace.as_deref(), Some("shop"));
    }
}
