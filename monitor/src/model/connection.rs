//! One TCP socket as the agent sees it at one moment: identity, owner, clocks, transport and
//! keepalive settings, and the verdicts. Pure data; `scan` fills it, everything above reads it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::pod::PodIdentity;
use super::{CallStack, Comm, ProbeResult, Reason};

/// What the agent knows about one TCP socket at one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// Kernel socket cookie (the same id `sock_diag` reports as `idiag_cookie`).
    pub cookie: u64,
    /// Kernel TCP state number (`monitor_common::tcp_state`), from `inet_sock_set_state`.
    pub state: u8,
    /// Local address and port (`skc_rcv_saddr`, `skc_num`).
    pub local: SocketAddr,
    /// Peer address and port (`skc_daddr`, `skc_dport`); unspecified for listeners.
    pub remote: SocketAddr,
    /// Network namespace inode (`net.ns.inum`), when known.
    pub netns: Option<u32>,
    /// Owning process id (tgid): the lowest pid among [`holders`](Self::holders) when they
    /// are known; a socket in its listener's accept queue takes the listener's owner; otherwise
    /// (holders not read yet, or the socket has no descriptor) the process the hooks saw in
    /// process context (send/receive, `connect()`, `listen()`) or, for seeded sockets, the
    /// holder `/proc/PID/fd` named at seeding.
    pub pid: Option<u32>,
    /// The owner's process name: the thread group leader's `comm` (`/proc/PID/comm`), so a
    /// threaded server is one process; the name of the thread the kernel side saw when `/proc`
    /// no longer has the pid.
    pub comm: Option<Comm>,
    /// Every process holding a descriptor of the socket at the last read of the processes'
    /// descriptors (`iter/task_file`), as `ss -p` lists them.
    pub holders: Holders,
    /// Time in the current state; unknown for sockets that predate the agent.
    pub state_age: Option<Duration>,
    /// For sockets that predate the agent: in this state at least this long (since first seen).
    pub state_age_at_least: Option<Duration>,
    /// Time since the most recent of send, receive and packet from the peer.
    pub idle: Option<Duration>,
    /// Since the application last sent (`sock_send_length`; `tcp_info` lastsnd when seeded).
    pub since_send: Option<Duration>,
    /// Since the application last received (`sock_recv_length`; lastrcv when seeded).
    pub since_recv: Option<Duration>,
    /// Since the last segment from the peer, pure ACKs and keepalive answers included
    /// (`tcp_probe`; lastack when seeded).
    pub since_peer: Option<Duration>,
    /// Bytes the application sent since the agent began tracking the socket.
    pub bytes_sent: u64,
    /// Bytes the application received since the agent began tracking the socket.
    pub bytes_received: u64,
    /// Bytes sent and not yet acknowledged (`snd_nxt - snd_una`), when read from the socket.
    pub unacked_bytes: Option<u32>,
    /// Smoothed round-trip time (`srtt_us`), when read from the socket.
    pub srtt: Option<Duration>,
    /// Bytes the application wrote that the peer has not acknowledged, sent or not
    /// (`write_seq - snd_una`, `ss` Send-Q), from the kernel's socket state.
    pub send_queue_bytes: Option<u32>,
    /// Bytes received that the application has not read (`rcv_nxt - copied_seq`, `ss` Recv-Q),
    /// from the kernel's socket state.
    pub recv_queue_bytes: Option<u32>,
    /// Retransmits seen since the agent started tracking the socket (plus `tcp_info`'s total when seeded).
    pub retransmits: u32,
    /// The socket existed before the agent started; its history came from `sock_diag`.
    pub seeded: bool,
    /// `SO_KEEPALIVE` and its effective timers, when known.
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT` (`icsk_user_timeout`), when set on the socket.
    pub user_timeout: Option<Duration>,
    /// The application has closed the socket (`SOCK_DEAD`): the kernel finishes it alone.
    pub orphan: bool,
    /// Still in its listener's accept queue: the handshake completed and no `accept()` took it
    /// (`sk_socket` NULL, not orphaned). Its owner is the listener's.
    pub accept_queue: bool,
    /// cgroup v2 path of the owning process (container attribution), when known.
    /// Shared by every connection of the process (one `Arc` per pid, cached by the scan).
    pub cgroup: Option<Arc<str>>,
    /// The Kubernetes pod of the owning process, when its cgroup path shows one or the
    /// container runtime's labels name one ([`PodIdentity`]). Shared by every connection of
    /// the container (one `Arc` per container id).
    pub pod: Option<Arc<PodIdentity>>,
    /// The `[[enforce]]` policy that set this connection's keepalive timers or user timeout
    /// (its `name`), when one did.
    pub enforced: Option<Arc<str>>,
    /// Since the first transmission of the data the kernel is retransmitting (`retrans_stamp`,
    /// from the kernel read): the clock the kernel's give-up timer runs on. None when nothing
    /// is being retransmitted, or without the kernel read.
    pub since_retrans_start: Option<Duration>,
    /// For `peer_unresponsive`: how long until the kernel gives up retransmitting.
    pub gives_up_in: Option<Duration>,
    /// Reasons this connection looks dead or leaking (filled by the verdicts each scan).
    pub suspect: Vec<Reason>,
    /// The latest keepalive probe of the `[probe]` feature, when it probed this socket.
    pub probe: Option<ProbeResult>,
    /// The user-space call stack of the `connect()` or `accept()` that opened the connection,
    /// symbolized (`[forensics] stacks`); only on connections a scan found suspect, once
    /// symbolized (the scan after the one that raised the verdict at the latest).
    pub stack: Option<Arc<CallStack>>,
    /// `net.netfilter.nf_conntrack_tcp_timeout_established` of the socket's own network
    /// namespace; None when that namespace has no conntrack (the sysctl file is absent).
    pub conntrack_timeout: Option<Duration>,
    /// The host's own conntrack entry for this flow, when the kernel was asked and has one
    /// (an idle candidate only: see `scan::conntrack`).
    pub conntrack: Option<ConntrackDrop>,
}

impl Connection {
    /// A connection with nothing known but its identity (tests and conversions fill the rest).
    #[must_use]
    pub fn new(cookie: u64, state: u8, local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            cookie,
            state,
            local,
            remote,
            netns: None,
            pid: None,
            comm: None,
            holders: Holders::Unknown,
            state_age: None,
            state_age_at_least: None,
            idle: None,
            since_send: None,
            since_recv: None,
            since_peer: None,
            bytes_sent: 0,
            bytes_received: 0,
            unacked_bytes: None,
            srtt: None,
            send_queue_bytes: None,
            recv_queue_bytes: None,
            retransmits: 0,
            seeded: false,
            keepalive: None,
            user_timeout: None,
            orphan: false,
            accept_queue: false,
            cgroup: None,
            pod: None,
            enforced: None,
            since_retrans_start: None,
            gives_up_in: None,
            suspect: Vec::new(),
            probe: None,
            stack: None,
            conntrack_timeout: None,
            conntrack: None,
        }
    }
}

/// When the host's conntrack (in the socket's own network namespace or the agent's) drops an
/// idle flow, from the kernel's entry for it (ctnetlink `CTA_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackDrop {
    /// `nf_conntrack_tcp_timeout_established` of the namespace whose entry it is: the idle
    /// timeout the rule takes its share of.
    pub timeout: Duration,
    /// The connection's idle time at which the entry expires: its idle time when asked plus
    /// the seconds the entry had left.
    pub drops_at_idle: Duration,
}

/// Keepalive settings of one socket. Timers are the effective values: the socket's own when set
/// (`TCP_KEEPIDLE/INTVL/CNT`), else the sysctl defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// `SO_KEEPALIVE` (`SOCK_KEEPOPEN` in `sk_flags`).
    pub enabled: bool,
    /// Idle time before the first probe (`keepalive_time`, else `net.ipv4.tcp_keepalive_time`);
    /// None when the socket's own value is set but `CONFIG_HZ` is unknown.
    pub idle: Option<Duration>,
    /// Between probes (`keepalive_intvl`, else `net.ipv4.tcp_keepalive_intvl`).
    pub interval: Option<Duration>,
    /// Unanswered probes before the kernel resets (`keepalive_probes`, else
    /// `net.ipv4.tcp_keepalive_probes`).
    pub count: Option<u32>,
}

/// One process holding a socket: its pid (tgid) and name (`/proc/PID/comm`, None once gone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub comm: Option<Comm>,
}

/// The processes holding a socket now. One holder is kept inline: the common case costs no
/// allocation per socket and scan.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Holders {
    /// Not known: no read of the processes' descriptors yet (or the kernel refused it), or the
    /// socket is newer than the last read, or it is held outside the agent's PID namespace.
    #[default]
    Unknown,
    /// Held by exactly this process.
    One(Holder),
    /// Held by no process (the application closed it, or it waits in its listener's accept
    /// queue), or by several, ascending by pid.
    Many(Vec<Holder>),
}

impl Holders {
    /// Every holder, ascending by pid; None when not known.
    #[must_use]
    pub fn as_slice(&self) -> Option<&[Holder]> {
        match self {
            Self::Unknown => None,
            Self::One(holder) => Some(std::slice::from_ref(holder)),
            Self::Many(holders) => Some(holders),
        }
    }
}
