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

#[cfg(doc)]
use crate::kernel_state::KernelSockState;
use crate::kernel_state::{KS_DEAD, KS_KEEPOPEN, KS_NO_SOCKET, KS_USEC_TS};

/// Name of the `iter/task_file` program that writes one [`HeldSocket`] per TCP socket descriptor.
pub const ITER_TASK_FILE_PROGRAM: &str = "iter_task_file";

/// [`HeldSocket::flags`]: `SO_KEEPALIVE` is on (`SOCK_KEEPOPEN` in `sk_flags`).
pub const HS_KEEPOPEN: u8 = KS_KEEPOPEN;
/// [`HeldSocket::flags`]: the application has let go of the socket (`SOCK_DEAD` in
/// `sk_flags`: an orphan). Set by the slot walk only (a descriptor pass reaches no orphan).
pub const HS_DEAD: u8 = KS_DEAD;
/// [`HeldSocket::flags`]: the connection uses microsecond TCP timestamps (`tcp_usec_ts`):
/// `retrans_stamp` and `stamp_now` count microseconds instead of milliseconds.
pub const HS_USEC_TS: u8 = KS_USEC_TS;
/// [`HeldSocket::flags`]: the socket has no `struct socket` (`sk_socket` NULL, `ss -e` `ino:0`):
/// an orphan, or a connection waiting in its listener's accept queue. Set by the slot walk only
/// (a descriptor leads to a `struct socket`).
pub const HS_NO_SOCKET: u8 = KS_NO_SOCKET;
/// [`HeldSocket::flags`]: `retrans_stamp`, `stamp_now`, [`HS_USEC_TS`] and the keepalive timers
/// (`keepalive_time`, `keepalive_intvl`, `keepalive_probes`) were read. The pass reads them only
/// while they mean something: keepalive on, or data outstanding, retransmitted or probed
/// (`packets_out`, `icsk_retransmits`, `icsk_probes_out` non-zero); otherwise they are 0 and
/// say nothing about the socket.
pub const HS_TIMERS_READ: u8 = 1 << 4;

/// One TCP socket descriptor of one process, as the kernel keeps the socket at the visit.
///
/// Jiffies are the kernel's `u32` view (`tcp_jiffies32`): compare them with `now_jiffies` in
/// wrapping arithmetic, as `tcp_get_info` does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSocket {
    /// Socket cookie (`skc_cookie`): `ss -e` `sk:`, `sock_diag`'s `idiag_cookie`. The kernel
    /// makes it the first time something asks for it (`sock_diag`, a BPF program calling
    /// `bpf_get_socket_cookie`), which this program cannot do: 0 until then.
    pub cookie: u64,
    /// The holding process (`task_struct.tgid`: a pid as `/proc` and `ss -p` show it, in the
    /// initial pid namespace).
    pub tgid: u32,
    /// The descriptor number in the holder's file table.
    pub fd: u32,
    /// Network namespace inode of the socket (`skc_net->ns.inum`), not of the holder.
    pub netns: u32,
    /// Low 32 bits of `bpf_jiffies64()` at the visit (`tcp_jiffies32`).
    pub now_jiffies: u32,
    /// The socket's TCP timestamp clock at the visit: `CLOCK_MONOTONIC` in ms (µs with
    /// [`HS_USEC_TS`]), low 32 bits: what `retrans_stamp` is compared with. 0 without
    /// [`HS_TIMERS_READ`].
    pub stamp_now: u32,
    /// `tcp_sock.lsndtime`, jiffies: as [`KernelSockState::lsndtime`] (`ss -i` `lastsnd`).
    pub lsndtime: u32,
    /// `icsk_ack.lrcvtime`, jiffies: as [`KernelSockState::lrcvtime`] (`lastrcv`).
    pub lrcvtime: u32,
    /// `tcp_sock.rcv_tstamp`, jiffies: as [`KernelSockState::rcv_tstamp`] (`lastack`).
    pub rcv_tstamp: u32,
    /// First transmission of the oldest data being retransmitted (`tcp_sock.retrans_stamp`), in
    /// the clock of `stamp_now`; 0 when nothing is being retransmitted, or without
    /// [`HS_TIMERS_READ`].
    pub retrans_stamp: u32,
    /// `tcp_sock.snd_una` and `snd_nxt`: their difference is the bytes in flight; `snd_una`
    /// moving is the peer acknowledging data.
    pub snd_una: u32,
    /// See `snd_una`.
    pub snd_nxt: u32,
    /// `tcp_sock.packets_out`: segments in flight (`ss -i` `unacked`).
    pub packets_out: u32,
    /// The socket's options, 0 when not set (the namespace's sysctls apply to the keepalive
    /// ones): `icsk_user_timeout` (`TCP_USER_TIMEOUT`, ms), `tcp_sock.keepalive_time`
    /// (`TCP_KEEPIDLE`, jiffies) and `keepalive_intvl` (`TCP_KEEPINTVL`, jiffies), and
    /// `keepalive_probes` below (`TCP_KEEPCNT`). The keepalive ones are 0 without
    /// [`HS_TIMERS_READ`].
    pub user_timeout_ms: u32,
    /// See `user_timeout_ms`.
    pub keepalive_time: u32,
    /// See `user_timeout_ms`.
    pub keepalive_intvl: u32,
    /// `skc_state` ([`crate::tcp_state`]).
    pub state: u8,
    /// [`HS_KEEPOPEN`], [`HS_USEC_TS`], [`HS_TIMERS_READ`]; from the slot walk also
    /// [`HS_DEAD`] and [`HS_NO_SOCKET`].
    pub flags: u8,
    /// The `inet_connection_sock` counters, in the kernel's order and as in
    /// [`KernelSockState`]: `icsk_retransmits`, `icsk_pending` (the pending timer, numbered as
    /// [`KernelSockState::pending_timer`]), `icsk_backoff`, `icsk_probes_out`.
    pub retransmits: u8,
    /// See `retransmits`.
    pub pending_timer: u8,
    /// See `retransmits`.
    pub backoff: u8,
    /// See `retransmits`.
    pub probes_out: u8,
    /// See `user_timeout_ms`.
    pub keepalive_probes: u8,
    _pad: u8,
    /// `tcp_sock.rcv_nxt - copied_seq`: bytes received and not yet read by the application
    /// (`ss` `Recv-Q`), as the `iter/tcp` read computes it.
    pub recv_queue: u32,
    /// `tcp_sock.bytes_sent`: bytes sent in segments, retransmissions included (`ss -i`
    /// `bytes_sent`).
    pub bytes_sent: u64,
    /// `tcp_sock.bytes_received`: bytes received in order (`ss -i` `bytes_received`).
    pub bytes_received: u64,
    /// `tcp_sock.srtt_us`: the smoothed RTT in µs, shifted left by 3 as the kernel keeps it
    /// (`ss -i` `rtt` is this >> 3); 0 before the first sample.
    pub srtt_us_x8: u32,
    /// `tcp_sock.write_seq`: `write_seq - snd_una` is the send queue (`ss` `Send-Q`).
    pub write_seq: u32,
    /// `tcp_sock.segs_in`: segments received, including those no other field records (a
    /// peer's keepalive probe is dropped as out of window, and changes no time the kernel
    /// keeps); `ss -i` `segs_in`.
    pub segs_in: u32,
    /// The socket's slot in the agent's socket table: the program writes [`NO_SLOT`], and the
    /// agent fills it in from its table by `cookie` (so each pass's values are kept by slot and
    /// a scan finds them in table order); [`NO_SLOT`] when the table does not track the socket.
    pub slot: u32,
}

/// [`HeldSocket::slot`] of a socket the table does not track.
pub const NO_SLOT: u32 = u32::MAX;

const _: () = assert!(core::mem::size_of::<HeldSocket>() == 112);
const _: () = assert!(core::mem::align_of::<HeldSocket>() == 8);

impl HeldSocket {
    /// A record with every field 0.
    #[must_use]
    pub const fn zeroed() -> Self {
        // SAFETY: integers only: all zeros is a valid value of every field.
        unsafe { core::mem::zeroed() }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only integers, no implicit padding (the size assertion above counts every
    // field and `_pad`).
    unsafe impl aya::Pod for super::HeldSocket {}
}

/// Name of the raw tracepoint program that reads the kernel's values of every tracked socket by
/// walking the table's slots (`monitor-ebpf/src/walk.rs`). It is never attached: the agent runs
/// it with `BPF_PROG_TEST_RUN`, over [`WALK_CHUNK`] slots at a time, with the first slot and the
/// slot count as its two arguments.
pub const SLOT_WALK_PROGRAM: &str = "walk_slots";
/// Name of the per-slot array of socket addresses (`struct sock *` as a `u64`) the walk follows:
/// written when a program fills a slot, and by each `iter/tcp` table refresh for the sockets the
/// agent seeded; 0 until then (the walk skips the slot).
pub const SOCKET_ADDRS_MAP: &str = "SOCKET_ADDRS";
/// Name of the mappable array of [`WALK_CHUNK`] [`HeldSocket`]s one run of the walk writes: the
/// record of slot `first + i` at index `i`, with `cookie` 0 where the walk read nothing.
pub const WALK_RECORDS_MAP: &str = "WALK_RECORDS";
/// Slots one run of the walk covers: bounds each run's time with preemption off (about 0.2 ms
/// here) and its output array, which the agent maps (112 KiB of its resident memory; a run's
/// system call costs far less than its slots).
pub const WALK_CHUNK: u32 = 1024;
