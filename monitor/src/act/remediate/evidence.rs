//! What a look at a socket's kernel state shows of its peer, whether two looks differ, and
//! whether the looks so far show a segment sent after the first one go unanswered: the checks
//! that keep remediation from ending a connection that showed life since its verdict, or one
//! whose peer is back but has not been asked yet. Pure.

use crate::{model::Reason, sock_diag::DiagSocket};

/// How far apart two computations of the same last-ACK time may fall: `tcp_info`'s
/// `tcpi_last_ack_recv` is in jiffies (4 ms at `HZ=250`), and the look's own clock reading
/// follows the kernel's answer by a syscall. A real ACK after a silence long enough for a
/// verdict moves it by seconds.
pub(crate) const LAST_ACK_TOLERANCE_MS: u64 = 50;

/// One look at a socket (`sock_diag` with `tcp_info`), at `CLOCK_MONOTONIC` milliseconds
/// `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// When the look was taken, `CLOCK_MONOTONIC` milliseconds.
    pub at_ms: u64,
    /// Kernel TCP state.
    pub state: u8,
    /// When the peer was last heard from (any segment, pure ACKs and keepalive answers too):
    /// the look's time minus `tcpi_last_ack_recv`, in `CLOCK_MONOTONIC` milliseconds.
    pub last_ack_at_ms: Option<u64>,
    /// `tcpi_bytes_acked`: bytes the peer acknowledged.
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`: bytes the peer sent.
    pub bytes_received: Option<u64>,
    /// `tcpi_total_retrans`.
    pub retransmits: Option<u32>,
    /// `tcpi_retransmits`: retransmission timeouts in a row the peer has not answered (the
    /// current episode; 0 again once it acknowledges data).
    pub episode_retransmits: Option<u8>,
    /// `tcpi_probes`: keepalive probes sent without an answer (0 again once one is answered).
    pub probes: Option<u8>,
    /// `tcpi_rto` in milliseconds (rounded up): how long the kernel waits for the answer to
    /// its last transmission.
    pub rto_ms: Option<u64>,
}

/// Added to the RTO before a transmission counts as unanswered: the kernel's minimum RTO
/// (`TCP_RTO_MIN`, 200 ms), so an answer racing the second look is not taken for silence.
pub(crate) const UNANSWERED_MARGIN_MS: u64 = 200;

/// What the looks after the first show of a segment sent since it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// Nothing sent since the first look yet (a retransmission timer or keepalive interval is
    /// still running): the peer has not been asked since.
    NotAskedYet,
    /// A segment sent since the first look has not been answered; it will have gone unanswered
    /// for longer than the RTO at `CLOCK_MONOTONIC` ms `until_ms`.
    Waiting { until_ms: u64 },
    /// Proven: sent after the first look, and no answer for longer than the RTO.
    Proven,
}

impl Evidence {
    /// What `kernel` (answered at `at_ms`) shows.
    pub(crate) fn of(kernel: &DiagSocket, at_ms: u64) -> Self {
        let info = kernel.tcp_info.as_ref();
        Self {
            at_ms,
            state: kernel.state,
            last_ack_at_ms: info.map(|i| at_ms.saturating_sub(u64::from(i.last_ack_recv_ms))),
            bytes_acked: info.and_then(|i| i.bytes_acked),
            bytes_received: info.and_then(|i| i.bytes_received),
            retransmits: info.map(|i| i.total_retrans),
            episode_retransmits: info.map(|i| i.retransmits),
            probes: info.map(|i| i.probes),
            rto_ms: info.map(|i| u64::from(i.rto_us).div_ceil(1_000)),
        }
    }

    /// Where this look (unchanged since `first`: see [`changed_since`](Self::changed_since))
    /// leaves the proof that the peer does not answer, given `before` (the last look's
    /// result). Two looks a scan apart alone cannot tell a dead peer from one that is back:
    /// during retransmission backoff (or between keepalive probes) nothing is sent until the
    /// next timer. So for `peer_unresponsive` a retransmission (`tcpi_total_retrans` grew), and
    /// for `keepalive_unanswered` a keepalive probe (`tcpi_probes` grew), must have been sent
    /// after the first look and gone unanswered for longer than the RTO this look reports plus
    /// [`UNANSWERED_MARGIN_MS`]. A `peer_unresponsive` proof also needs the kernel's current
    /// episode to hold at least `min_retransmits` retransmission timeouts in a row: a live peer
    /// behind loss p each way leaves that many unanswered with probability
    /// (1 − (1 − p)²)^`min_retransmits` at most, whatever its RTO (loss inflates the RTO, and
    /// fewer retransmissions then fit in the silence `min_age` asks for). The other reasons'
    /// evidence is not a transmission (`peer_dead`: the agent's own probe round;
    /// `fin_wait2_stuck`: the peer's application) and two unchanged looks prove them.
    pub(crate) fn unanswered(
        &self,
        first: &Self,
        before: Unanswered,
        reason: Reason,
        min_retransmits: u8,
    ) -> Unanswered {
        let sent = match reason {
            Reason::PeerUnresponsive => grew(self.retransmits, first.retransmits),
            Reason::KeepaliveUnanswered => grew(self.probes, first.probes),
            _ => return Unanswered::Proven,
        };
        let enough = reason != Reason::PeerUnresponsive
            || self.episode_retransmits.unwrap_or(0) >= min_retransmits;
        match before {
            Unanswered::NotAskedYet if sent => Unanswered::Waiting {
                until_ms: self.at_ms + self.rto_ms.unwrap_or(0) + UNANSWERED_MARGIN_MS,
            },
            Unanswered::Waiting { until_ms } if self.at_ms >= until_ms && enough => {
                Unanswered::Proven
            }
            other => other,
        }
    }

    /// What changed between `before` and this later look, in words; None when nothing did. For
    /// a `peer_unresponsive` verdict more retransmits are the dead peer's symptom (the kernel
    /// keeps retransmitting with backoff), not a change; for the other reasons nothing is being
    /// retransmitted at the verdict, so a retransmit means the application sent data since: a
    /// different situation than the one judged.
    pub(crate) fn changed_since(&self, before: &Self, reason: Reason) -> Option<String> {
        if self.state != before.state {
            let name = crate::model::labels::state_label;
            return Some(format!(
                "state {} → {}",
                name(before.state),
                name(self.state)
            ));
        }
        if let (Some(now), Some(then)) = (self.last_ack_at_ms, before.last_ack_at_ms)
            && now > then + LAST_ACK_TOLERANCE_MS
        {
            return Some(format!(
                "the peer was heard from {} ms after the verdict",
                now - then
            ));
        }
        if grew(self.bytes_acked, before.bytes_acked) {
            return Some("the peer acknowledged data".into());
        }
        if grew(self.bytes_received, before.bytes_received) {
            return Some("the peer sent data".into());
        }
        match (self.retransmits, before.retransmits) {
            (Some(now), Some(then))
                if now < then || (now > then && reason != Reason::PeerUnresponsive) =>
            {
                Some(format!("retransmits {then} → {now}"))
            }
            _ => None,
        }
    }
}

/// Whether a counter both looks report is higher in the later one.
fn grew<T: PartialOrd>(now: Option<T>, then: Option<T>) -> bool {
    matches!((now, then), (Some(n), Some(t)) if n > t)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use monitor_common::tcp_state;

    use super::*;
    use crate::sock_diag::TcpInfoSummary;

    fn look(
        state: u8,
        last_ack_ms: u32,
        acked: u64,
        received: u64,
        retrans: u32,
        at_ms: u64,
    ) -> Evidence {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let kernel = DiagSocket {
            netns: 1,
            cookie: 7,
            family: 2,
            state,
            local: addr,
            remote: addr,
            inode: 1,
            tcp_info: Some(TcpInfoSummary {
                last_ack_recv_ms: last_ack_ms,
                total_retrans: retrans,
                bytes_acked: Some(acked),
                bytes_received: Some(received),
                ..TcpInfoSummary::default()
            }),
            keepalive_timer: false,
        };
        Evidence::of(&kernel, at_ms)
    }

    const EST: u8 = tcp_state::ESTABLISHED;

    #[test]
    fn a_silent_peer_looks_the_same_a_scan_later() {
        // 1 s later the last ACK is 1 s older (give or take a jiffy): the same moment.
        let before = look(EST, 5_000, 100, 50, 3, 10_000);
        let after = look(EST, 6_004, 100, 50, 3, 11_000);
        assert_eq!(
            after.changed_since(&before, Reason::KeepaliveUnanswered),
            None
        );
    }

    #[test]
    fn every_sign_of_life_is_a_change() {
        let before = look(EST, 5_000, 100, 50, 3, 10_000);
        let cases = [
            (
                look(tcp_state::CLOSE_WAIT, 6_000, 100, 50, 3, 11_000),
                "state established → close_wait",
            ),
            (look(EST, 20, 100, 50, 3, 11_000), "the peer was heard from"),
            (
                look(EST, 6_000, 200, 50, 3, 11_000),
                "the peer acknowledged data",
            ),
            (look(EST, 6_000, 100, 60, 3, 11_000), "the peer sent data"),
            (look(EST, 6_000, 100, 50, 4, 11_000), "retransmits 3 → 4"),
        ];
        for (after, expected) in cases {
            let change = after.changed_since(&before, Reason::KeepaliveUnanswered);
            assert!(
                change.as_deref().is_some_and(|c| c.starts_with(expected)),
                "{change:?}"
            );
        }
    }

    #[test]
    fn a_retransmission_after_the_first_look_must_go_unanswered_past_its_rto() {
        let unresponsive = Reason::PeerUnresponsive;
        let first = look(EST, 5_000, 100, 50, 3, 10_000);
        // A scan later, nothing sent yet (backoff): the peer has not been asked.
        let quiet = look(EST, 6_000, 100, 50, 3, 11_000);
        let state = quiet.unanswered(&first, Unanswered::NotAskedYet, unresponsive, 1);
        assert_eq!(state, Unanswered::NotAskedYet);
        // One retransmission since, with a 1.6 s RTO: unanswered only from 14.0 s + 1.6 s + margin.
        let mut sent = look(EST, 9_000, 100, 50, 4, 14_000);
        sent.rto_ms = Some(1_600);
        let state = sent.unanswered(&first, state, unresponsive, 1);
        let until_ms = 14_000 + 1_600 + UNANSWERED_MARGIN_MS;
        assert_eq!(state, Unanswered::Waiting { until_ms });
        let early = look(EST, 10_000, 100, 50, 4, until_ms - 1);
        assert_eq!(early.unanswered(&first, state, unresponsive, 1), state);
        let mut late = look(EST, 11_000, 100, 50, 5, until_ms);
        late.episode_retransmits = Some(2);
        assert_eq!(
            late.unanswered(&first, state, unresponsive, 1),
            Unanswered::Proven
        );
        // Past the RTO, but fewer timeouts in a row than the policy asks for: still waiting,
        // until the kernel's episode has them.
        assert_eq!(late.unanswered(&first, state, unresponsive, 8), state);
        let mut longer = look(EST, 60_000, 100, 50, 11, until_ms + 50_000);
        longer.episode_retransmits = Some(8);
        assert_eq!(
            longer.unanswered(&first, state, unresponsive, 8),
            Unanswered::Proven
        );
        // Keepalive: a probe, not a retransmission, is what asks an idle peer.
        let mut probed = look(EST, 9_000, 100, 50, 3, 14_000);
        probed.probes = Some(1);
        assert!(matches!(
            probed.unanswered(
                &first,
                Unanswered::NotAskedYet,
                Reason::KeepaliveUnanswered,
                8
            ),
            Unanswered::Waiting { .. }
        ));
        // A stuck FIN_WAIT2 is no silence the kernel asks about.
        assert_eq!(
            quiet.unanswered(&first, Unanswered::NotAskedYet, Reason::FinWait2Stuck, 8),
            Unanswered::Proven
        );
    }

    #[test]
    fn more_retransmits_are_the_symptom_of_an_unresponsive_peer() {
        let before = look(EST, 5_000, 100, 50, 3, 10_000);
        let after = look(EST, 6_000, 100, 50, 5, 11_000);
        assert_eq!(after.changed_since(&before, Reason::PeerUnresponsive), None);
        // …but an ACK still counts.
        let acked = look(EST, 6_000, 1_100, 50, 5, 11_000);
        assert!(
            acked
                .changed_since(&before, Reason::PeerUnresponsive)
                .is_some()
        );
    }
}
