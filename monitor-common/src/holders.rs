//! Every TCP socket a process holds, with its holder and the kernel's own per-socket times and
//! counters, in one pass over every network namespace: the `iter/task_file` program
//! (`monitor-ebpf/src/task_file.rs`) visits each open file of every process once (threads that
//! share a file table once) and writes one [`HeldSocket`] per TCP socket descriptor
//! (`bpf_seq_write`); the agent reads them from the iterator's file.
//!
//! A socket held by several processes (a descriptor inherited across `fork`, or passed over a
//! UNIX socket) gives one record per holder, with the same cookie; a socket held twice by one
//! process (`dup`) gives one record per descriptor. Sockets without a descriptor (orphans, the
//! accept queue, `TIME_WAIT`) are not in it.
//!
//! Nothing is converted on the kernel side: times stay in jiffies or in the socket's TCP
//! timestamp clock, with both clocks read at the visit beside them.

use crate::kernel_state::{KS_KEEPOPEN, KS_USEC_TS};

/// Name of the `iter/task_file` program that writes one [`HeldSocket`] per TCP socket descriptor.
pub const ITER_TASK_FILE_PROGRAM: &str = "iter_task_file";

/// [`HeldSocket::flags`]: `SO_KEEPALIVE` is on (`SOCK_KEEPOPEN` in `sk_flags`).
pub const HS_KEEPOPEN: u8 = KS_KEEPOPEN;
/// [`HeldSocket::flags`]: the connection uses microsecond TCP timestamps (`tcp_usec_ts`):
/// `retrans_stamp` and `stamp_now` count microseconds instead of milliseconds.
pub const HS_USEC_TS: u8 = KS_USEC_TS;

/// One TCP socket descriptor of one process, as the kernel keeps the socket at the visit.
///
/// Jiffies are the kernel's `u32` view (`tcp_jiffies32`): compare them with `now_jiffies` in
/// wrapping arithmetic, as `tcp_get_info` does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSocket {
    /// Socket cookie (`skc_cookie`): `ss -e` `sk:`, `sock_diag`'s `idiag_cookie`. The kernel
    /// makes it the first time something asks for it (`sock_diag`, a BPF program calling
    /// `bpf_get_socket_cookie`), which this program cannot do: 0 until then (use `inode`).
    pub cookie: u64,
    /// The holding process (`task_struct.tgid`: a pid as `/proc` and `ss -p` show it, in the
    /// initial pid namespace).
    pub tgid: u32,
    /// The descriptor number in the holder's file table.
    pub fd: u32,
    /// Socket inode (`SOCK_INODE(sock)->i_ino`, low 32 bits as `ss -e` `ino:` prints it).
    pub inode: u32,
    /// Network namespace inode of the socket (`skc_net->ns.inum`), not of the holder.
    pub netns: u32,
    /// Low 32 bits of `bpf_jiffies64()` at the visit (`tcp_jiffies32`).
    pub now_jiffies: u32,
    /// The socket's TCP timestamp clock at the visit: `CLOCK_MONOTONIC` in ms (µs with
    /// [`HS_USEC_TS`]), low 32 bits: what `retrans_stamp` is compared with.
    pub stamp_now: u32,
    /// Last data sent, jiffies (`tcp_sock.lsndtime`; `ss -i` `lastsnd`).
    pub lsndtime: u32,
    /// Last data received, jiffies (`icsk_ack.lrcvtime`; `ss -i` `lastrcv`).
    pub lrcvtime: u32,
    /// Last ACK from the peer, jiffies (`tcp_sock.rcv_tstamp`; `ss -i` `lastack`).
    pub rcv_tstamp: u32,
    /// First transmission of the oldest data being retransmitted (`tcp_sock.retrans_stamp`), in
    /// the clock of `stamp_now`; 0 when nothing is being retransmitted.
    pub retrans_stamp: u32,
    /// Oldest unacknowledged sequence number (`tcp_sock.snd_una`).
    pub snd_una: u32,
    /// Next sequence number to send (`tcp_sock.snd_nxt`).
    pub snd_nxt: u32,
    /// Segments in flight (`tcp_sock.packets_out`; `ss -i` `unacked`).
    pub packets_out: u32,
    /// `TCP_USER_TIMEOUT` in ms (`icsk_user_timeout`); 0 = not set.
    pub user_timeout_ms: u32,
    /// `TCP_KEEPIDLE` in jiffies (`tcp_sock.keepalive_time`); 0 = the namespace's sysctl.
    pub keepalive_time: u32,
    /// `TCP_KEEPINTVL` in jiffies (`tcp_sock.keepalive_intvl`); 0 = the namespace's sysctl.
    pub keepalive_intvl: u32,
    /// Kernel TCP state (`skc_state`, see [`crate::tcp_state`]).
    pub state: u8,
    /// [`HS_KEEPOPEN`], [`HS_USEC_TS`].
    pub flags: u8,
    /// Keepalive or zero-window probes sent without an answer (`icsk_probes_out`).
    pub probes_out: u8,
    /// Exponential backoff of the retransmission timer (`icsk_backoff`).
    pub backoff: u8,
    /// Consecutive retransmission timeouts without progress (`icsk_retransmits`).
    pub retransmits: u8,
    /// `TCP_KEEPCNT` (`tcp_sock.keepalive_probes`); 0 = the namespace's sysctl.
    pub keepalive_probes: u8,
    /// Pending connection timer (`icsk_pending`: 0 none, 1 retransmit, 2 delayed ACK, 3 zero
    /// window probe, 4 loss probe, 5 reorder).
    pub pending_timer: u8,
    _pad: u8,
}

const _: () = assert!(core::mem::size_of::<HeldSocket>() == 80);
const _: () = assert!(core::mem::align_of::<HeldSocket>() == 8);

impl HeldSocket {
    /// A record with every field 0.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            cookie: 0,
            tgid: 0,
            fd: 0,
            inode: 0,
            netns: 0,
            now_jiffies: 0,
            stamp_now: 0,
            lsndtime: 0,
            lrcvtime: 0,
            rcv_tstamp: 0,
            retrans_stamp: 0,
            snd_una: 0,
            snd_nxt: 0,
            packets_out: 0,
            user_timeout_ms: 0,
            keepalive_time: 0,
            keepalive_intvl: 0,
            state: 0,
            flags: 0,
            probes_out: 0,
            backoff: 0,
            retransmits: 0,
            keepalive_probes: 0,
            pending_timer: 0,
            _pad: 0,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only integers, no implicit padding (the size assertion above counts every
    // field and `_pad`).
    unsafe impl aya::Pod for super::HeldSocket {}
}
