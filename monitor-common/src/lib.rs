//! Types shared by the kernel programs (`monitor-ebpf`) and the agent (`monitor`).
//!
//! Everything here is `#[repr(C)]` with explicit padding and a compile-time size check, because the
//! kernel side writes these bytes and the agent reads them back through the BPF map syscalls.
#![no_std]

pub mod counters;
pub mod tcp_state;

/// The socket table is an array of [`SockActivity`] slots that the agent maps into its memory
/// (`BPF_F_MMAPABLE`), so a scan reads memory instead of walking a hash map through syscalls.
pub const SLOTS_MAP: &str = "SOCKET_SLOTS";
/// socket cookie → slot index in [`SLOTS_MAP`] (what the hooks look up).
pub const INDEX_MAP: &str = "SOCKET_INDEX";
/// Slots freed by closed sockets, reused first (a stack keeps the used slots dense).
pub const FREE_SLOTS_MAP: &str = "FREE_SLOTS";
/// One u32, mappable: how many slots have ever been handed out (the scan reads slots below it).
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

/// Default capacity of the per-socket table; the agent may change it at load time.
pub const DEFAULT_TABLE_CAPACITY: u32 = 262_144;
/// Slots per dimension in the transition matrix (kernel TCP states are 1..=12).
pub const TCP_STATE_SLOTS: u32 = 16;
/// Errno values above this are folded into the last slot.
pub const ERRNO_SLOTS: u32 = 160;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// `SockActivity::flags`: the entry was written by the agent from sock_diag (socket predates the agent).
pub const FLAG_SEEDED: u8 = 1 << 0;
/// `SockActivity::flags`: `unacked_bytes` and `srtt_us` hold a value read from the socket.
pub const FLAG_TRANSPORT_KNOWN: u8 = 1 << 1;
/// `SockActivity::flags`: the socket options below (keepalive, user timeout) have been read.
pub const FLAG_OPTIONS_KNOWN: u8 = 1 << 2;
/// `SockActivity::flags`: SO_KEEPALIVE is on (valid with `FLAG_OPTIONS_KNOWN`).
pub const FLAG_KEEPALIVE_ON: u8 = 1 << 3;
/// `SockActivity::flags`: the application has closed the socket (orphan, SOCK_DEAD).
pub const FLAG_ORPHAN: u8 = 1 << 4;
/// `SockActivity::flags`: `state_since_ns` is only a lower bound (when the agent first saw the
/// socket), for sockets that predate the agent.
pub const FLAG_STATE_SINCE_LOWER_BOUND: u8 = 1 << 5;

/// Everything the kernel keeps about one TCP socket, keyed by its socket cookie.
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
    /// `comm` of the last process that sent or received on the socket (NUL padded).
    pub comm: [u8; 16],
    pub state_since_ns: u64,
    pub last_send_ns: u64,
    pub last_recv_ns: u64,
    pub last_peer_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Network namespace inode (`/proc/PID/ns/net`), 0 when unknown.
    pub netns: u32,
    /// Owning process (tgid), taken in process context; 0 when unknown.
    pub tgid: u32,
    /// `snd_nxt - snd_una` at the last inbound segment or retransmit.
    pub unacked_bytes: u32,
    pub srtt_us: u32,
    pub retransmits: u32,
    /// TCP_KEEPIDLE in jiffies; 0 = the sysctl default.
    pub keepalive_time: u32,
    /// TCP_KEEPINTVL in jiffies; 0 = the sysctl default.
    pub keepalive_intvl: u32,
    /// TCP_USER_TIMEOUT in milliseconds; 0 = not set.
    pub user_timeout_ms: u32,
    pub family: u16,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// Kernel TCP state number (see [`tcp_state`]).
    pub state: u8,
    pub flags: u8,
    /// TCP_KEEPCNT; 0 = the sysctl default.
    pub keepalive_probes: u8,
    pub _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<SockActivity>() == 152);
const _: () = assert!(core::mem::align_of::<SockActivity>() == 8);

impl SockActivity {
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
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 23 * 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are repr(C), contain only integers and byte arrays, and have no padding
    // (checked by the size assertions above).
    unsafe impl aya::Pod for super::SockActivity {}
    unsafe impl aya::Pod for super::KernelOffsets {}
}
