//! The kernel's own socket state in the scans: the table refresh program, run in every network
//! namespace ([`read_truth`]), writes each tracked socket's values into its slot, and [`apply`]
//! turns them into a connection's; what a read finds besides the table ([`KernelTruth`]) tells
//! which entries are gone and which sockets the table missed.

use std::time::Duration;

use monitor_common::{
    FLAG_KEEPALIVE_ON, FLAG_OPTIONS_KNOWN, FLAG_ORPHAN, FLAG_SEEDED, FLAG_STATE_SINCE_LOWER_BOUND,
    SockActivity,
    kernel_state::{
        KIND_FULL, KIND_TIME_WAIT, KS_DEAD, KS_KEEPOPEN, KS_NO_SOCKET, KS_USEC_TS, KernelSockState,
    },
    tcp_state,
};

use super::convert::SocketDefaults;
use crate::{
    bpf::{
        KernelStateReader, KernelStatus,
        kernel_state::{KernelStateError, convert, read_in},
    },
    clock,
    model::Connection,
    netns,
};

/// A hash map with a fast hasher (foldhash, as hashbrown uses; keys are kernel namespace and
/// socket inode numbers, not attacker-chosen strings).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// One read of the kernel's sockets in every namespace that could be read, by the table refresh
/// program (`iter_tcp_table`): each tracked socket's own values went into its table slot
/// ([`SockActivity::kernel`]); what is kept here is what tells a table entry whose socket is
/// gone, and the sockets the table does not hold.
#[derive(Clone, Debug, Default)]
pub struct KernelTruth {
    /// The namespaces read in full, each with `CLOCK_MONOTONIC` when its read began: a tracked
    /// socket of one of them that the read did not visit is one the kernel no longer has.
    pub(crate) namespaces: FastMap<u32, u64>,
    /// `TIME_WAIT` mini-sockets (what `ss` lists as TIME-WAIT): they have no table entry.
    pub(crate) time_wait: u64,
    /// Orphaned `FIN_WAIT2` sockets finishing as mini-sockets (`ss`: FIN-WAIT-2 without a
    /// process): no table entry either.
    pub(crate) orphan_fin_wait2: u64,
    /// Full sockets the kernel has and the table does not (missed while the table was full, or
    /// created during the read), less those added to the table after the read.
    pub(crate) untracked: u64,
    /// The first [`MAX_MISSING_KEPT`] of them, as read, for the reading thread to add to the
    /// table ([`track_missing`]); taken out before the truth is handed to the scans.
    pub(crate) missing: Vec<KernelSockState>,
    /// Reads completed since the agent started, this one included, and the time they took:
    /// set by the reading thread.
    pub(crate) reads: u64,
    pub(crate) read_time: Duration,
    /// CPU time the namespaces' reads took, summed over the threads that read them (each
    /// namespace is read from a thread inside it): what the reads are paced by.
    pub(crate) cpu_time: Duration,
}

impl KernelTruth {
    /// Counts one record of the refresh program (a socket the table does not track).
    fn add(&mut self, record: &KernelSockState) {
        match (record.kind, convert::diag_state(record)) {
            (KIND_TIME_WAIT, tcp_state::FIN_WAIT2) => self.orphan_fin_wait2 += 1,
            (KIND_TIME_WAIT, _) => self.time_wait += 1,
            (KIND_FULL, _) => {
                self.untracked += 1;
                if self.missing.len() < MAX_MISSING_KEPT {
                    self.missing.push(*record);
                }
            }
            _ => {}
        }
    }

    /// Adds one namespace's part, read from `started_ns`.
    fn merge(&mut self, netns: u32, started_ns: u64, part: KernelTruth) {
        self.namespaces.insert(netns, started_ns);
        self.time_wait += part.time_wait;
        self.orphan_fin_wait2 += part.orphan_fin_wait2;
        self.untracked += part.untracked;
        self.cpu_time += part.cpu_time;
        let room = MAX_MISSING_KEPT.saturating_sub(self.missing.len());
        self.missing.extend(part.missing.into_iter().take(room));
    }

    /// Whether `entry` is for a socket the kernel no longer has: its namespace was read in full,
    /// that read did not visit it, and it was already in its state when the read began (a newer
    /// socket may simply have come after the read).
    #[must_use]
    pub fn is_gone(&self, entry: &SockActivity) -> bool {
        let Some(&started) = self.namespaces.get(&entry.netns) else {
            return false;
        };
        entry.netns != 0
            && entry.state_since_ns != 0
            && entry.state_since_ns < started
            && entry.kernel.read_ns < started
    }
}

/// Reads every namespace with the table refresh program `reader`: the kernel writes each tracked
/// socket's own values into its slot, and the rest is counted into the returned
/// [`KernelTruth`]; the namespaces that failed are returned beside it (their entries keep the
/// values of their last read).
#[must_use]
pub fn read_truth(reader: &KernelStateReader) -> (KernelTruth, Vec<KernelStateError>) {
    let mut truth = KernelTruth::default();
    let mut errors = Vec::new();
    for ns in netns::find_namespaces() {
        let started_ns = clock::monotonic_now_ns();
        let read = read_in(reader, &ns, move |inside| {
            let cpu_started = clock::thread_cpu_time();
            let mut part = KernelTruth::default();
            let read = inside.for_each(|record| part.add(record));
            part.cpu_time = clock::thread_cpu_time().saturating_sub(cpu_started);
            read.map(|()| part)
        });
        match read {
            Ok(part) => truth.merge(ns.inode, started_ns, part),
            // A namespace that vanished has no sockets left.
            Err(error) if error.is_vanished_namespace() => {}
            Err(error) => errors.push(error),
        }
    }
    (truth, errors)
}

/// Untracked sockets kept per read to add to the table (168 bytes each): a table that overflowed
/// fills up again over a few reads rather than holding every missed socket at once.
pub(crate) const MAX_MISSING_KEPT: usize = 4096;

/// Adds the sockets the read found outside the table (`truth.missing`, taken) while it has room,
/// each as seeding would (the state's start is a lower bound: the read), and lowers
/// `truth.untracked` by those added. `hz` converts the record's jiffies. Returns how many.
pub fn track_missing(truth: &mut KernelTruth, kernel: &dyn KernelStatus, hz: Option<u32>) -> usize {
    let missing = std::mem::take(&mut truth.missing);
    if missing.is_empty() {
        return 0;
    }
    let entries: Vec<(u64, SockActivity)> = missing
        .iter()
        .filter(|r| r.state != tcp_state::CLOSE)
        .map(|r| (r.cookie, entry_of(r, hz)))
        .collect();
    let added = kernel.track(&entries);
    truth.untracked = truth.untracked.saturating_sub(added as u64);
    added
}

/// The table entry of a full socket the table missed, from its kernel record: identity, state
/// (entered no later than the read: a lower bound, as for seeded sockets, or the peer's last
/// ACK for the states a packet from it enters), the last data sent and received and the peer's
/// last ACK, retransmits, the socket options, and the sample the refresh would write.
#[must_use]
pub fn entry_of(r: &KernelSockState, hz: Option<u32>) -> SockActivity {
    let mut e = SockActivity::zeroed();
    e.family = r.family;
    e.saddr = r.saddr;
    e.daddr = r.daddr;
    e.sport = r.sport;
    e.dport = r.dport;
    e.netns = r.netns;
    e.state = r.state;
    e.state_since_ns = r.now_ns.max(1);
    e.flags = FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND | FLAG_OPTIONS_KNOWN;
    if r.flags & KS_KEEPOPEN != 0 {
        e.flags |= FLAG_KEEPALIVE_ON;
    }
    if r.flags & KS_DEAD != 0 {
        e.flags |= FLAG_ORPHAN;
    }
    e.keepalive_time = r.keepalive_time;
    e.keepalive_intvl = r.keepalive_intvl;
    e.keepalive_probes = r.keepalive_probes;
    e.user_timeout_ms = r.user_timeout_ms;
    e.retransmits = r.total_retrans;
    if r.state != tcp_state::LISTEN
        && let Some(hz) = hz
    {
        // As seeding from tcp_info: ages become timestamps, never 0 ("not seen").
        let at = |since: Option<Duration>| {
            since.map_or(0, |d| {
                let ago = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                r.now_ns.saturating_sub(ago).max(1)
            })
        };
        e.last_send_ns = at(convert::since_last_send(r, hz));
        e.last_recv_ns = at(convert::since_last_recv(r, hz));
        e.last_peer_ns = at(convert::since_last_ack(r, hz));
        if matches!(r.state, tcp_state::CLOSE_WAIT | tcp_state::FIN_WAIT2) && e.last_peer_ns != 0 {
            e.state_since_ns = e.state_since_ns.min(e.last_peer_ns);
        }
    }
    let k = &mut e.kernel;
    k.read_ns = r.now_ns;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel compares u32 jiffies: the low 32 bits are the stamps' clock"
    )]
    let read_jiffies = r.now_jiffies as u32;
    k.read_jiffies = read_jiffies;
    k.rcv_tstamp = r.rcv_tstamp;
    k.retrans_stamp = r.retrans_stamp;
    k.send_queue = convert::send_queue_bytes(r);
    k.recv_queue = convert::recv_queue_bytes(r);
    k.inode = u32::try_from(r.inode).unwrap_or(0);
    k.state = r.state;
    k.flags = r.flags & (KS_USEC_TS | KS_NO_SOCKET);
    e
}

/// Whether the last kernel read found `entry`'s socket still in its listener's accept queue: a
/// full socket without a `struct socket` that the application has not closed.
#[must_use]
pub fn in_accept_queue(entry: &SockActivity) -> bool {
    entry.kernel.read_ns != 0
        && entry.kernel.flags & KS_NO_SOCKET != 0
        && entry.flags & FLAG_ORPHAN == 0
        && entry.state != tcp_state::LISTEN
}

/// `c` (converted from `entry`, the hooks' view) with the values only the socket keeps, from the
/// sample the last kernel read wrote into the entry (no-op before the first read visited it).
/// The options, orphan flag, bytes in flight and retransmits were refreshed in place by the same
/// read; here:
/// - state: the kernel's, when the hooks saw no transition since the read (a lost event). The
///   transition then happened before the read: its age is a lower bound from the read;
/// - the peer's last packet: the more recent of the hooks' (`tcp_probe`) and the kernel's
///   `rcv_tstamp` (it also sees what `tcp_probe` does not, the handshake's last ACK);
/// - the start of the current retransmission episode (`retrans_stamp`), and the send and
///   receive queues.
///
/// Ages are counted to `now_ns`; `defaults.hz` converts jiffies (unknown: the ACK age is left
/// to the hooks).
pub(crate) fn apply(
    c: &mut Connection,
    entry: &SockActivity,
    now_ns: u64,
    defaults: &SocketDefaults,
) {
    let k = &entry.kernel;
    if k.read_ns == 0 {
        return;
    }
    let since_read = Duration::from_nanos(now_ns.saturating_sub(k.read_ns));
    if k.state != 0 && k.state != entry.state && entry.state_since_ns < k.read_ns {
        c.state = k.state;
        c.state_age = None;
        c.state_age_at_least = Some(since_read);
    }
    // A listener's `rcv_tstamp` is not a peer's (it has none): seeding leaves its times at 0 too.
    let has_peer = entry.state != tcp_state::LISTEN;
    if let Some(silent) = defaults
        .hz
        .filter(|_| has_peer)
        .and_then(|hz| convert::jiffies_since(k.read_jiffies.into(), k.rcv_tstamp, hz))
    {
        let kernel = silent + since_read;
        c.since_peer = Some(c.since_peer.map_or(kernel, |hooks| hooks.min(kernel)));
    }
    c.since_retrans_start =
        convert::since_stamp(k.read_ns, k.retrans_stamp, k.flags & KS_USEC_TS != 0)
            .map(|since| since + since_read);
    c.send_queue_bytes = Some(k.send_queue);
    c.recv_queue_bytes = Some(convert::clamp_queue(k.recv_queue));
}

#[cfg(test)]
mod tests;
