//! `sock_diag`: the kernel's own view of TCP sockets over netlink, as `ss` asks for it.
//!
//! `sock_diag` (an `inet_diag` request over netlink) lists every TCP socket of a network
//! namespace, listeners included, with the kernel's own per-socket times (`tcp_info`). A netlink
//! socket only sees its own namespace, hence one dump (or one query socket) per namespace,
//! entered through [`netns`](crate::netns).
//!
//! I/O lives in `dump.rs` (every socket of a namespace: seeding the table at start, the
//! `destroy` command's lookup), `query.rs` (one socket exactly, for confirming a verdict),
//! `destroy.rs` (`SOCK_DESTROY`, for remediation and the `destroy` command) and `owners.rs`
//! (`/proc`: which process holds each socket); `by_netns.rs` keeps the query sockets per
//! namespace with their last use, so that unused ones are closed; parsing (`tcp_info.rs`) and the conversion of a
//! dumped socket to a kernel-table entry (`seed.rs`) are pure.

mod by_netns;
mod destroy;
mod dump;
mod owners;
mod query;
mod seed;
mod tcp_info;

use std::io;

pub use dump::{DiagSocket, dump, dump_all};
pub use owners::{Owner, socket_holders, socket_owners};
pub use query::{SocketKey, SocketQueries};
pub use seed::to_activity;
pub use tcp_info::TcpInfoSummary;

use crate::netns::NetnsError;

/// Why a `sock_diag` request failed.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    /// The socket's namespace could not be entered (gone, or no privilege).
    #[error(transparent)]
    Namespace(#[from] NetnsError),
    #[error("sock_diag netlink socket: {0}")]
    Netlink(io::Error),
    #[error("sock_diag request refused by the kernel: {0}")]
    Kernel(io::Error),
    #[error("malformed sock_diag message")]
    Decode(#[source] netlink_packet_core::DecodeError),
    #[error("the kernel dropped sock_diag messages (netlink overrun)")]
    Overrun,
    #[error("sock_diag message of {len} bytes did not fit the {capacity}-byte receive buffer")]
    Truncated { len: usize, capacity: usize },
}

impl SockDiagError {
    /// The namespace went away between listing and asking (its last process exited): expected
    /// churn, not worth a warning.
    #[must_use]
    pub fn is_vanished_namespace(&self) -> bool {
        matches!(self, Self::Namespace(error) if error.is_vanished_namespace())
    }
}
