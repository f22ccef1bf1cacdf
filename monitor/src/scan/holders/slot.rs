//! How a pass keeps each held socket: a dense 64-byte slot with what every socket has (its
//! counters, times, state and holder), and, only for the sockets that have them, the values that
//! are zero on most sockets of a large host (an idle pooled connection has nothing in flight,
//! nothing retransmitted and no per-socket timers): [`HeldExtras`], kept apart by slot.
//!
//! At 100k connections (200k sockets) the slots are 12.8 MB where the whole 128-byte record was
//! 25.6 MB: the difference is most of what the agent's resident memory was over its budget.

use monitor_common::holders::HeldSocket;

/// [`HeldSocket::flags`] bit the agent sets (the program never does): the socket has
/// [`HeldExtras`], kept by slot beside the slots.
pub(super) const HS_EXTRAS: u8 = 1 << 6;

/// One slot's socket as a pass read it: the fields of its [`HeldSocket`] that every socket has,
/// verbatim.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(super) struct HeldSlot {
    /// 0 for a slot no pass saw.
    pub(super) cookie: u64,
    pub(super) bytes_sent: u64,
    pub(super) bytes_received: u64,
    /// `CLOCK_MONOTONIC` ns when the pass that read it began.
    pub(super) read_ns: u64,
    pub(super) tgid: u32,
    pub(super) now_jiffies: u32,
    pub(super) lsndtime: u32,
    pub(super) lrcvtime: u32,
    pub(super) rcv_tstamp: u32,
    pub(super) srtt_us_x8: u32,
    pub(super) segs_in: u32,
    pub(super) state: u8,
    /// The record's flags, with the agent's own bits ([`HS_EXTRAS`], `HS_SHARED`).
    pub(super) flags: u8,
    pub(super) retransmits: u8,
    pub(super) keepalive_probes: u8,
}

const _: () = assert!(size_of::<HeldSlot>() == 64);

/// The values of a held socket that are 0 on most sockets, and the date its peer was last heard
/// from where no kernel time says so; kept only when one of them is not 0. Sequence numbers are
/// kept as the differences the agent uses: bytes in flight (`snd_nxt - snd_una`), the send
/// queue (`write_seq - snd_una`) and the receive queue (`rcv_nxt - copied_seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct HeldExtras {
    pub(super) stamp_now: u32,
    pub(super) retrans_stamp: u32,
    pub(super) unacked: u32,
    pub(super) send_queue: u32,
    pub(super) recv_queue: u32,
    pub(super) user_timeout_ms: u32,
    pub(super) keepalive_time: u32,
    pub(super) keepalive_intvl: u32,
    /// `CLOCK_MONOTONIC` ns; 0 when never (see `HeldSockets::refill`).
    pub(super) heard_ns: u64,
}

impl HeldExtras {
    /// `record`'s extras, with `heard_ns`.
    pub(super) fn of(record: &HeldSocket, heard_ns: u64) -> Self {
        Self {
            stamp_now: record.stamp_now,
            retrans_stamp: record.retrans_stamp,
            unacked: record.snd_nxt.wrapping_sub(record.snd_una),
            send_queue: record.write_seq.wrapping_sub(record.snd_una),
            recv_queue: record.recv_queue,
            user_timeout_ms: record.user_timeout_ms,
            keepalive_time: record.keepalive_time,
            keepalive_intvl: record.keepalive_intvl,
            heard_ns,
        }
    }

    /// Whether there is anything to keep.
    pub(super) fn any(&self) -> bool {
        *self != Self::default()
    }
}

impl HeldSlot {
    /// `record`'s slot part, read by the pass begun at `read_ns`.
    pub(super) fn of(record: &HeldSocket, read_ns: u64) -> Self {
        Self {
            cookie: record.cookie,
            bytes_sent: record.bytes_sent,
            bytes_received: record.bytes_received,
            read_ns,
            tgid: record.tgid,
            now_jiffies: record.now_jiffies,
            lsndtime: record.lsndtime,
            lrcvtime: record.lrcvtime,
            rcv_tstamp: record.rcv_tstamp,
            srtt_us_x8: record.srtt_us_x8,
            segs_in: record.segs_in,
            state: record.state,
            flags: record.flags,
            retransmits: record.retransmits,
            keepalive_probes: record.keepalive_probes,
        }
    }

    /// The record again, for the pure code that reads records: every field the agent uses as
    /// read, sequence numbers rebased (`snd_una` 0, so `snd_nxt` is the bytes in flight and
    /// `write_seq` the send queue); the fields nothing uses (`fd`, `netns`, `packets_out`, the
    /// pending timer, backoff and probes out) 0, and `slot` `slot`.
    pub(super) fn record(&self, extras: Option<&HeldExtras>, slot: u32) -> HeldSocket {
        let extras = extras.copied().unwrap_or_default();
        let mut r = HeldSocket::zeroed();
        r.cookie = self.cookie;
        r.tgid = self.tgid;
        r.now_jiffies = self.now_jiffies;
        r.stamp_now = extras.stamp_now;
        r.lsndtime = self.lsndtime;
        r.lrcvtime = self.lrcvtime;
        r.rcv_tstamp = self.rcv_tstamp;
        r.retrans_stamp = extras.retrans_stamp;
        r.snd_nxt = extras.unacked;
        r.write_seq = extras.send_queue;
        r.recv_queue = extras.recv_queue;
        r.user_timeout_ms = extras.user_timeout_ms;
        r.keepalive_time = extras.keepalive_time;
        r.keepalive_intvl = extras.keepalive_intvl;
        r.state = self.state;
        r.flags = self.flags & !(HS_EXTRAS | super::HS_SHARED);
        r.retransmits = self.retransmits;
        r.keepalive_probes = self.keepalive_probes;
        r.bytes_sent = self.bytes_sent;
        r.bytes_received = self.bytes_received;
        r.srtt_us_x8 = self.srtt_us_x8;
        r.segs_in = self.segs_in;
        r.slot = slot;
        r
    }
}
