//! Why a connection is suspect: the closed set of reasons and every string each is known by.
//!
//! The names are a contract (the `reason` label of metrics and alerts, `suspect` in JSON, the
//! Prometheus rule names): one table here, read by every other room.

/// Why a connection is suspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// In `CLOSE_WAIT` too long and nothing sent for as long: the peer closed, the local
    /// application never called `close()` (a response still streaming after a half-close is not).
    CloseWaitStuck,
    /// In `FIN_WAIT2` too long, nothing received for as long, on a socket the application still
    /// holds: we closed, the peer never did.
    FinWait2Stuck,
    /// Unacknowledged data, retransmits, and no packet from the peer for too long: the peer is gone.
    PeerUnresponsive,
    /// Keepalive probes are going out and none is answered.
    KeepaliveUnanswered,
    /// Nothing received for too long, no keepalive, nothing outstanding (a `TCP_USER_TIMEOUT`
    /// cannot fire then): a dead peer would never be noticed (the receive-only side of the
    /// half-open problem).
    IdleNoKeepalive,
    /// Our own keepalive probes (the `[probe]` feature) went unanswered: the peer of a quiet
    /// connection is proven gone, the strongest verdict for a receive-only socket.
    PeerDead,
    /// ESTABLISHED across a `[[path]]` whose middlebox (load balancer, NAT, conntrack) forgets
    /// idle flows, idle past a share of its timeout, and nothing (no keepalive, or keepalive
    /// idle at or above the timeout) will send a packet before the flow is forgotten.
    IdleBeyondPathTimeout,
}

/// Every string one reason is known by.
struct Words {
    /// Label value and JSON string (`close_wait_stuck`).
    name: &'static str,
    /// Alertmanager `alertname` (`TcpLivenessCloseWaitStuck`), as the Prometheus rules name it.
    alert_name: &'static str,
    /// Alertmanager `severity` label.
    severity: &'static str,
    /// How an alert summary describes the connections ("stuck in `CLOSE_WAIT`").
    symptom: &'static str,
    /// What the on-call should do about it (logs, alerts, `check`, the README's verdict table).
    remedy: &'static str,
}

/// In [`Reason::ALL`] order.
const WORDS: [Words; 7] = [
    Words {
        name: "close_wait_stuck",
        alert_name: "TcpLivenessCloseWaitStuck",
        severity: "warning",
        symptom: "stuck in CLOSE_WAIT",
        remedy: "the application leaks sockets: fix the missing close() after the peer closes (read returned 0)",
    },
    Words {
        name: "fin_wait2_stuck",
        alert_name: "TcpLivenessFinWait2Stuck",
        severity: "warning",
        symptom: "stuck in FIN_WAIT2",
        remedy: "the peer never closed its side: check the peer application; set a read timeout or close() fully",
    },
    Words {
        name: "peer_unresponsive",
        alert_name: "TcpLivenessPeerUnresponsive",
        severity: "warning",
        symptom: "with an unresponsive peer",
        remedy: "the peer is gone while data is outstanding: set TCP_USER_TIMEOUT to fail fast; check the peer host and the network path",
    },
    Words {
        name: "keepalive_unanswered",
        alert_name: "TcpLivenessKeepaliveUnanswered",
        severity: "warning",
        symptom: "with unanswered keepalive probes",
        remedy: "keepalive probes go unanswered: the peer host or a middlebox is gone; the kernel will reset the connection",
    },
    Words {
        name: "idle_no_keepalive",
        alert_name: "TcpLivenessIdleNoKeepalive",
        // A latent risk, not a failure in progress.
        severity: "info",
        symptom: "idle without keepalive",
        remedy: "enable SO_KEEPALIVE with short timers, an application heartbeat, or TCP_USER_TIMEOUT, so a dead peer is noticed",
    },
    Words {
        name: "peer_dead",
        alert_name: "TcpLivenessPeerDead",
        severity: "warning",
        symptom: "with a peer that no longer answers probes",
        remedy: "the peer host is gone and the application will never notice: close the connection (or let a [[remediate]] policy destroy it) and enable keepalive or TCP_USER_TIMEOUT",
    },
    Words {
        name: "idle_beyond_path_timeout",
        alert_name: "TcpLivenessIdleBeyondPathTimeout",
        severity: "warning",
        symptom: "idle beyond their path's idle timeout",
        remedy: "a middlebox on the path forgets the flow before anything is sent: keep keepalive idle below the path's timeout (TCP_KEEPIDLE, or an [[enforce]] policy whose keepalive idle is below it), or send an application heartbeat",
    },
];

impl Reason {
    /// Every reason, in the order metrics and summaries list them.
    pub const ALL: [Reason; 7] = [
        Reason::CloseWaitStuck,
        Reason::FinWait2Stuck,
        Reason::PeerUnresponsive,
        Reason::KeepaliveUnanswered,
        Reason::IdleNoKeepalive,
        Reason::PeerDead,
        Reason::IdleBeyondPathTimeout,
    ];

    const fn words(self) -> &'static Words {
        &WORDS[self as usize]
    }

    /// The contract name: `reason` label value, JSON `suspect` entry (`close_wait_stuck`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        self.words().name
    }

    /// The reason named `text` ([`as_str`](Self::as_str)); None for any other text.
    #[must_use]
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Alertmanager `alertname`: `close_wait_stuck` → `TcpLivenessCloseWaitStuck`.
    #[must_use]
    pub const fn alert_name(self) -> &'static str {
        self.words().alert_name
    }

    /// Alertmanager `severity`: `info` for `idle_no_keepalive` (a latent risk), else `warning`.
    #[must_use]
    pub const fn severity(self) -> &'static str {
        self.words().severity
    }

    /// How an alert summary describes the affected connections ("stuck in `CLOSE_WAIT`").
    #[must_use]
    pub const fn symptom(self) -> &'static str {
        self.words().symptom
    }

    /// What the on-call should do about it (used in logs, alerts and the README's verdict table).
    #[must_use]
    pub const fn remedy(self) -> &'static str {
        self.words().remedy
    }
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
    fn table_follows_the_enum_order() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
    }

    /// The alert name is the reason's name in CamelCase after `TcpLiveness` (the Prometheus
    /// rules use the same names).
    #[test]
    fn alert_names_are_the_camel_case_names() {
        for r in Reason::ALL {
            let camel: String = r
                .as_str()
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            assert_eq!(r.alert_name(), format!("TcpLiveness{camel}"));
        }
    }
}
