//! Types shared by the kernel programs (`monitor-ebpf`) and the agent (`monitor`).
//!
//! Everything here is `#[repr(C)]` with explicit padding and a compile-time size check, because
//! both sides read and write the same bytes: the socket table through the agent's memory mapping
//! of it, the counters through the BPF map syscalls, and the offsets as global data at load time.
#![no_std]

pub mod counters;
pub mod enforce;
pub mod holders;
pub mod kernel_state;
pub mod sockopt;
pub mod stacks;
pub mod tcp_state;

/// The socket table is an array of [`SockActivity`] slots that the agent maps into its memory
/// (`BPF_F_MMAPABLE`), so a scan reads memory instead of walking a hash map through syscalls.
pub const SLOTS_MAP: &str = "SOCKET_SLOTS";
/// socket cookie → slot index in [`SLOTS_MAP`] (what the hooks look up).
pub const INDEX_MAP: &str = "SOCKET_INDEX";
/// Slots freed by closed sockets, reused first (a stack keeps the used slots dense).
pub const FREE_SLOTS_MAP: &str = "FREE_SLOTS";
/// One `u64`, mappable: how many slots have ever been handed out (the scan reads the slots below
/// it). The kernel side and the agent's seeding both add to it atomically.
pub const SLOTS_USED_MAP: &str = "SLOTS_USED";
/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Name of the per-CPU counter array (indexes in [`counters`]).
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the per-CPU state-transition array, indexed by `old * TCP_STATE_SLOTS + new`.
pub const TRANSITIONS_MAP: &str = "TRANSITIONS";
/// Name of the per-CPU socket-error array, indexed by errno.
pub const ERRORS_MAP: &str = "SOCKET_ERRORS";
/// Name of the global holding the kernel structure offsets.
pub const OFFSETS_GLOBAL: &str = "OFFSETS";
/// The `imm` of a kfunc call the programs make and the agent has yet to resolve: the programs
/// write each kfunc call with it (aya resolves no kfunc relocation), and the agent replaces it
/// with the kfunc's BTF id before loading the object.
pub const KFUNC_CALL_MARKER_IMM: u32 = 0x7ead_beef;

/// Default capacity of the per-socket table; the agent may change it at load time.
pub const DEFAULT_TABLE_CAPACITY: u32 = 262_144;
/// Slots per dimension in the transition matrix (kernel TCP states are 1..=13: `TCP_BOUND_INACTIVE`
/// is 13 since Linux 6.8, though only `sock_diag` reports it).
pub const TCP_STATE_SLOTS: u32 = 16;
/// Slots in the socket-error array, indexed by errno; errno values from `ERRNO_SLOTS - 1` up share
/// the last slot.
pub const ERRNO_SLOTS: u32 = 160;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// `SockActivity::flags`: the entry was written by the agent from `sock_diag` (the socket predates
/// the agent).
pub const FLAG_SEEDED: u8 = 1 << 0;
/// `SockActivity::flags`: `unacked_bytes` and `srtt_us` hold a value read from the socket.
pub const FLAG_TRANSPORT_KNOWN: u8 = 1 << 1;
/// `SockActivity::flags`: the kernel side has read the socket options (keepalive and its timers,
/// user timeout, and `FLAG_KEEPALIVE_ON` / `FLAG_ORPHAN`) from the socket.
pub const FLAG_OPTIONS_KNOWN: u8 = 1 << 2;
/// `SockActivity::flags`: `SO_KEEPALIVE` is on: read from the socket (with `FLAG_OPTIONS_KNOWN`),
/// or, in a seeded entry, a pending keepalive timer.
pub const FLAG_KEEPALIVE_ON: u8 = 1 << 3;
/// `SockActivity::flags`: the application has closed the socket (orphan): `SOCK_DEAD` read from the
/// socket, or, in a seeded entry, a socket without an inode.
pub const FLAG_ORPHAN: u8 = 1 << 4;
/// `SockActivity::flags`: the socket predates the agent and `state_since_ns` is when the agent
/// first saw it, so the socket entered its state no later than that: its state age is only a
/// lower bound.
pub const FLAG_STATE_SINCE_LOWER_BOUND: u8 = 1 << 5;

/// Everything the kernel side keeps about one TCP socket: one slot of the socket table, found by
/// socket cookie through the index map.
///
/// Timestamps are `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`); 0 means "not seen since the
/// socket was tracked", which the agent reports as unknown rather than as an age.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockActivity {
    /// Socket cookie of the socket in this slot; 0 for a free slot (or one being filled).
    pub cookie: u64,
    /// Local address; IPv4 uses the first four bytes.
    pub saddr: [u8; 16],
    /// Remote address; IPv4 uses the first four bytes.
    pub daddr: [u8; 16],
    /// `comm` of `tgid` (NUL padded).
    pub comm: [u8; 16],
    /// When the socket entered `state` (see `FLAG_STATE_SINCE_LOWER_BOUND`).
    pub state_since_ns: u64,
    /// Last application send that moved data (in a seeded entry, `tcp_info`'s last data sent).
    pub last_send_ns: u64,
    /// Last application receive that moved data (in a seeded entry, `tcp_info`'s last data
    /// received).
    pub last_recv_ns: u64,
    /// Last segment from the peer (`tcp_probe`: data, pure ACKs and keepalive answers; in a seeded
    /// entry, `tcp_info`'s last ACK received).
    pub last_peer_ns: u64,
    /// Bytes sent by the application (a seeded entry starts from `tcp_info`'s count).
    pub bytes_sent: u64,
    /// Bytes received by the application (a seeded entry starts from `tcp_info`'s count).
    pub bytes_received: u64,
    /// Network namespace inode (`/proc/PID/ns/net`), 0 when unknown.
    pub netns: u32,
    /// Owning process (tgid), taken in process context: the process that called `connect()` or
    /// `listen()`, then the last one that sent or received on the socket (in a seeded entry, a
    /// process holding its file descriptor); 0 when unknown.
    pub tgid: u32,
    /// Bytes in flight (`snd_nxt - snd_una`) at the last inbound segment or retransmit, or at
    /// seeding (valid with `FLAG_TRANSPORT_KNOWN`).
    pub unacked_bytes: u32,
    /// Smoothed RTT in microseconds, read with `unacked_bytes`.
    pub srtt_us: u32,
    /// Segments retransmitted (a seeded entry starts from `tcp_info`'s total).
    pub retransmits: u32,
    /// `TCP_KEEPIDLE` in jiffies; 0 = the sysctl default.
    pub keepalive_time: u32,
    /// `TCP_KEEPINTVL` in jiffies; 0 = the sysctl default.
    pub keepalive_intvl: u32,
    /// `TCP_USER_TIMEOUT` in milliseconds; 0 = not set.
    pub user_timeout_ms: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// Kernel TCP state number (see [`tcp_state`]).
    pub state: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// `TCP_KEEPCNT`; 0 = the sysctl default.
    pub keepalive_probes: u8,
    _pad: [u8; 7],
    /// What the socket itself said at the last kernel read (written by the `iter/tcp` table
    /// refresh program only; zero until the first read visits the socket).
    pub kernel: KernelSample,
}

const _: () = assert!(core::mem::size_of::<SockActivity>() == 192);
const _: () = assert!(core::mem::align_of::<SockActivity>() == 8);

impl SockActivity {
    /// An entry with every field 0 (a free slot, as the kernel creates the array).
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            cookie: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            comm: [0; 16],
            state_since_ns: 0,
            last_send_ns: 0,
            last_recv_ns: 0,
            last_peer_ns: 0,
            bytes_sent: 0,
            bytes_received: 0,
            netns: 0,
            tgid: 0,
            unacked_bytes: 0,
            srtt_us: 0,
            retransmits: 0,
            family: 0,
            sport: 0,
            dport: 0,
            keepalive_time: 0,
            keepalive_intvl: 0,
            user_timeout_ms: 0,
            state: 0,
            flags: 0,
            keepalive_probes: 0,
            _pad: [0; 7],
            kernel: KernelSample::zeroed(),
        }
    }
}

/// The values of one tracked socket that only the socket itself keeps, copied raw by the
/// `iter/tcp` table refresh program (`iter_tcp_table`) into the socket's slot whenever the agent
/// reads the kernel's socket state. The same program also refreshes, in place, the
/// [`SockActivity`] fields the kernel keeps a truer value of: the socket options and orphan
/// flag, `unacked_bytes` and `srtt_us`, and `retransmits` (the larger of the hooks' count and
/// `total_retrans`).
///
/// Nothing is converted on the kernel side: jiffies and sequence numbers stay raw, with the
/// clocks of the visit beside them (`read_ns`, `read_jiffies`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSample {
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the read visited the socket; 0 = never.
    pub read_ns: u64,
    /// Low 32 bits of `bpf_jiffies64()` at the same moment (the kernel's `tcp_jiffies32`).
    pub read_jiffies: u32,
    /// Last ACK from the peer, jiffies (`tcp_sock.rcv_tstamp`; `ss -i` `lastack`).
    pub rcv_tstamp: u32,
    /// First transmission of what is being retransmitted (`tcp_sock.retrans_stamp`), ms of
    /// `CLOCK_MONOTONIC` (µs with [`kernel_state::KS_USEC_TS`]) truncated to 32 bits; 0 = none.
    pub retrans_stamp: u32,
    /// Written by the application, not yet acknowledged: `write_seq - snd_una` (`ss` `Send-Q`).
    pub send_queue: u32,
    /// Received, not yet read by the application: `rcv_nxt - copied_seq` (`ss` `Recv-Q`; may
    /// read as negative while the kernel moves the two: clamp at 0).
    pub recv_queue: u32,
    /// Socket inode (`SOCK_INODE(sk_socket)->i_ino`, truncated to 32 bits as `ss -e` `ino:`
    /// prints it); 0 for an orphan.
    pub inode: u32,
    /// `skc_state` at the visit.
    pub state: u8,
    /// [`kernel_state::KS_USEC_TS`], [`kernel_state::KS_NO_SOCKET`] (other `KS_*` bits are
    /// not set here: the entry's own flags carry keepalive and orphan).
    pub flags: u8,
    _pad: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<KernelSample>() == 40);

impl KernelSample {
    /// A sample no read has written.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            read_ns: 0,
            read_jiffies: 0,
            rcv_tstamp: 0,
            retrans_stamp: 0,
            send_queue: 0,
            recv_queue: 0,
            inode: 0,
            state: 0,
            flags: 0,
            _pad: [0; 6],
        }
    }
}

/// Byte offsets of the kernel fields the programs read, computed by the agent from
/// `/sys/kernel/btf/vmlinux` at start-up (Rust eBPF has no CO-RE relocations).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_net: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// `struct net` → `ns.inum`.
    pub net_ns_inum: u32,
    pub sk_protocol: u32,
    pub sk_err: u32,
    pub tcp_snd_nxt: u32,
    pub tcp_snd_una: u32,
    pub tcp_srtt_us: u32,
    pub tcp_keepalive_time: u32,
    pub tcp_keepalive_intvl: u32,
    pub tcp_keepalive_probes: u32,
    /// `tcp_sock` → `inet_conn.icsk_user_timeout`.
    pub icsk_user_timeout: u32,
    pub sk_flags: u32,
    /// Bit numbers in `sk_flags` (`enum sock_flags`).
    pub sock_dead_bit: u32,
    pub sock_keepopen_bit: u32,
    /// `sk_buff` → `cb` + `tcp_skb_cb.ack_seq`: the acknowledgement the segment carries.
    pub skb_ack_seq: u32,
    // Read by the `iter/tcp` program (`kernel_state::KernelSockState`). `tcp_sock` fields, then
    // `inet_connection_sock` ones (through `tcp_sock.inet_conn`), then `struct sock` ones.
    pub tcp_write_seq: u32,
    pub tcp_rcv_nxt: u32,
    pub tcp_copied_seq: u32,
    pub tcp_snd_wnd: u32,
    pub tcp_rcv_tstamp: u32,
    pub tcp_lsndtime: u32,
    pub tcp_retrans_stamp: u32,
    pub tcp_packets_out: u32,
    pub tcp_retrans_out: u32,
    pub tcp_total_retrans: u32,
    /// Byte holding the `tcp_sock.tcp_usec_ts` bit-field, and the bit in that byte.
    pub tcp_usec_ts_byte: u32,
    pub tcp_usec_ts_bit: u32,
    /// `tcp_sock` → `inet_conn.icsk_ack.lrcvtime`.
    pub icsk_lrcvtime: u32,
    pub icsk_rto: u32,
    pub icsk_probes_out: u32,
    pub icsk_backoff: u32,
    pub icsk_retransmits: u32,
    pub icsk_pending: u32,
    pub sk_ack_backlog: u32,
    pub sk_max_ack_backlog: u32,
    /// `struct sock` → `sk_socket`.
    pub sk_socket: u32,
    /// From a `struct socket` to its inode number: `socket_alloc.vfs_inode.i_ino` minus
    /// `socket_alloc.socket` (`SOCK_INODE(sock)->i_ino`, the socket and its inode are one
    /// allocation).
    pub socket_ino: u32,
    /// `tcp_timewait_sock` → `tw_sk.tw_substate`.
    pub tw_substate: u32,
    // Read by the `iter/task_file` program (`holders::HeldSocket`).
    /// `task_struct` → `tgid`.
    pub task_tgid: u32,
    /// `struct socket` → `sk`.
    pub socket_sk: u32,
    /// `struct socket` → `type` (`SOCK_STREAM`, ...).
    pub socket_type: u32,
    /// `struct sock` → `__sk_common.skc_cookie` (0 until something asks for the cookie).
    pub skc_cookie: u32,
    /// `tcp_sock` → `bytes_sent` (segments sent, retransmissions included; `ss -i`
    /// `bytes_sent`), `bytes_received` (`bytes_received`): `u64` each.
    pub tcp_bytes_sent: u32,
    pub tcp_bytes_received: u32,
    /// `tcp_sock` → `segs_in`: every segment received, those the kernel drops as out of window
    /// (a peer's keepalive probe) included (`ss -i` `segs_in`).
    pub tcp_segs_in: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 53 * 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are repr(C), contain only integers and byte arrays, and have no padding
    // (checked by the size assertions above).
    unsafe impl aya::Pod for super::SockActivity {}
    unsafe impl aya::Pod for super::KernelSample {}
    unsafe impl aya::Pod for super::KernelOffsets {}
}
