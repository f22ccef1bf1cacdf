//! `[[enforce]]` policies: the keepalive timers and user timeout that matching connections get.
//! Pure: which policy a connection gets (the first that matches, in config
//! order) and the socket option request that applies it. Built by `config`, applied by the
//! kernel program (new connections) and the agent (existing ones, and policies on `process`).

use std::{sync::Arc, time::Duration};

use monitor_common::sockopt::{
    SET_KEEPALIVE, SET_KEEPCNT, SET_KEEPIDLE, SET_KEEPINTVL, SET_USER_TIMEOUT, SockoptRequest,
    SockoptValues,
};

use crate::{model::Connection, verdict::Matcher};

/// `fill` applies an option only where the socket still has the kernel default (the application
/// never set it); `override` always applies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnforceMode {
    #[default]
    Fill,
    Override,
}

impl EnforceMode {
    /// The config word.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fill => "fill",
            Self::Override => "override",
        }
    }
}

/// `keepalive = { idle, interval, count }`: `SO_KEEPALIVE` on, with these timers (an unset one
/// keeps the socket's value, normally the namespace's `net.ipv4.tcp_keepalive_*` sysctl).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepaliveTimers {
    /// `TCP_KEEPIDLE`: quiet time before the first probe (whole seconds, 1..=32767).
    pub idle: Option<Duration>,
    /// `TCP_KEEPINTVL`: between unanswered probes (whole seconds, 1..=32767).
    pub interval: Option<Duration>,
    /// `TCP_KEEPCNT`: unanswered probes before the kernel resets the connection (1..=127).
    pub count: Option<u32>,
}

/// One `[[enforce]]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforce {
    /// Shown as `enforced` in `/connections` and as the `policy` label.
    pub name: Arc<str>,
    pub matcher: Matcher,
    pub keepalive: Option<KeepaliveTimers>,
    /// `TCP_USER_TIMEOUT` (milliseconds, 1 ms ..= `i32::MAX` ms).
    pub user_timeout: Option<Duration>,
    pub mode: EnforceMode,
}

impl Enforce {
    /// The socket option request that applies this policy (`SET_*` bits, values; `fill` bits in
    /// `fill` mode).
    #[must_use]
    pub fn request(&self) -> SockoptRequest {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let mut set = 0;
        let mut want = SockoptValues::default();
        if let Some(ka) = self.keepalive {
            set |= SET_KEEPALIVE;
            want.keepalive = 1;
            if let Some(idle) = ka.idle {
                set |= SET_KEEPIDLE;
                want.keepidle_s = secs(idle);
            }
            if let Some(interval) = ka.interval {
                set |= SET_KEEPINTVL;
                want.keepintvl_s = secs(interval);
            }
            if let Some(count) = ka.count {
                set |= SET_KEEPCNT;
                want.keepcnt = count;
            }
        }
        if let Some(timeout) = self.user_timeout {
            set |= SET_USER_TIMEOUT;
            want.user_timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        }
        SockoptRequest {
            set,
            fill: match self.mode {
                EnforceMode::Fill => set,
                EnforceMode::Override => 0,
            },
            want,
            ..SockoptRequest::default()
        }
    }

    /// Whether the kernel cannot decide this policy at handshake time (it matches on the
    /// process name or the pod, known only once the agent's scan finds the owner).
    #[must_use]
    pub fn needs_owner(&self) -> bool {
        self.matcher.process.is_some() || self.matcher.by_pod()
    }
}

impl Enforce {
    /// Whether `c`'s options, as the kernel keeps them now (`keepalive`, `user_timeout`: the
    /// held-socket pass reads them from the socket), are still those this policy set on it
    /// (`applied`: `SET_*` bits; a `fill` sets only what the application left). None when they
    /// are not known. A socket whose options another program changed since (a second agent,
    /// the application itself), or on which the policy set nothing, does not carry it.
    #[must_use]
    pub fn carried_by(&self, c: &Connection, applied: u32) -> Option<bool> {
        if applied == 0 {
            return Some(false);
        }
        let request = self.request();
        let want = request.want;
        let secs = |d: Option<Duration>| d.and_then(|d| u32::try_from(d.as_secs()).ok());
        let mut carried = true;
        if applied & (SET_KEEPALIVE | SET_KEEPIDLE | SET_KEEPINTVL | SET_KEEPCNT) != 0 {
            let ka = c.keepalive?;
            let check =
                |bit: u32, have: Option<u32>, want: u32| applied & bit == 0 || have == Some(want);
            carried &= check(SET_KEEPALIVE, Some(u32::from(ka.enabled)), want.keepalive)
                && check(SET_KEEPIDLE, secs(ka.idle), want.keepidle_s)
                && check(SET_KEEPINTVL, secs(ka.interval), want.keepintvl_s)
                && check(SET_KEEPCNT, ka.count, want.keepcnt);
        }
        if applied & SET_USER_TIMEOUT != 0 {
            let have = c
                .user_timeout
                .and_then(|t| u32::try_from(t.as_millis()).ok());
            carried &= have == Some(want.user_timeout_ms);
        }
        Some(carried)
    }
}

/// The policy `c` gets: the first of `policies` that matches it, with its index.
#[must_use]
pub fn first_match<'a>(policies: &'a [Enforce], c: &Connection) -> Option<(usize, &'a Enforce)> {
    policies
        .iter()
        .enumerate()
        .find(|(_, p)| p.matcher.matches(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, matcher: Matcher, mode: EnforceMode) -> Enforce {
        Enforce {
            name: name.into(),
            matcher,
            keepalive: Some(KeepaliveTimers {
                idle: Some(Duration::from_secs(30)),
                interval: Some(Duration::from_secs(10)),
                count: Some(3),
            }),
            user_timeout: Some(Duration::from_mins(1)),
            mode,
        }
    }

    #[test]
    fn request_carries_every_value_and_fill_only_in_fill_mode() {
        let p = policy("p", Matcher::default(), EnforceMode::Fill);
        let r = p.request();
        let all = SET_KEEPALIVE | SET_KEEPIDLE | SET_KEEPINTVL | SET_KEEPCNT | SET_USER_TIMEOUT;
        assert_eq!(r.set, all);
        assert_eq!(r.fill, all);
        assert_eq!(
            r.want,
            SockoptValues {
                keepalive: 1,
                keepidle_s: 30,
                keepintvl_s: 10,
                keepcnt: 3,
                user_timeout_ms: 60_000,
            }
        );
        let o = policy("o", Matcher::default(), EnforceMode::Override).request();
        assert_eq!((o.set, o.fill), (all, 0));
        let only_timeout = Enforce {
            keepalive: None,
            ..p
        };
        assert_eq!(only_timeout.request().set, SET_USER_TIMEOUT);
    }

    #[test]
    fn a_socket_carries_a_policy_only_with_all_its_values() {
        let p = policy("p", Matcher::default(), EnforceMode::Fill);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 80));
        let mut c = Connection::new(1, monitor_common::tcp_state::ESTABLISHED, addr, addr);
        let all = p.request().set;
        assert_eq!(p.carried_by(&c, all), None, "options unknown");
        c.keepalive = Some(crate::model::Keepalive {
            enabled: true,
            idle: Some(Duration::from_secs(30)),
            interval: Some(Duration::from_secs(10)),
            count: Some(3),
        });
        c.user_timeout = Some(Duration::from_mins(1));
        assert_eq!(p.carried_by(&c, all), Some(true));
        assert_eq!(p.carried_by(&c, 0), Some(false), "a fill that set nothing");
        // Another program's timers since (a second agent, the application).
        let mut own = c.clone();
        own.keepalive = own.keepalive.map(|ka| crate::model::Keepalive {
            idle: Some(Duration::from_mins(10)),
            ..ka
        });
        assert_eq!(p.carried_by(&own, all), Some(false));
        // A fill that set only the user timeout: the application's timers are no mismatch.
        assert_eq!(p.carried_by(&own, SET_USER_TIMEOUT), Some(true));
        let mut no_timeout = c;
        no_timeout.user_timeout = None;
        assert_eq!(p.carried_by(&no_timeout, SET_USER_TIMEOUT), Some(false));
    }

    #[test]
    fn first_matching_policy_wins() {
        let port = |p| Matcher {
            local_port: Some(p),
            ..Matcher::default()
        };
        let policies = [
            policy("a", port(81), EnforceMode::Fill),
            policy("b", port(80), EnforceMode::Fill),
            policy("c", Matcher::default(), EnforceMode::Override),
        ];
        let addr = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let c = Connection::new(
            1,
            monitor_common::tcp_state::ESTABLISHED,
            addr(80),
            addr(5000),
        );
        assert_eq!(first_match(&policies, &c).map(|(i, _)| i), Some(1));
        let other = Connection::new(2, monitor_common::tcp_state::ESTABLISHED, addr(99), addr(1));
        assert_eq!(first_match(&policies, &other).map(|(i, _)| i), Some(2));
        assert_eq!(first_match(&policies[..2], &other), None);
    }
}
