//! What the `[probe]` feature found out about one connection's peer: the agent switched the
//! socket's keepalive on for a few short intervals, watched for the peer's answer, and put the
//! application's options back. Pure data; `act::probe` fills it, the verdicts and views read it.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The latest keepalive probe of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// When the probe started (wall clock): keepalive switched on through `bpf_setsockopt`.
    pub sent_at: SystemTime,
    /// Still running: keepalive is on with the probe's timers, the options not yet restored.
    pub in_progress: bool,
    /// The peer answered: an ACK arrived after the start (`tcp_sock.rcv_tstamp` moved, or the
    /// `tcp_probe` hook saw a segment).
    pub answered: bool,
    /// From the start to the peer's answer, to the kernel's `jiffies` resolution (1000/`HZ` ms:
    /// 4 ms at `HZ=250`); None when unanswered or `HZ` is unknown.
    pub rtt: Option<Duration>,
    /// Probes the kernel sent without an answer (`icsk_probes_out` when the probe finished).
    pub unanswered: u32,
    /// What the probes prove about the peer now; None once an answer is older than
    /// `[probe].after` of idleness, or when too few probes went out to tell.
    pub verdict: Option<PeerVerdict>,
}

/// What keepalive probes proved about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerVerdict {
    /// It answered, and the connection has not been idle for `[probe].after` since (kept while
    /// a new probe of a connection that answered the last one runs).
    Alive,
    /// `[probe].count` probes went unanswered, and nothing was heard from it since
    /// (`peer_dead`).
    Dead,
    /// The peer sent segments of its own during the probe, yet our probes went unanswered:
    /// the peer is there, the path from here to it is broken (not `peer_dead`: ending the
    /// connection is not what a path outage needs).
    OneWay,
}

/// The wire form of a [`ProbeResult`] (`/connections` `probe`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    /// RFC 3339, UTC, milliseconds.
    pub sent_at: String,
    /// `in_progress`, `peer_alive`, `peer_dead`, `one_way`, or `answered` / `unanswered` once that verdict
    /// has expired (the connection was idle again for `after`) or could not be reached.
    pub result: String,
    pub answered: bool,
    /// Milliseconds from the first probe's departure to the peer's ACK (`rcv_tstamp`), in
    /// jiffies; None when not answered, or when that ACK may answer something else (data the
    /// application sent meanwhile, or a later probe).
    pub rtt_ms: Option<f64>,
    pub unanswered: u32,
}

impl From<&ProbeResult> for ProbeView {
    fn from(p: &ProbeResult) -> Self {
        let result = match (p.in_progress, p.verdict) {
            (true, _) => "in_progress",
            (false, Some(PeerVerdict::Dead)) => "peer_dead",
            (false, Some(PeerVerdict::Alive)) => "peer_alive",
            (false, Some(PeerVerdict::OneWay)) => "one_way",
            (false, None) if p.answered => "answered",
            (false, None) => "unanswered",
        };
        Self {
            sent_at: humantime::format_rfc3339_millis(p.sent_at).to_string(),
            result: result.to_owned(),
            answered: p.answered,
            #[expect(
                clippy::cast_precision_loss,
                reason = "milliseconds of a round trip: far below 2^52"
            )]
            rtt_ms: p
                .rtt
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX) as f64 / 1000.0),
            unanswered: p.unanswered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_names_the_result() {
        let p = ProbeResult {
            sent_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
            in_progress: false,
            answered: true,
            rtt: Some(Duration::from_millis(4)),
            unanswered: 0,
            verdict: Some(PeerVerdict::Alive),
        };
        let view = ProbeView::from(&p);
        assert_eq!(view.sent_at, "1970-01-01T00:00:01.500Z");
        assert_eq!(view.result, "peer_alive");
        assert_eq!(view.rtt_ms, Some(4.0));
        let dead = ProbeResult {
            answered: false,
            rtt: None,
            unanswered: 3,
            verdict: Some(PeerVerdict::Dead),
            ..p
        };
        assert_eq!(ProbeView::from(&dead).result, "peer_dead");
        let running = ProbeResult {
            in_progress: true,
            ..dead
        };
        assert_eq!(ProbeView::from(&running).result, "in_progress");
    }
}
