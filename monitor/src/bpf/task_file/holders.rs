//! The records of one `iter/task_file` pass turned into what they mean: one entry per socket with
//! every process that holds it, and the socket's ages computed as the kernel's `tcp_get_info`
//! computes them (so they agree with `ss -ti`). Pure functions.

use std::{collections::BTreeMap, time::Duration};

use monitor_common::holders::{HS_KEEPOPEN, HS_USEC_TS, HeldSocket};

use crate::bpf::kernel_state::convert::{jiffies_since, since_stamp};

/// One descriptor of a socket: the process (tgid) and its descriptor number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder {
    /// Process id (`task_struct.tgid`, as `/proc` and `ss -p` show it).
    pub tgid: u32,
    /// Descriptor number in that process.
    pub fd: u32,
}

/// One socket of a pass, with every descriptor that refers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketHolders {
    /// Socket cookie (`ss -e` `sk:`).
    pub cookie: u64,
    /// Every descriptor of the socket, ordered by tgid then fd; never empty.
    pub holders: Vec<Holder>,
    /// The socket's kernel values, from the latest visit of the pass (the visits of one socket
    /// through its several descriptors are microseconds apart).
    pub kernel: HeldSocket,
}

impl SocketHolders {
    /// The distinct processes holding the socket, ascending (what `ss -p` lists as `pid=`).
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.holders.iter().map(|h| h.tgid).collect();
        pids.dedup();
        pids
    }
}

/// Groups one pass's records by socket cookie, ordered by cookie.
#[must_use]
pub fn by_socket(records: &[HeldSocket]) -> Vec<SocketHolders> {
    let mut sockets: BTreeMap<u64, SocketHolders> = BTreeMap::new();
    for record in records {
        let holder = Holder {
            tgid: record.tgid,
            fd: record.fd,
        };
        let entry = sockets
            .entry(record.cookie)
            .or_insert_with(|| SocketHolders {
                cookie: record.cookie,
                holders: Vec::new(),
                kernel: *record,
            });
        entry.holders.push(holder);
        if later(record.now_jiffies, entry.kernel.now_jiffies) {
            entry.kernel = *record;
        }
    }
    sockets
        .into_values()
        .map(|mut socket| {
            socket.holders.sort_unstable();
            socket.holders.dedup();
            socket
        })
        .collect()
}

/// `a` is after `b` on the kernel's wrapping 32-bit jiffies clock.
fn later(a: u32, b: u32) -> bool {
    a.wrapping_sub(b).cast_signed() > 0
}

/// Since the last data segment was sent (`lsndtime`; `ss -i` `lastsnd`); `None` when `hz` is 0.
#[must_use]
pub fn since_last_send(s: &HeldSocket, hz: u32) -> Option<Duration> {
    jiffies_since(s.now_jiffies.into(), s.lsndtime, hz)
}

/// Since the last data segment was received (`icsk_ack.lrcvtime`; `ss -i` `lastrcv`).
#[must_use]
pub fn since_last_recv(s: &HeldSocket, hz: u32) -> Option<Duration> {
    jiffies_since(s.now_jiffies.into(), s.lrcvtime, hz)
}

/// Since the last ACK from the peer (`rcv_tstamp`; `ss -i` `lastack`).
#[must_use]
pub fn since_last_ack(s: &HeldSocket, hz: u32) -> Option<Duration> {
    jiffies_since(s.now_jiffies.into(), s.rcv_tstamp, hz)
}

/// Since the first transmission of the oldest data being retransmitted (`retrans_stamp` against
/// `stamp_now`, ms or µs per [`HS_USEC_TS`], wrapping as the kernel compares them); `None` when
/// nothing is being retransmitted.
#[must_use]
pub fn since_retrans_start(s: &HeldSocket) -> Option<Duration> {
    let usec = s.flags & HS_USEC_TS != 0;
    // `stamp_now` back in ns of the same clock: `since_stamp` divides it to the same value.
    let ns_per_tick = if usec { 1_000 } else { 1_000_000 };
    since_stamp(u64::from(s.stamp_now) * ns_per_tick, s.retrans_stamp, usec)
}

/// Bytes sent and not yet acknowledged: `snd_nxt - snd_una` (sequence space, wrapping).
#[must_use]
pub fn unacked_bytes(s: &HeldSocket) -> u32 {
    s.snd_nxt.wrapping_sub(s.snd_una)
}

/// `SO_KEEPALIVE` is on.
#[must_use]
pub fn keepalive_on(s: &HeldSocket) -> bool {
    s.flags & HS_KEEPOPEN != 0
}
