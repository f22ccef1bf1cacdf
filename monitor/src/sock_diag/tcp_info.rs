//! The fields the agent uses from `struct tcp_info` (`include/uapi/linux/tcp.h`), read by offset.
//!
//! The kernel appends fields to `tcp_info` over releases and sends as many bytes as it knows, so
//! the attribute is longer on new kernels and shorter on old ones. netlink-packet-sock-diag either
//! hands back the raw bytes (default) or, with `rich_nlas`, demands at least its own struct size.
//! Reading fixed offsets accepts any longer buffer, and a shorter one only loses the tail fields.

/// What seeding needs from one socket's `tcp_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfoSummary {
    /// Retransmission timeouts in a row since the peer last acknowledged new data
    /// (`tcpi_retransmits`, the socket's `icsk_retransmits`: 0 again at the next ACK that
    /// moves `snd_una`).
    pub retransmits: u8,
    /// Keepalive or zero-window probes sent without an answer (`tcpi_probes`, the socket's
    /// `icsk_probes_out`; 0 again once the peer answers).
    pub probes: u8,
    /// The retransmission timeout now, microseconds (`tcpi_rto`: backoff included, so after a
    /// retransmission it is how long the kernel waits for that one's answer).
    pub rto_us: u32,
    /// Milliseconds since the socket last sent data.
    pub last_data_sent_ms: u32,
    /// Milliseconds since the socket last received data.
    pub last_data_recv_ms: u32,
    /// Milliseconds since the last ACK from the peer.
    pub last_ack_recv_ms: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked_segments: u32,
    /// Segments retransmitted over the socket's lifetime.
    pub total_retrans: u32,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u32,
    /// Linux 4.19+.
    pub bytes_sent: Option<u64>,
    /// Linux 4.1+.
    pub bytes_acked: Option<u64>,
    /// Linux 4.19+.
    pub bytes_retrans: Option<u64>,
    /// Linux 4.1+.
    pub bytes_received: Option<u64>,
}

// Byte offsets in `struct tcp_info` (8 bytes of u8 fields, then u32s, then u64s from 104).
const RETRANSMITS: usize = 2;
const PROBES: usize = 3;
const RTO: usize = 8;
const UNACKED: usize = 24;
const LAST_DATA_SENT: usize = 44;
const LAST_DATA_RECV: usize = 52;
const LAST_ACK_RECV: usize = 56;
const RTT: usize = 68;
const TOTAL_RETRANS: usize = 100;
const BYTES_ACKED: usize = 120;
const BYTES_RECEIVED: usize = 128;
const BYTES_SENT: usize = 200;
const BYTES_RETRANS: usize = 208;

/// Parses the `INET_DIAG_INFO` attribute (native byte order, as the kernel wrote it). `None` when
/// the buffer is too short for the non-optional fields.
pub(super) fn parse(buf: &[u8]) -> Option<TcpInfoSummary> {
    Some(TcpInfoSummary {
        retransmits: *buf.get(RETRANSMITS)?,
        probes: *buf.get(PROBES)?,
        rto_us: u32_at(buf, RTO)?,
        last_data_sent_ms: u32_at(buf, LAST_DATA_SENT)?,
        last_data_recv_ms: u32_at(buf, LAST_DATA_RECV)?,
        last_ack_recv_ms: u32_at(buf, LAST_ACK_RECV)?,
        unacked_segments: u32_at(buf, UNACKED)?,
        total_retrans: u32_at(buf, TOTAL_RETRANS)?,
        rtt_us: u32_at(buf, RTT)?,
        bytes_sent: u64_at(buf, BYTES_SENT),
        bytes_acked: u64_at(buf, BYTES_ACKED),
        bytes_retrans: u64_at(buf, BYTES_RETRANS),
        bytes_received: u64_at(buf, BYTES_RECEIVED),
    })
}

fn u32_at(buf: &[u8], offset: usize) -> Option<u32> {
    let bytes = buf.get(offset..offset + 4)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn u64_at(buf: &[u8], offset: usize) -> Option<u64> {
    let bytes = buf.get(offset..offset + 8)?;
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shortest buffer holding every non-optional field (up to `tcpi_total_retrans`, Linux 2.6).
    const MIN_LEN: usize = TOTAL_RETRANS + 4;

    /// A `tcp_info` of `len` bytes with distinct values in the fields the parser reads.
    fn fixture(len: usize) -> Vec<u8> {
        let mut buf = vec![0xeeu8; len];
        let mut put32 = |off: usize, v: u32| {
            if let Some(dst) = buf.get_mut(off..off + 4) {
                dst.copy_from_slice(&v.to_ne_bytes());
            }
        };
        put32(RTO, 204_000);
        put32(UNACKED, 3);
        put32(LAST_DATA_SENT, 1_000);
        put32(LAST_DATA_RECV, 2_000);
        put32(LAST_ACK_RECV, 3_000);
        put32(RTT, 250);
        put32(TOTAL_RETRANS, 7);
        let mut put64 = |off: usize, v: u64| {
            if let Some(dst) = buf.get_mut(off..off + 8) {
                dst.copy_from_slice(&v.to_ne_bytes());
            }
        };
        put64(BYTES_ACKED, 10_000);
        put64(BYTES_RECEIVED, 20_000);
        put64(BYTES_SENT, 12_000);
        put64(BYTES_RETRANS, 500);
        buf[RETRANSMITS] = 4;
        buf[PROBES] = 2;
        buf
    }

    const FULL: TcpInfoSummary = TcpInfoSummary {
        retransmits: 4,
        probes: 2,
        rto_us: 204_000,
        last_data_sent_ms: 1_000,
        last_data_recv_ms: 2_000,
        last_ack_recv_ms: 3_000,
        unacked_segments: 3,
        total_retrans: 7,
        rtt_us: 250,
        bytes_sent: Some(12_000),
        bytes_acked: Some(10_000),
        bytes_retrans: Some(500),
        bytes_received: Some(20_000),
    };

    #[test]
    fn parses_the_4_19_layout() {
        // Linux 4.19–5.3: the struct ends at tcpi_reord_seen (224 bytes).
        assert_eq!(parse(&fixture(224)), Some(FULL));
    }

    #[test]
    fn accepts_longer_buffers_from_newer_kernels() {
        assert_eq!(parse(&fixture(248)), Some(FULL));
        assert_eq!(parse(&fixture(4096)), Some(FULL));
    }

    #[test]
    fn shorter_buffers_lose_only_the_tail() {
        // 4.1–4.18: bytes_acked/bytes_received present, bytes_sent/bytes_retrans not.
        let mid = parse(&fixture(160)).expect("160 bytes hold the fixed fields");
        assert_eq!(mid.bytes_acked, Some(10_000));
        assert_eq!(mid.bytes_received, Some(20_000));
        assert_eq!(mid.bytes_sent, None);
        assert_eq!(mid.bytes_retrans, None);
        // bytes_sent present but bytes_retrans cut off.
        let cut = parse(&fixture(BYTES_RETRANS + 4)).expect("fixed fields present");
        assert_eq!(cut.bytes_sent, Some(12_000));
        assert_eq!(cut.bytes_retrans, None);
        // Oldest layout: nothing after total_retrans.
        let old = parse(&fixture(MIN_LEN)).expect("minimal layout");
        assert_eq!(old.total_retrans, 7);
        assert_eq!(old.bytes_acked, None);
    }

    #[test]
    fn too_short_is_none() {
        assert_eq!(parse(&fixture(MIN_LEN - 1)), None);
        assert_eq!(parse(&[]), None);
    }
}
