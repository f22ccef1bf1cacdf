//! The snapshot: the one hand-off between I/O (maps, sock_diag) and logic (verdicts, metrics, JSON).
//!
//! A scan turns the kernel table into a [`Snapshot`] with every age computed once, against one
//! clock reading. Tests build snapshots by hand.

pub mod convert;
pub mod kernel_defaults;
pub mod read;

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use crate::verdict::Reason;

/// What the agent knows about one TCP socket at one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// Kernel socket cookie (the same id sock_diag reports as `idiag_cookie`).
    pub cookie: u64,
    /// Kernel TCP state number (`monitor_common::tcp_state`).
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Network namespace inode, when known.
    pub netns: Option<u32>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// Time in the current state; unknown for sockets that predate the agent.
    pub state_age: Option<Duration>,
    /// For sockets that predate the agent: in this state at least this long (since first seen).
    pub state_age_at_least: Option<Duration>,
    /// Time since the most recent of send, receive and packet from the peer.
    pub idle: Option<Duration>,
    pub since_send: Option<Duration>,
    pub since_recv: Option<Duration>,
    pub since_peer: Option<Duration>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes sent and not yet acknowledged, when read from the socket.
    pub unacked_bytes: Option<u32>,
    pub srtt: Option<Duration>,
    /// Retransmits seen since the agent started tracking the socket (plus tcp_info's total when seeded).
    pub retransmits: u32,
    /// The socket existed before the agent started; its history came from sock_diag.
    pub seeded: bool,
    /// SO_KEEPALIVE and its effective timers, when known.
    pub keepalive: Option<Keepalive>,
    /// TCP_USER_TIMEOUT, when set on the socket.
    pub user_timeout: Option<Duration>,
    /// The application has closed the socket (the kernel finishes it alone), when known.
    pub orphan: bool,
    /// cgroup v2 path of the owning process (container attribution), when known.
    pub cgroup: Option<String>,
    /// For `peer_unresponsive`: how long until the kernel gives up retransmitting.
    pub gives_up_in: Option<Duration>,
    /// Reasons this connection looks dead or leaking (filled by the verdicts each scan).
    pub suspect: Vec<Reason>,
}

impl Connection {
    /// A connection with nothing known but its identity (tests and conversions fill the rest).
    pub fn new(cookie: u64, state: u8, local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            cookie,
            state,
            local,
            remote,
            netns: None,
            pid: None,
            comm: None,
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
            retransmits: 0,
            seeded: false,
            keepalive: None,
            user_timeout: None,
            orphan: false,
            cgroup: None,
            gives_up_in: None,
            suspect: Vec::new(),
        }
    }
}

/// Keepalive settings of one socket. Timers are the effective values: the socket's own when set
/// (TCP_KEEPIDLE/INTVL/CNT), else the sysctl defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub enabled: bool,
    pub idle: Option<Duration>,
    pub interval: Option<Duration>,
    pub count: Option<u32>,
}

/// Kernel-side counters, summed over CPUs. All monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub table_insert_failures: u64,
    /// `(from_state, to_state, count)`, non-zero entries only.
    pub transitions: Vec<(u8, u8, u64)>,
    /// `(errno, count)`, non-zero entries only.
    pub socket_errors: Vec<(u32, u64)>,
}

/// Whether one kernel hook is attached, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookStatus {
    pub hook: &'static str,
    pub attached: bool,
    pub error: Option<String>,
}

/// One scan's view of the host.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every tracked socket, listeners included.
    pub connections: Vec<Connection>,
    pub counters: KernelCounters,
    /// Entries in the kernel table.
    pub tracked_sockets: usize,
    pub table_capacity: u32,
    pub hooks: Vec<HookStatus>,
    /// How long the scan took.
    pub scan_duration: Duration,
    /// Connections newly found suspect since the agent started, per reason (cumulative).
    pub detections: BTreeMap<Reason, u64>,
    /// How owners are grouped in bounded-cardinality metrics.
    pub grouping: Grouping,
}

/// The ports this host serves on: (network namespace, port) of every listening socket.
#[derive(Debug, Default)]
pub struct ServicePorts(HashSet<(Option<u32>, u16)>);

impl ServicePorts {
    pub fn of(snapshot: &Snapshot) -> Self {
        let listening = snapshot
            .connections
            .iter()
            .filter(|c| c.state == monitor_common::tcp_state::LISTEN);
        Self(listening.map(|c| (c.netns, c.local.port())).collect())
    }

    /// The local port of `c` when it is a port something listens on (an accepted connection);
    /// None for outbound connections, whose local port is ephemeral: labelling or grouping by it
    /// would make one series or alert per leaked socket.
    pub fn service_port(&self, c: &Connection) -> Option<u16> {
        let port = c.local.port();
        self.0.contains(&(c.netns, port)).then_some(port)
    }
}

/// Label value for a connection's port in metrics and Alertmanager: the service port, or
/// "outbound" for connections this host opened.
pub fn port_label(port: Option<u16>) -> String {
    port.map_or_else(|| "outbound".to_owned(), |p| p.to_string())
}

/// Top-N settings for owner-labelled metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub top_n: usize,
    /// Label owners by cgroup (containers) instead of process name.
    pub by_cgroup: bool,
}

impl Default for Grouping {
    fn default() -> Self {
        Self {
            top_n: 20,
            by_cgroup: false,
        }
    }
}
