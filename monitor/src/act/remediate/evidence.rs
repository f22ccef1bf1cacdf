//! What a look at a socket's kernel state shows of its peer, and whether two looks differ: the
//! check that keeps remediation from ending a connection that showed life since its verdict.
//! Pure.

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
}

impl Evidence {
    /// What `kernel` (answered at `at_ms`) shows.
    pub(crate) fn of(kernel: &DiagSocket, at_ms: u64) -> Self {
        let info = kernel.tcp_info.as_ref();
        Self {
            state: kernel.state,
            last_ack_at_ms: info.map(|i| at_ms.saturating_sub(u64::from(i.last_ack_recv_ms))),
            bytes_acked: info.and_then(|i| i.bytes_acked),
            bytes_received: info.and_then(|i| i.bytes_received),
            retransmits: info.map(|i| i.total_retrans),
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
        let grew = |now: Option<u64>, then: Option<u64>| matches!((now, then), (Some(n), Some(t)) if n > t);
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
