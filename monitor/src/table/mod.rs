//! The snapshot: the one hand-off between I/O (maps, sock_diag) and logic (verdicts, metrics, JSON).
//!
//! A scan streams the kernel table through one per-socket pipeline ([`pipeline`]: convert,
//! attribute, judge, with every age computed against one clock reading) into a [`Snapshot`]
//! that keeps aggregates and suspects only ([`summary`]): its size follows the number of label
//! sets and suspects, not the number of sockets. Tests build snapshots from connection lists
//! through the same code ([`Snapshot::from_connections`]).

pub mod cgroups;
pub mod comm;
pub mod convert;
pub mod kernel_defaults;
pub mod pipeline;
pub mod read;
pub mod summary;

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

pub use self::{comm::Comm, summary::Summary};
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
    pub comm: Option<Comm>,
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
    /// Shared by every connection of the process (see [`cgroups::CgroupCache`]).
    pub cgroup: Option<Arc<str>>,
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

/// One scan's view of the host: aggregates and suspects, no per-socket data for healthy sockets
/// (`/connections` reads the live table instead).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Everything `/metrics` reports about the sockets, precomputed.
    pub summary: Summary,
    /// The connections with at least one reason in `suspect`, in table order.
    pub suspects: Vec<Connection>,
    /// Where something listens, to tell service ports from ephemeral ones.
    pub service_ports: ServicePorts,
    /// Of the cookies the scan was asked to watch (the alert tracker's previous suspects), those
    /// still in the table: how a cleared alert tells "socket closed" from "recovered" without
    /// the snapshot keeping every cookie.
    pub watched_open: HashSet<u64>,
    pub counters: KernelCounters,
    /// Live entries in the kernel table (CLOSE and TIME_WAIT stragglers excluded).
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

impl Snapshot {
    /// The snapshot a scan of exactly these connections would publish (counters, hooks and
    /// capacity left empty): tests and benchmarks build snapshots through the scan's own code.
    /// Every cookie counts as watched.
    pub fn from_connections(
        connections: impl IntoIterator<Item = Connection>,
        grouping: Grouping,
    ) -> Self {
        let connections: Vec<Connection> = connections.into_iter().collect();
        let watched = connections.iter().map(|c| c.cookie).collect();
        let mut builder = summary::SnapshotBuilder::new(grouping, watched);
        connections.into_iter().for_each(|c| builder.add(c));
        builder.finish()
    }
}

/// The ports this host serves on: (network namespace, port) of every listening socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePorts(HashSet<(Option<u32>, u16)>);

impl ServicePorts {
    /// Records a listening socket.
    pub fn insert(&mut self, netns: Option<u32>, port: u16) {
        self.0.insert((netns, port));
    }

    /// The local port of `c` when it is a port something listens on (an accepted connection);
    /// None for outbound connections, whose local port is ephemeral: labelling or grouping by it
    /// would make one series or alert per leaked socket.
    pub fn service_port(&self, c: &Connection) -> Option<u16> {
        self.resolve(c.netns, c.local.port())
    }

    /// [`service_port`](Self::service_port) for a (namespace, local port) pair.
    pub fn resolve(&self, netns: Option<u32>, port: u16) -> Option<u16> {
        self.0.contains(&(netns, port)).then_some(port)
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
