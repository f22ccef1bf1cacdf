//! `[[remediate]]` policies: which confirmed verdicts end their connection. Pure: which policy
//! a suspect connection falls under, and whether it is old enough. Built by `config`; acted on
//! after each scan ([`Remediator`](super::Remediator)).

use std::time::Duration;

use crate::{
    model::{Connection, Reason, verdict_age},
    verdict::Matcher,
};

/// The reasons a policy may name: the peer is gone (or never closes), so ending the socket
/// loses nothing and frees the application. `close_wait_stuck` is not one (destroying the
/// socket cannot make the application call `close()`: its descriptor leak stays), nor is
/// `idle_no_keepalive` (idle is not dead).
pub const REMEDIABLE: [Reason; 4] = [
    Reason::PeerDead,
    Reason::PeerUnresponsive,
    Reason::KeepaliveUnanswered,
    Reason::FinWait2Stuck,
];

/// One `[[remediate]]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemediatePolicy {
    /// Its 1-based position in the file, as log lines and errors name it (`[[remediate]] #1`).
    pub number: usize,
    /// The verdict it acts on (one of [`REMEDIABLE`]).
    pub reason: Reason,
    /// Which connections (all given must match; empty: every connection with `reason`).
    pub matcher: Matcher,
    /// The verdict's age ([`verdict_age`]: since the peer was last heard from, or time in
    /// `FIN_WAIT2`) before the connection is ended.
    pub min_age: Duration,
    /// Only log and count what would be done (the default).
    pub dry_run: bool,
    /// Actions (dry-run ones included) per rolling minute, at most.
    pub max_per_minute: u32,
    /// `peer_unresponsive` only: retransmission timeouts in a row (`tcpi_retransmits`) the
    /// kernel's current episode must hold before the connection is ended, whatever `min_age`
    /// says: what bounds the false positives behind a lossy link (docs/active-modes.md).
    pub min_retransmits: u8,
}

impl RemediatePolicy {
    /// The name log lines and the alert annotation use: `#1 peer_dead`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("#{} {}", self.number, self.reason.as_str())
    }

    /// Whether `c`, suspect for this policy's reason, falls under its matchers.
    #[must_use]
    pub fn selects(&self, c: &Connection) -> bool {
        c.suspect.contains(&self.reason) && self.matcher.matches(c)
    }

    /// Whether the verdict is old enough to act on (an unknown age is not).
    #[must_use]
    pub fn old_enough(&self, c: &Connection) -> bool {
        verdict_age(c, self.reason).is_some_and(|age| age >= self.min_age)
    }
}

/// The index in `policies` of the first that selects `c` (first match wins, as for
/// `[[enforce]]`).
#[must_use]
pub fn policy_for(policies: &[RemediatePolicy], c: &Connection) -> Option<usize> {
    policies.iter().position(|p| p.selects(c))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use monitor_common::tcp_state;

    use super::*;

    fn policy(number: usize, reason: Reason, port: Option<u16>) -> RemediatePolicy {
        RemediatePolicy {
            number,
            reason,
            matcher: Matcher {
                remote_port: port,
                ..Matcher::default()
            },
            min_age: Duration::from_secs(30),
            dry_run: true,
            max_per_minute: 10,
            min_retransmits: 8,
        }
    }

    fn suspect(reason: Reason, remote_port: u16, since_peer: u64) -> Connection {
        let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let remote = SocketAddr::new("10.0.0.2".parse().unwrap(), remote_port);
        let mut c = Connection::new(1, tcp_state::ESTABLISHED, local, remote);
        c.suspect = vec![reason];
        c.since_peer = Some(Duration::from_secs(since_peer));
        c
    }

    #[test]
    fn first_matching_policy_wins() {
        let policies = [
            policy(1, Reason::PeerDead, None),
            policy(2, Reason::PeerUnresponsive, Some(6379)),
            policy(3, Reason::PeerUnresponsive, None),
        ];
        let redis = suspect(Reason::PeerUnresponsive, 6379, 60);
        assert_eq!(policy_for(&policies, &redis), Some(1));
        let other = suspect(Reason::PeerUnresponsive, 80, 60);
        assert_eq!(policy_for(&policies, &other), Some(2));
        let idle = suspect(Reason::IdleNoKeepalive, 80, 60);
        assert_eq!(
            policy_for(&policies, &idle),
            None,
            "no policy for its reason"
        );
    }

    #[test]
    fn min_age_is_the_verdicts_age() {
        let p = policy(1, Reason::PeerUnresponsive, None);
        assert!(!p.old_enough(&suspect(Reason::PeerUnresponsive, 80, 29)));
        assert!(p.old_enough(&suspect(Reason::PeerUnresponsive, 80, 30)));
        let mut unknown = suspect(Reason::PeerUnresponsive, 80, 0);
        unknown.since_peer = None;
        assert!(
            !p.old_enough(&unknown),
            "an unknown age is never old enough"
        );
        assert_eq!(p.name(), "#1 peer_unresponsive");
    }

    #[test]
    fn close_wait_and_idle_are_not_remediable() {
        assert!(!REMEDIABLE.contains(&Reason::CloseWaitStuck));
        assert!(!REMEDIABLE.contains(&Reason::IdleNoKeepalive));
    }
}
