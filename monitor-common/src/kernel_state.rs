//! The kernel's own per-socket state, one [`KernelSockState`] record per TCP socket, written by the
//! `iter/tcp` program (`monitor-ebpf/src/iter.rs`, `bpf_seq_write`) and read by the agent from the
//! iterator's file (`monitor/src/bpf/kernel_state.rs`).
//!
//! Every value is copied from the kernel socket as it is (no conversion on the kernel side): times
//! stay in jiffies and sequence numbers stay raw, with the clocks read at the same moment
//! (`now_jiffies`, `now_ns`) so the agent can turn them into ages.

/// Name of the `iter/tcp` program in the object that writes one [`KernelSockState`] per socket.
pub const ITER_TCP_PROGRAM: &str = "iter_tcp";
/// Name of the `iter/tcp` program that refreshes the socket table: it writes each tracked
/// socket's own values into its slot ([`crate::KernelSample`], and the kernel-kept fields of
/// [`crate::SockActivity`] in place), and one [`KernelSockState`] for every other socket
/// (untracked full sockets, `TIME_WAIT` and request sockets).
pub const ITER_TCP_TABLE_PROGRAM: &str = "iter_tcp_table";

/// [`KernelSockState::kind`]: not recognised (never written by the current program).
pub const KIND_UNKNOWN: u8 = 0;
/// [`KernelSockState::kind`]: a full socket (`struct tcp_sock`, `bpf_skc_to_tcp_sock` succeeded):
/// every field is filled in.
pub const KIND_FULL: u8 = 1;
/// [`KernelSockState::kind`]: a `TIME_WAIT` mini-socket (`struct tcp_timewait_sock`): identity,
/// `state` and `tw_substate` only.
pub const KIND_TIME_WAIT: u8 = 2;
/// [`KernelSockState::kind`]: a request socket (`NEW_SYN_RECV`, `struct tcp_request_sock`, a
/// connection in a listener's SYN queue): identity and `state` only.
pub const KIND_REQUEST: u8 = 3;

/// [`KernelSockState::flags`]: `SOCK_KEEPOPEN` is set in `sk_flags` (`SO_KEEPALIVE` is on).
pub const KS_KEEPOPEN: u8 = 1 << 0;
/// [`KernelSockState::flags`]: `SOCK_DEAD` is set in `sk_flags` (the application closed the
/// socket: an orphan the kernel finishes alone).
pub const KS_DEAD: u8 = 1 << 1;
/// [`KernelSockState::flags`]: `tcp_sock.tcp_usec_ts` is set (the connection negotiated
/// microsecond TCP timestamps): `retrans_stamp` is in microseconds instead of milliseconds.
pub const KS_USEC_TS: u8 = 1 << 2;
/// `sk_socket` is NULL: no process holds a file for the socket. Without [`KS_DEAD`], it is still
/// in its listener's accept queue (the handshake completed, `accept()` has not taken it yet).
pub const KS_NO_SOCKET: u8 = 1 << 3;

/// One TCP socket of a network namespace as the kernel keeps it, read by the `iter/tcp` program.
///
/// Identity fields (`cookie`, addresses, ports, `family`, `netns`, `state`) are filled for every
/// kind; the rest only for [`KIND_FULL`] (0 otherwise), except `tw_substate` ([`KIND_TIME_WAIT`]).
/// Jiffies are the kernel's `u32` view (`tcp_jiffies32`); compare them with the low 32 bits of
/// `now_jiffies` in wrapping arithmetic.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSockState {
    /// Socket cookie (`bpf_get_socket_cookie`): the id `sock_diag` reports (`ss -e` `sk:`) and the
    /// key of the agent's socket table.
    pub cookie: u64,
    /// `bpf_jiffies64()` when the program visited this socket.
    pub now_jiffies: u64,
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the program visited this socket.
    pub now_ns: u64,
    /// Inode of the socket (`SOCK_INODE(sk_socket)->i_ino`, as `sock_i_ino`; `ss -e` `ino:`); 0
    /// when the socket has no `struct socket` (an orphan).
    pub inode: u64,
    /// Local address (`skc_rcv_saddr`, or `skc_v6_rcv_saddr` for `AF_INET6`), network byte
    /// order; IPv4 uses the first four bytes.
    pub saddr: [u8; 16],
    /// Remote address (`skc_daddr` / `skc_v6_daddr`), as `saddr`.
    pub daddr: [u8; 16],
    /// Network namespace inode (`skc_net->ns.inum`).
    pub netns: u32,
    /// Owner uid as the iterator reports it (`sock_i_uid`; the listener's for a request socket,
    /// 0 for `TIME_WAIT`).
    pub uid: u32,
    /// Last ACK from the peer, jiffies (`tcp_sock.rcv_tstamp`; `ss -i` `lastack`).
    pub rcv_tstamp: u32,
    /// Last data sent, jiffies (`tcp_sock.lsndtime`; `ss -i` `lastsnd`).
    pub lsndtime: u32,
    /// Last data received, jiffies (`inet_connection_sock.icsk_ack.lrcvtime`; `ss -i` `lastrcv`).
    pub lrcvtime: u32,
    /// First retransmission of the current loss episode (`tcp_sock.retrans_stamp`), in
    /// milliseconds of `CLOCK_MONOTONIC` (microseconds with [`KS_USEC_TS`]), truncated to 32 bits;
    /// 0 when nothing is being retransmitted.
    pub retrans_stamp: u32,
    /// Oldest unacknowledged sequence number (`tcp_sock.snd_una`).
    pub snd_una: u32,
    /// Next sequence number to send (`tcp_sock.snd_nxt`).
    pub snd_nxt: u32,
    /// End of the data the application has written (`tcp_sock.write_seq`).
    pub write_seq: u32,
    /// Next sequence number expected from the peer (`tcp_sock.rcv_nxt`).
    pub rcv_nxt: u32,
    /// End of the data the application has read (`tcp_sock.copied_seq`).
    pub copied_seq: u32,
    /// The peer's advertised window, bytes (`tcp_sock.snd_wnd`; 0 = a reader that stopped
    /// reading).
    pub snd_wnd: u32,
    /// Segments in flight (`tcp_sock.packets_out`; `ss -i` `unacked`).
    pub packets_out: u32,
    /// Retransmitted segments still in flight (`tcp_sock.retrans_out`; `ss -i` `retrans:X/`).
    pub retrans_out: u32,
    /// Segments retransmitted over the socket's life (`tcp_sock.total_retrans`; `ss -i`
    /// `retrans:/Y`).
    pub total_retrans: u32,
    /// Retransmission timeout, jiffies (`inet_connection_sock.icsk_rto`; `ss -i` `rto`).
    pub rto: u32,
    /// `TCP_USER_TIMEOUT` in milliseconds (`icsk_user_timeout`); 0 = not set.
    pub user_timeout_ms: u32,
    /// `TCP_KEEPIDLE` in jiffies (`tcp_sock.keepalive_time`); 0 = the namespace's sysctl.
    pub keepalive_time: u32,
    /// `TCP_KEEPINTVL` in jiffies (`tcp_sock.keepalive_intvl`); 0 = the namespace's sysctl.
    pub keepalive_intvl: u32,
    /// Accept queue length of a listener (`sk_ack_backlog`; `ss` `Recv-Q` of a listener).
    pub ack_backlog: u32,
    /// Accept queue limit of a listener (`sk_max_ack_backlog`; `ss` `Send-Q` of a listener).
    pub max_ack_backlog: u32,
    /// `AF_INET` or `AF_INET6` (`skc_family`).
    pub family: u16,
    /// Local port, host byte order (`skc_num`).
    pub sport: u16,
    /// Remote port, host byte order (`skc_dport`).
    pub dport: u16,
    /// Kernel TCP state number (`skc_state`, see `tcp_state`): `TIME_WAIT` for every
    /// [`KIND_TIME_WAIT`] record, `NEW_SYN_RECV` for [`KIND_REQUEST`].
    pub state: u8,
    /// State a `TIME_WAIT` mini-socket stands in for (`inet_timewait_sock.tw_substate`:
    /// `TIME_WAIT`, or `FIN_WAIT2` for an orphan whose `FIN_WAIT2` timeout moved to a mini-socket;
    /// `sock_diag` reports this one).
    pub tw_substate: u8,
    /// `KIND_*`.
    pub kind: u8,
    /// `KS_*` bits.
    pub flags: u8,
    /// Keepalive or zero-window probes sent without an answer (`icsk_probes_out`).
    pub probes_out: u8,
    /// Exponential backoff of the retransmission timer (`icsk_backoff`; `ss -i` `backoff`).
    pub backoff: u8,
    /// Consecutive retransmission timeouts without progress (`icsk_retransmits`,
    /// `tcp_info.tcpi_retransmits`).
    pub retransmits: u8,
    /// `TCP_KEEPCNT` (`tcp_sock.keepalive_probes`); 0 = the namespace's sysctl.
    pub keepalive_probes: u8,
    /// Pending connection timer (`icsk_pending`: 0 none, 1 retransmit, 2 delayed ACK, 3 zero
    /// window probe, 4 loss probe, 5 reorder).
    pub pending_timer: u8,
    _pad: [u8; 5],
}

const _: () = assert!(core::mem::size_of::<KernelSockState>() == 168);
const _: () = assert!(core::mem::align_of::<KernelSockState>() == 8);

impl KernelSockState {
    /// A record with every field 0.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            cookie: 0,
            now_jiffies: 0,
            now_ns: 0,
            inode: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            netns: 0,
            uid: 0,
            rcv_tstamp: 0,
            lsndtime: 0,
            lrcvtime: 0,
            retrans_stamp: 0,
            snd_una: 0,
            snd_nxt: 0,
            write_seq: 0,
            rcv_nxt: 0,
            copied_seq: 0,
            snd_wnd: 0,
            packets_out: 0,
            retrans_out: 0,
            total_retrans: 0,
            rto: 0,
            user_timeout_ms: 0,
            keepalive_time: 0,
            keepalive_intvl: 0,
            ack_backlog: 0,
            max_ack_backlog: 0,
            family: 0,
            sport: 0,
            dport: 0,
            state: 0,
            tw_substate: 0,
            kind: 0,
            flags: 0,
            probes_out: 0,
            backoff: 0,
            retransmits: 0,
            keepalive_probes: 0,
            pending_timer: 0,
            _pad: [0; 5],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only integers and byte arrays, no implicit padding (the size assertion
    // above counts every field and `_pad`).
    unsafe impl aya::Pod for super::KernelSockState {}
}
