//! Metric families about suspects and owners: bounded cardinality by construction (reasons are a
//! fixed set; owners are cut to the top N plus "other").

use std::collections::{BTreeMap, HashMap};

use monitor_common::tcp_state;
use prometheus::proto::MetricFamily;

use super::{
    proto::{counter, gauge},
    specs::{CLOSE_WAIT_BY_OWNER, CLOSE_WAIT_OLDEST, DETECTIONS, KEEPALIVE_DISABLED, SUSPECTS},
};
use crate::{
    table::{Connection, ServicePorts, Snapshot, port_label},
    verdict::Reason,
};

pub const OTHER: &str = "other";

pub fn families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut suspects: BTreeMap<Reason, u64> = Reason::ALL.iter().map(|&r| (r, 0)).collect();
    // Every state present, 0 included, like tcp_liveness_connections.
    let mut keepalive_off: BTreeMap<&str, u64> = tcp_state::REPORTED
        .iter()
        .filter(|&&s| s != tcp_state::LISTEN)
        .filter_map(|&s| tcp_state::name(s))
        .map(|name| (name, 0))
        .collect();
    for c in &snapshot.connections {
        for r in &c.suspect {
            *suspects.entry(*r).or_default() += 1;
        }
        if c.keepalive.is_some_and(|ka| !ka.enabled) && c.state != tcp_state::LISTEN {
            *keepalive_off
                .entry(tcp_state::name(c.state).unwrap_or("unknown"))
                .or_default() += 1;
        }
    }
    let close_wait = close_wait_top(snapshot);
    vec![
        SUSPECTS.family(
            suspects
                .iter()
                .map(|(r, n)| gauge(&[("reason", r.as_str())], *n as f64))
                .collect(),
        ),
        DETECTIONS.family(
            Reason::ALL
                .iter()
                .map(|r| {
                    let n = snapshot.detections.get(r).copied().unwrap_or(0);
                    counter(&[("reason", r.as_str())], n)
                })
                .collect(),
        ),
        CLOSE_WAIT_BY_OWNER.family(
            close_wait
                .by_port
                .iter()
                .map(|((owner, port), n)| {
                    gauge(&[("process", owner), ("local_port", port)], *n as f64)
                })
                .collect(),
        ),
        CLOSE_WAIT_OLDEST.family(
            close_wait
                .oldest
                .iter()
                .map(|(owner, secs)| gauge(&[("process", owner)], *secs))
                .collect(),
        ),
        KEEPALIVE_DISABLED.family(
            keepalive_off
                .iter()
                .map(|(s, n)| gauge(&[("state", s)], *n as f64))
                .collect(),
        ),
    ]
}

/// The owner label of a connection: its process name, or its cgroup when grouping by cgroup.
pub fn owner_label(c: &Connection, by_cgroup: bool) -> String {
    let label = if by_cgroup {
        c.cgroup.as_deref()
    } else {
        c.comm.as_deref()
    };
    label.unwrap_or("unknown").to_owned()
}

#[derive(Debug, Default, PartialEq)]
pub struct CloseWaitTop {
    /// (owner, local port) → count; owners beyond the top N are folded into ("other", "other").
    pub by_port: BTreeMap<(String, String), u64>,
    /// owner → oldest age in seconds (top N owners, the rest as "other").
    pub oldest: BTreeMap<String, f64>,
}

/// CLOSE_WAIT grouped by owner and port, cut to the `top_n` owners with the most sockets.
pub fn close_wait_top(snapshot: &Snapshot) -> CloseWaitTop {
    let by_cgroup = snapshot.grouping.by_cgroup;
    let services = ServicePorts::of(snapshot);
    let mut per_owner: HashMap<String, (u64, f64, BTreeMap<String, u64>)> = HashMap::new();
    for c in snapshot
        .connections
        .iter()
        .filter(|c| c.state == tcp_state::CLOSE_WAIT)
    {
        let age = c
            .state_age
            .or(c.state_age_at_least)
            .map_or(0.0, |d| d.as_secs_f64());
        let entry = per_owner.entry(owner_label(c, by_cgroup)).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(age);
        *entry
            .2
            .entry(port_label(services.service_port(c)))
            .or_default() += 1;
    }
    let mut owners: Vec<_> = per_owner.into_iter().collect();
    owners.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let mut top = CloseWaitTop::default();
    for (rank, (owner, (count, oldest, ports))) in owners.into_iter().enumerate() {
        if rank < snapshot.grouping.top_n {
            for (port, n) in ports {
                top.by_port.insert((owner.clone(), port), n);
            }
            top.oldest.insert(owner, oldest);
        } else {
            *top.by_port.entry((OTHER.into(), OTHER.into())).or_default() += count;
            let other = top.oldest.entry(OTHER.into()).or_default();
            *other = other.max(oldest);
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::table::{Grouping, Keepalive};

    fn cw(comm: &str, port: u16, age: u64) -> Connection {
        let local = format!("10.0.0.1:{port}").parse().unwrap();
        let mut c = Connection::new(
            1,
            tcp_state::CLOSE_WAIT,
            local,
            "10.0.0.2:1".parse().unwrap(),
        );
        c.comm = Some(comm.into());
        c.state_age = Some(Duration::from_secs(age));
        c
    }

    #[test]
    fn close_wait_top_n_folds_the_rest_into_other() {
        let mut connections = vec![
            cw("redis", 6379, 10),
            cw("redis", 6379, 50),
            cw("redis", 6380, 5),
            cw("nginx", 80, 7),
            cw("java", 8080, 99),
        ];
        for port in [6379, 6380, 80, 8080] {
            let mut listener = cw("server", port, 0);
            listener.state = tcp_state::LISTEN;
            connections.push(listener);
        }
        let snapshot = Snapshot {
            connections,
            grouping: Grouping {
                top_n: 2,
                by_cgroup: false,
            },
            ..Snapshot::default()
        };
        let top = close_wait_top(&snapshot);
        assert_eq!(top.by_port[&("redis".into(), "6379".into())], 2);
        assert_eq!(top.by_port[&("redis".into(), "6380".into())], 1);
        // java and nginx tie at one socket each; names break the tie, so nginx is cut.
        assert_eq!(top.by_port[&("java".into(), "8080".into())], 1);
        assert_eq!(top.by_port[&(OTHER.into(), OTHER.into())], 1);
        assert_eq!(top.oldest["redis"], 50.0);
        assert_eq!(top.oldest[OTHER], 7.0);
    }

    #[test]
    fn suspects_and_keepalive_families_have_every_reason() {
        let mut idle = cw("app", 1, 1);
        idle.state = tcp_state::ESTABLISHED;
        idle.keepalive = Some(Keepalive {
            enabled: false,
            idle: None,
            interval: None,
            count: None,
        });
        idle.suspect = vec![Reason::IdleNoKeepalive];
        let snapshot = Snapshot {
            connections: vec![idle],
            ..Snapshot::default()
        };
        let families = families(&snapshot);
        assert_eq!(families[0].get_metric().len(), Reason::ALL.len());
        let ka = families[4].get_metric();
        assert_eq!(
            ka.len(),
            tcp_state::REPORTED.len() - 1,
            "every state but listen"
        );
        let total: f64 = ka.iter().map(|m| m.get_gauge().get_value()).sum();
        assert_eq!(total, 1.0);
    }

    #[test]
    fn outbound_connections_share_one_port_label() {
        // A client leaking CLOSE_WAIT sockets on ephemeral ports: one series, not one per socket.
        let connections = (40000..40100).map(|port| cw("client", port, 1)).collect();
        let snapshot = Snapshot {
            connections,
            ..Snapshot::default()
        };
        let top = close_wait_top(&snapshot);
        assert_eq!(top.by_port.len(), 1);
        assert_eq!(top.by_port[&("client".into(), "outbound".into())], 100);
    }
}
