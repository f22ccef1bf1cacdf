//! The snapshot: the one hand-off between I/O (maps, sock_diag) and logic (verdicts, metrics, JSON).
//!
//! A scan turns the kernel table into a [`Snapshot`] with every age computed once, against one
//! clock reading. Tests build snapshots by hand.

pub mod convert;
pub mod read;

use std::{net::SocketAddr, time::Duration};

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
    /// Reasons this connection looks dead or leaking (filled by the verdicts; empty until then).
    pub suspect: Vec<String>,
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
}
