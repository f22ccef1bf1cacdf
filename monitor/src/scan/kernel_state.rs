//! The kernel's own socket state per network namespace: the `iter/tcp` reader (`probes`) run
//! inside each namespace by `seed`'s per-namespace threads. The glue lives here because `probes`
//! and `seed` sit on one level and may not import each other; `scan` is the first room above both.

use std::{collections::HashSet, time::Duration};

use monitor_common::{
    SockActivity,
    kernel_state::{KIND_FULL, KIND_TIME_WAIT, KS_DEAD, KS_KEEPOPEN, KernelSockState},
    tcp_state,
};

use super::convert::SocketDefaults;
use crate::{
    clock,
    model::{Connection, Keepalive},
    probes::{KernelStateReader, ProbeError, kernel_state::convert},
    seed::{self, Netns, SeedError},
};

/// A hash map with a fast hasher: the scan looks every socket up once (foldhash, as hashbrown
/// uses; keys are kernel cookies and inodes, not attacker-chosen strings).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Why one namespace's sockets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KernelStateError {
    /// The namespace could not be entered (gone, or no privilege), or its thread failed.
    #[error("network namespace {}", ns.path.display())]
    Namespace {
        ns: Netns,
        #[source]
        source: SeedError,
    },
    /// Inside the namespace, the iterator could not be created or read (boxed: a
    /// [`ProbeError`] is large, and this error is returned per namespace).
    #[error("reading the socket state iterator in network namespace {}", ns.path.display())]
    Read {
        ns: Netns,
        #[source]
        source: Box<ProbeError>,
    },
}

impl KernelStateError {
    /// The namespace went away between listing and reading: expected churn.
    #[must_use]
    pub fn is_vanished_namespace(&self) -> bool {
        matches!(self, Self::Namespace { source, .. } if source.is_vanished_namespace())
    }
}

/// Every TCP socket of `ns` as the kernel keeps it ([`KernelStateReader::read`] on a thread inside
/// `ns`; on the calling thread when it is already there). Each record's `netns` is `ns.inode`.
///
/// # Errors
/// [`KernelStateError::Namespace`] when `ns` cannot be entered, [`KernelStateError::Read`] when
/// the iterator fails inside it.
pub fn read_namespace(
    reader: &KernelStateReader,
    ns: &Netns,
) -> Result<Vec<KernelSockState>, KernelStateError> {
    with_reader_in(reader, ns, KernelStateReader::read)
}

/// Runs `read` with `reader` on a thread inside `ns`, naming the namespace in its errors.
fn with_reader_in<T: Send + 'static>(
    reader: &KernelStateReader,
    ns: &Netns,
    read: impl FnOnce(&KernelStateReader) -> Result<T, ProbeError> + Send + 'static,
) -> Result<T, KernelStateError> {
    let inside = reader.clone();
    match seed::in_namespace(ns, move || read(&inside)) {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(source)) => Err(KernelStateError::Read {
            ns: ns.clone(),
            source: Box::new(source),
        }),
        Err(source) => Err(KernelStateError::Namespace {
            ns: ns.clone(),
            source,
        }),
    }
}

/// One read of the kernel's sockets in every namespace that could be read: what the scan takes
/// as the truth about each socket, and what tells a table entry whose socket is gone.
#[derive(Clone, Debug, Default)]
pub struct KernelTruth {
    /// Full sockets by cookie, reduced to what the scan uses.
    pub(crate) by_cookie: FastMap<u64, SocketTruth>,
    /// The namespaces read in full: a table entry of one of them that the read did not list
    /// is a socket the kernel no longer has.
    pub(crate) namespaces: HashSet<u32>,
    /// `CLOCK_MONOTONIC` when the read began: an entry whose state began later may be a socket
    /// the read could not have seen yet.
    pub(crate) started_ns: u64,
    /// `TIME_WAIT` mini-sockets (what `ss` lists as TIME-WAIT): they have no table entry.
    pub(crate) time_wait: u64,
    /// Orphaned `FIN_WAIT2` sockets finishing as mini-sockets (`ss`: FIN-WAIT-2 without a
    /// process): no table entry either.
    pub(crate) orphan_fin_wait2: u64,
    /// Socket inode → the process holding it now (`/proc/PID/fd`, the lowest pid when several
    /// do): the owner of a socket no process has sent or received on yet.
    pub(crate) holders: FastMap<u32, u32>,
}

impl KernelTruth {
    /// The truth of `records` (ticks of `hz` per second), read from `namespaces`, a read that
    /// began at `started_ns`.
    #[must_use]
    pub fn new(
        records: impl IntoIterator<Item = KernelSockState>,
        hz: u32,
        namespaces: HashSet<u32>,
        started_ns: u64,
    ) -> Self {
        let mut truth = Self {
            namespaces,
            started_ns,
            ..Self::default()
        };
        for record in records {
            truth.add(&record, hz);
        }
        truth
    }

    /// Counts or keeps one record.
    fn add(&mut self, record: &KernelSockState, hz: u32) {
        match (record.kind, convert::diag_state(record)) {
            (KIND_TIME_WAIT, tcp_state::FIN_WAIT2) => self.orphan_fin_wait2 += 1,
            (KIND_TIME_WAIT, _) => self.time_wait += 1,
            (KIND_FULL, _) => {
                self.by_cookie
                    .insert(record.cookie, SocketTruth::of(record, hz));
            }
            _ => {}
        }
    }

    /// Whether `entry` (table entry of socket `cookie`) is for a socket the kernel no longer has:
    /// its namespace was read in full, the read did not list it, and it was already in its state
    /// when the read began (a newer socket may simply have come after the read).
    #[must_use]
    pub fn is_gone(&self, cookie: u64, entry: &SockActivity) -> bool {
        !self.by_cookie.contains_key(&cookie) && self.is_gone_unlisted(entry)
    }

    /// [`is_gone`](Self::is_gone) for an entry already known not to be listed.
    pub(crate) fn is_gone_unlisted(&self, entry: &SockActivity) -> bool {
        entry.netns != 0
            && self.namespaces.contains(&entry.netns)
            && entry.state_since_ns != 0
            && entry.state_since_ns < self.started_ns
    }
}

/// What the scan uses of one full socket's kernel state (a record is 168 bytes; this keeps the
/// read's memory small at 200k sockets). Ages are as of `read_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketTruth {
    /// `CLOCK_MONOTONIC` of the read (`bpf_ktime_get_ns` in the iterator).
    pub(crate) read_ns: u64,
    /// Socket inode (0: none).
    pub(crate) inode: u32,
    /// `skc_state` as `ss` reports it.
    pub(crate) state: u8,
    /// `KS_KEEPOPEN`, `KS_DEAD`.
    pub(crate) flags: u8,
    /// `keepalive_probes` (0: the namespace's default).
    pub(crate) keepalive_probes: u8,
    /// Since the peer's last ACK (`rcv_tstamp`), at the read.
    pub(crate) since_ack: Option<Duration>,
    /// Since the first transmission of what is being retransmitted (`retrans_stamp`).
    pub(crate) since_retrans_start: Option<Duration>,
    /// `keepalive_time`, `keepalive_intvl` (None: the namespace's default).
    pub(crate) keepalive_time: Option<Duration>,
    pub(crate) keepalive_intvl: Option<Duration>,
    pub(crate) unacked: u32,
    pub(crate) send_queue: u32,
    pub(crate) recv_queue: u32,
    pub(crate) total_retrans: u32,
    pub(crate) user_timeout_ms: u32,
}

impl SocketTruth {
    fn of(r: &KernelSockState, hz: u32) -> Self {
        let timer = |jiffies: u32| {
            (jiffies != 0)
                .then(|| convert::jiffies_to_duration(jiffies.into(), hz))
                .flatten()
        };
        Self {
            read_ns: r.now_ns,
            inode: u32::try_from(r.inode).unwrap_or(0),
            state: convert::diag_state(r),
            flags: r.flags,
            keepalive_probes: r.keepalive_probes,
            since_ack: convert::since_last_ack(r, hz),
            since_retrans_start: convert::since_retrans_start(r),
            keepalive_time: timer(r.keepalive_time),
            keepalive_intvl: timer(r.keepalive_intvl),
            unacked: convert::unacked_bytes(r),
            send_queue: convert::send_queue_bytes(r),
            recv_queue: convert::recv_queue_bytes(r),
            total_retrans: r.total_retrans,
            user_timeout_ms: r.user_timeout_ms,
        }
    }
}

/// Reads every namespace into a [`KernelTruth`], ticks of `hz` per second; the namespaces that
/// failed are returned beside it (their entries are then judged by the hooks' values alone).
/// Each namespace's records are reduced inside its thread, never held whole.
#[must_use]
pub fn read_truth(reader: &KernelStateReader, hz: u32) -> (KernelTruth, Vec<KernelStateError>) {
    let started_ns = clock::monotonic_now_ns();
    let mut truth = KernelTruth {
        started_ns,
        ..KernelTruth::default()
    };
    let mut errors = Vec::new();
    for ns in seed::find_namespaces() {
        let read = with_reader_in(reader, &ns, move |inside| {
            let mut part = KernelTruth::default();
            inside
                .for_each(|record| part.add(record, hz))
                .map(|()| part)
        });
        match read {
            Ok(part) => {
                truth.namespaces.insert(ns.inode);
                truth.by_cookie.extend(part.by_cookie);
                truth.time_wait += part.time_wait;
                truth.orphan_fin_wait2 += part.orphan_fin_wait2;
            }
            // A namespace that vanished has no sockets left.
            Err(error) if error.is_vanished_namespace() => {}
            Err(error) => errors.push(error),
        }
    }
    truth.holders = seed::socket_holders().into_iter().collect();
    (truth, errors)
}

/// `c` (judged from `entry`, the hooks' view) with the kernel's own values for the socket
/// (`record`, from a read that may be up to a few scans old): each value where the kernel's is
/// the better observation.
/// - the peer's last packet: the more recent of the hooks' (`tcp_probe`) and the kernel's
///   `rcv_tstamp` (it also sees what `tcp_probe` does not, the handshake's last ACK);
/// - state: the kernel's, when the hooks saw no transition since the read (a lost event);
/// - retransmits: the larger count (both only grow);
/// - owner: the process holding the socket (`holder`, from `/proc/PID/fd`), when given (the
///   caller passes it for sockets no process did I/O on);
/// - keepalive and `TCP_USER_TIMEOUT`, orphaned, send and receive queues: the kernel's (options
///   set after the last event are seen this way; `defaults` are the socket's namespace's
///   sysctls, for the timers it does not set itself).
///
/// The hooks keep what the kernel does not: when the state was entered, the application's own
/// sends and receives, the owner.
pub(crate) fn apply(
    c: &mut Connection,
    entry: &SockActivity,
    truth: &SocketTruth,
    holder: Option<u32>,
    now_ns: u64,
    defaults: &SocketDefaults,
) {
    if holder.is_some() {
        c.pid = holder;
    }
    let since_read = Duration::from_nanos(now_ns.saturating_sub(truth.read_ns));
    if entry.state_since_ns < truth.read_ns {
        c.state = truth.state;
    }
    if let Some(silent) = truth.since_ack {
        let kernel = silent + since_read;
        c.since_peer = Some(c.since_peer.map_or(kernel, |hooks| hooks.min(kernel)));
    }
    c.retransmits = c.retransmits.max(truth.total_retrans);
    c.since_retrans_start = truth.since_retrans_start.map(|since| since + since_read);
    c.send_queue_bytes = Some(truth.send_queue);
    c.recv_queue_bytes = Some(truth.recv_queue);
    if c.unacked_bytes.is_none() {
        c.unacked_bytes = Some(truth.unacked);
    }
    c.orphan = truth.flags & KS_DEAD != 0;
    c.user_timeout =
        (truth.user_timeout_ms != 0).then(|| Duration::from_millis(truth.user_timeout_ms.into()));
    c.keepalive = Some(Keepalive {
        enabled: truth.flags & KS_KEEPOPEN != 0,
        idle: Some(truth.keepalive_time.unwrap_or(defaults.keepalive_time)),
        interval: Some(truth.keepalive_intvl.unwrap_or(defaults.keepalive_intvl)),
        count: Some(match truth.keepalive_probes {
            0 => defaults.keepalive_probes,
            n => n.into(),
        }),
    });
}

#[cfg(test)]
mod tests;
