//! Thresholds, per-port/per-process overrides, and the ignore list. Built by `config`.

use std::time::Duration;

use super::path::{PathTimeout, Share};
use crate::model::Connection;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub close_wait_after: Duration,
    pub fin_wait2_after: Duration,
    pub unresponsive_after: Duration,
    pub idle_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            close_wait_after: Duration::from_mins(1),
            fin_wait2_after: Duration::from_mins(2),
            unresponsive_after: Duration::from_secs(10),
            idle_after: Duration::from_mins(15),
        }
    }
}

/// Selects connections by local port, remote port, process name, cgroup and/or Kubernetes pod
/// (all given must match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    pub process: Option<String>,
    /// A cgroup v2 path (`/system.slice/payments.service`): matches connections whose owner is
    /// in it or in one of its descendants (whole path components: `/a/b` does not match `/a/bc`).
    pub cgroup: Option<String>,
    /// A Kubernetes namespace: matches connections of processes in a pod of exactly this
    /// namespace (the runtime's `io.kubernetes.pod.namespace` label; unknown never matches).
    pub pod_namespace: Option<String>,
    /// The start of a pod name (`web-` matches `web-7d9f-x2x4q`): matches connections of
    /// processes in a pod whose name starts so (`io.kubernetes.pod.name`; unknown never matches).
    pub pod_name_prefix: Option<String>,
}

impl Matcher {
    #[must_use]
    pub fn matches(&self, c: &Connection) -> bool {
        self.local_port.is_none_or(|p| c.local.port() == p)
            && self.remote_port.is_none_or(|p| c.remote.port() == p)
            && self
                .process
                .as_deref()
                .is_none_or(|p| c.comm.as_deref() == Some(p))
            && self
                .cgroup
                .as_deref()
                .is_none_or(|prefix| c.cgroup.as_deref().is_some_and(|g| in_cgroup(g, prefix)))
            && self.pod_namespace.as_deref().is_none_or(|namespace| {
                c.pod
                    .as_deref()
                    .is_some_and(|pod| pod.namespace.as_deref() == Some(namespace))
            })
            && self.pod_name_prefix.as_deref().is_none_or(|prefix| {
                c.pod
                    .as_deref()
                    .and_then(|pod| pod.pod.as_deref())
                    .is_some_and(|name| name.starts_with(prefix))
            })
    }

    /// Whether it selects by the owner's Kubernetes pod (known only once a scan finds the owner).
    #[must_use]
    pub fn by_pod(&self) -> bool {
        self.pod_namespace.is_some() || self.pod_name_prefix.is_some()
    }
}

/// Whether cgroup `path` is `prefix` or lies below it, compared by whole path components.
#[must_use]
pub fn in_cgroup(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Thresholds that replace the defaults for matching connections (unset fields keep the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Override {
    pub matcher: Matcher,
    pub close_wait_after: Option<Duration>,
    pub fin_wait2_after: Option<Duration>,
    pub unresponsive_after: Option<Duration>,
    pub idle_after: Option<Duration>,
    /// `probe = true|false`: opts matching connections in or out of keepalive probes
    /// (`[probe]`), whatever `[probe].enabled` says.
    pub probe: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub defaults: Thresholds,
    /// Applied in order; later matches win field by field.
    pub overrides: Vec<Override>,
    /// Connections never flagged.
    pub ignore: Vec<Matcher>,
    /// `[[path]]`: middleboxes that forget idle flows, in file order (the first match is a
    /// connection's path). Empty: `idle_beyond_path_timeout` costs one length check.
    pub paths: Vec<PathTimeout>,
    /// `path_timeout_share`, already applied to each path's `report_after`; kept to be shown.
    pub path_timeout_share: Share,
}

impl Policy {
    #[must_use]
    pub fn thresholds_for(&self, c: &Connection) -> Thresholds {
        let mut t = self.defaults;
        for o in self.overrides.iter().filter(|o| o.matcher.matches(c)) {
            t.close_wait_after = o.close_wait_after.unwrap_or(t.close_wait_after);
            t.fin_wait2_after = o.fin_wait2_after.unwrap_or(t.fin_wait2_after);
            t.unresponsive_after = o.unresponsive_after.unwrap_or(t.unresponsive_after);
            t.idle_after = o.idle_after.unwrap_or(t.idle_after);
        }
        t
    }

    /// Whether `c` may be probed (`[probe]`): the last matching override that says `probe`,
    /// else `enabled` (`[probe].enabled`). Ignored connections never are.
    #[must_use]
    pub fn probe_opted_in(&self, c: &Connection, enabled: bool) -> bool {
        !self.ignored(c)
            && self
                .overrides
                .iter()
                .rev()
                .filter(|o| o.matcher.matches(c))
                .find_map(|o| o.probe)
                .unwrap_or(enabled)
    }

    /// The `[[path]]` `c` crosses: the first that matches, None without any.
    #[must_use]
    pub fn path_of(&self, c: &Connection) -> Option<&PathTimeout> {
        self.paths.iter().find(|p| p.matches(c))
    }

    #[must_use]
    pub fn ignored(&self, c: &Connection) -> bool {
        self.ignore.iter().any(|m| m.matches(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_prefix_matches_whole_components_only() {
        let unit = "/system.slice/payments.service";
        assert!(in_cgroup(unit, unit));
        assert!(in_cgroup("/system.slice/payments.service/worker", unit));
        assert!(!in_cgroup("/system.slice/payments.service2", unit));
        assert!(!in_cgroup("/system.slice", unit));
        assert!(in_cgroup("/anything", "/"), "the root holds every cgroup");
    }

    #[test]
    fn matcher_with_cgroup_needs_a_known_cgroup() {
        let m = Matcher {
            cgroup: Some("/kubepods".into()),
            ..Matcher::default()
        };
        let addr = "127.0.0.1:80".parse().expect("address");
        let mut c = Connection::new(1, monitor_common::tcp_state::ESTABLISHED, addr, addr);
        assert!(!m.matches(&c), "unknown cgroup never matches");
        c.cgroup = Some("/kubepods/pod1/ctr".into());
        assert!(m.matches(&c));
        c.cgroup = Some("/kubepods-besteffort".into());
        assert!(!m.matches(&c));
    }

    #[test]
    fn pod_keys_match_the_namespace_exactly_and_the_name_by_prefix() {
        use std::sync::Arc;

        use crate::model::PodIdentity;
        let addr = "127.0.0.1:80".parse().expect("address");
        let mut c = Connection::new(1, monitor_common::tcp_state::ESTABLISHED, addr, addr);
        let both = Matcher {
            pod_namespace: Some("shop".into()),
            pod_name_prefix: Some("web-".into()),
            ..Matcher::default()
        };
        let namespace_only = Matcher {
            pod_namespace: Some("shop".into()),
            ..Matcher::default()
        };
        assert!(both.by_pod() && !Matcher::default().by_pod());
        assert!(!both.matches(&c), "no pod never matches");
        let pod = |namespace: Option<&str>, name: Option<&str>| {
            Some(Arc::new(PodIdentity::new(
                namespace.map(str::to_owned),
                name.map(str::to_owned),
                Some("u".into()),
                None,
            )))
        };
        c.pod = pod(Some("shop"), Some("web-7d9f"));
        assert!(both.matches(&c) && namespace_only.matches(&c));
        c.pod = pod(Some("shop"), Some("api-1"));
        assert!(!both.matches(&c) && namespace_only.matches(&c));
        c.pod = pod(Some("shop-staging"), Some("web-7d9f"));
        assert!(!both.matches(&c) && !namespace_only.matches(&c), "exact");
        c.pod = pod(None, None);
        assert!(!both.matches(&c) && !namespace_only.matches(&c), "uid only");
    }
}
