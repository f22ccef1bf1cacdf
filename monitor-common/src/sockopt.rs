//! Changing another process's socket options from the kernel side: the agent puts one
//! [`SockoptRequest`] per socket (key: socket cookie) into [`SOCKOPT_REQUESTS_MAP`], then reads
//! the `iter/tcp` program [`ITER_TCP_SOCKOPT_PROGRAM`] (`monitor-ebpf/src/sockopt.rs`) in the
//! socket's network namespace. For each socket with a request the program records the options
//! as they were, applies the requested ones with `bpf_setsockopt` under the socket's lock, and
//! writes the outcome back into the same map value, which the agent then reads and deletes.
//!
//! Used by the active features: keepalive probes (`[probe]`: switch keepalive on with
//! short timers, later put back what was there) and keepalive enforcement for connections that
//! existed before a `[[enforce]]` policy (new ones get it from the `sock_ops` program).

/// Name of the `iter/tcp` program that applies [`SockoptRequest`]s.
pub const ITER_TCP_SOCKOPT_PROGRAM: &str = "iter_tcp_sockopt";
/// Name of the hash map cookie (`u64`) → [`SockoptRequest`].
pub const SOCKOPT_REQUESTS_MAP: &str = "SOCKOPT_REQUESTS";
/// The most requests one iterator read can carry; the agent batches above it.
pub const SOCKOPT_REQUESTS_CAPACITY: u32 = 4096;

/// [`SockoptRequest::set`] and friends: `SO_KEEPALIVE` (`SOCK_KEEPOPEN`).
pub const SET_KEEPALIVE: u32 = 1 << 0;
/// `TCP_KEEPIDLE` (`tcp_sock.keepalive_time`).
pub const SET_KEEPIDLE: u32 = 1 << 1;
/// `TCP_KEEPINTVL` (`tcp_sock.keepalive_intvl`).
pub const SET_KEEPINTVL: u32 = 1 << 2;
/// `TCP_KEEPCNT` (`tcp_sock.keepalive_probes`).
pub const SET_KEEPCNT: u32 = 1 << 3;
/// `TCP_USER_TIMEOUT` (`inet_connection_sock.icsk_user_timeout`).
pub const SET_USER_TIMEOUT: u32 = 1 << 4;

/// [`SockoptRequest::outcome`]: the program has not seen the socket (it is gone, or lives in
/// another namespace than the iterator's).
pub const OUTCOME_NOT_SEEN: u32 = 0;
/// The socket was visited: `before` and `explicit` are filled in, `applied` says what was set.
pub const OUTCOME_DONE: u32 = 1;

/// Socket option values, as `getsockopt` returns them to the application (so `keepidle_s` is
/// the namespace default `net.ipv4.tcp_keepalive_time` when the application never set it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockoptValues {
    /// `SO_KEEPALIVE`: 0 or 1.
    pub keepalive: u32,
    /// `TCP_KEEPIDLE`, seconds (1..=32767).
    pub keepidle_s: u32,
    /// `TCP_KEEPINTVL`, seconds (1..=32767).
    pub keepintvl_s: u32,
    /// `TCP_KEEPCNT` (1..=127).
    pub keepcnt: u32,
    /// `TCP_USER_TIMEOUT`, milliseconds (0 = off).
    pub user_timeout_ms: u32,
}

/// One socket's option change and, once the program ran, its outcome. The agent writes the
/// first three fields and zeroes the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockoptRequest {
    /// `SET_*` bits: which values of `want` to apply.
    pub set: u32,
    /// `SET_*` bits (a subset of `set`): apply these only where the socket still has the default,
    /// i.e. the application never set them (`fill` policies). For `SET_KEEPALIVE`: only switch
    /// keepalive on, never off.
    pub fill: u32,
    /// The values to apply. Applied in this order: user timeout, count, interval, idle, then
    /// `SO_KEEPALIVE` (so keepalive starts with its new timers).
    pub want: SockoptValues,
    /// Written by the program: [`OUTCOME_NOT_SEEN`] or [`OUTCOME_DONE`].
    pub outcome: u32,
    /// Written by the program: `SET_*` bits actually applied (`bpf_setsockopt` returned 0).
    pub applied: u32,
    /// Written by the program: the first negative errno of `bpf_getsockopt`/`bpf_setsockopt`,
    /// 0 when all succeeded.
    pub error: i32,
    /// Written by the program: `SET_*` bits the socket had set explicitly before the change
    /// (`SOCK_KEEPOPEN` on; `keepalive_time`, `keepalive_intvl`, `keepalive_probes`,
    /// `icsk_user_timeout` non-zero).
    pub explicit: u32,
    /// Written by the program: the values before the change (`bpf_getsockopt`).
    pub before: SockoptValues,
    /// Written by the program: `icsk_probes_out` before the change (keepalive probes sent since
    /// the peer last answered).
    pub probes_out: u32,
    /// Written by the program: `tcp_sock.rcv_tstamp` (jiffies, low 32 bits) — when the last ACK
    /// from the peer arrived.
    pub rcv_tstamp: u32,
    /// Written by the program: `icsk_ack.lrcvtime` (jiffies, low 32 bits) — when the last data
    /// from the peer arrived. With `rcv_tstamp`, it dates the keepalive timer's idle period
    /// (`keepalive_time_elapsed` counts from the later of the two).
    pub lrcvtime: u32,
    /// Written by the program: the low 32 bits of `jiffies` when it ran.
    pub now_jiffies: u32,
    /// Written by the program: the TCP state (`sk_state`).
    pub state: u32,
}

const _: () = assert!(core::mem::size_of::<SockoptValues>() == 20);
const _: () = assert!(core::mem::size_of::<SockoptRequest>() == 84);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only u32/i32 fields, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::SockoptRequest {}
    unsafe impl aya::Pod for super::SockoptValues {}
}
