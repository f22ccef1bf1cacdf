//! Verdicts: which connections look dead or leaking, and why. Pure: a Connection in, reasons out.
//!
//! Re-evaluated on every scan. The reason strings are a contract (metrics labels, JSON, alerts).

pub mod policy;
pub mod rules;

use std::time::Duration;

pub use policy::{Matcher, Override, Policy, Thresholds};

/// Why a connection is suspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// In CLOSE_WAIT too long: the peer closed, the local application never called close().
    CloseWaitStuck,
    /// In FIN_WAIT2 too long on a socket the application still holds: we closed, the peer never did.
    FinWait2Stuck,
    /// Unacknowledged data, retransmits, and no packet from the peer for too long: the peer is gone.
    PeerUnresponsive,
    /// Keepalive probes are going out and none is answered.
    KeepaliveUnanswered,
    /// Nothing received for too long, no keepalive, no TCP_USER_TIMEOUT: a dead peer would never
    /// be noticed (the receive-only side of the half-open problem).
    IdleNoKeepalive,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::CloseWaitStuck,
        Reason::FinWait2Stuck,
        Reason::PeerUnresponsive,
        Reason::KeepaliveUnanswered,
        Reason::IdleNoKeepalive,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::CloseWaitStuck => "close_wait_stuck",
            Reason::FinWait2Stuck => "fin_wait2_stuck",
            Reason::PeerUnresponsive => "peer_unresponsive",
            Reason::KeepaliveUnanswered => "keepalive_unanswered",
            Reason::IdleNoKeepalive => "idle_no_keepalive",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// What the on-call should do about it (used in logs, alerts and the README).
    pub const fn remedy(self) -> &'static str {
        match self {
            Reason::CloseWaitStuck => {
                "the application leaks sockets: fix the missing close() after the peer closes (read returned 0)"
            }
            Reason::FinWait2Stuck => {
                "the peer never closed its side: check the peer application; set a read timeout or close() fully"
            }
            Reason::PeerUnresponsive => {
                "the peer is gone while data is outstanding: set TCP_USER_TIMEOUT to fail fast; check the peer host and the network path"
            }
            Reason::KeepaliveUnanswered => {
                "keepalive probes go unanswered: the peer host or a middlebox is gone; the kernel will reset the connection"
            }
            Reason::IdleNoKeepalive => {
                "enable SO_KEEPALIVE with short timers, an application heartbeat, or TCP_USER_TIMEOUT, so a dead peer is noticed"
            }
        }
    }
}

/// How long until the kernel gives up on an unresponsive peer (retransmission timeout), when known.
pub fn retransmission_limit(user_timeout: Option<Duration>, tcp_retries2: u32) -> Duration {
    user_timeout.unwrap_or_else(|| model_timeout(tcp_retries2))
}

/// The kernel's own model (tcp_model_timeout): exponential backoff from TCP_RTO_MIN (200 ms),
/// capped at TCP_RTO_MAX (120 s), for `retries` retransmissions. 15 retries → 924.6 s.
pub fn model_timeout(retries: u32) -> Duration {
    const RTO_MIN_MS: u64 = 200;
    const RTO_MAX_MS: u64 = 120_000;
    let thresh = (RTO_MAX_MS / RTO_MIN_MS).ilog2(); // backoffs before the cap
    let ms = if retries <= thresh {
        ((2u64 << retries) - 1) * RTO_MIN_MS
    } else {
        ((2u64 << thresh) - 1) * RTO_MIN_MS + u64::from(retries - thresh) * RTO_MAX_MS
    };
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("nope"), None);
    }

    #[test]
    fn default_retries_give_the_well_known_15_minutes() {
        assert_eq!(model_timeout(15), Duration::from_millis(924_600));
        assert_eq!(model_timeout(3), Duration::from_millis(3_000));
        assert_eq!(
            retransmission_limit(Some(Duration::from_secs(30)), 15),
            Duration::from_secs(30)
        );
    }
}
