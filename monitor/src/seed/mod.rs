//! `sock_diag` seeding: the TCP sockets that existed before the agent started.
//!
//! The kernel probes only see sockets that change state or move data after they attach (a later
//! `listen()` included: it is a CLOSE → LISTEN transition). `sock_diag` (an `inet_diag` dump over
//! netlink) lists every TCP socket of a network namespace, listeners included, with the kernel's
//! own per-socket times (`tcp_info`), so the agent can seed its table with what was there before
//! it. A netlink socket only sees its own namespace, hence one dump per namespace.
//!
//! I/O lives in [`netns`] (namespaces), [`diag`] (netlink dumps), [`query`] (one socket, for
//! confirming a verdict) and [`owners`] (`/proc`); parsing
//! ([`tcp_info`]) and the conversion to a kernel-table entry ([`activity`]) are pure.

mod activity;
mod diag;
mod netns;
mod owners;
mod query;
mod tcp_info;

use std::{io, path::PathBuf};

pub use activity::to_activity;
pub use diag::{DiagSocket, dump, dump_all};
pub use netns::{Netns, find_namespaces, in_namespace, ns_inode};
pub use owners::{Owner, socket_holders, socket_holders_of, socket_owners};
pub use query::{SocketKey, SocketQueries};
pub use tcp_info::TcpInfoSummary;

/// Why a `sock_diag` dump failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot open network namespace {path}: {source}")]
    OpenNamespace { path: PathBuf, source: io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    EnterNamespace { path: PathBuf, source: nix::Error },
    #[error("cannot start the thread that enters a namespace: {0}")]
    Thread(io::Error),
    #[error("the thread dumping namespace {0} panicked")]
    ThreadPanicked(PathBuf),
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

impl SeedError {
    /// The namespace went away between listing and dumping (its last process exited): expected
    /// churn, not worth a warning.
    #[must_use]
    pub fn is_vanished_namespace(&self) -> bool {
        matches!(self, Self::OpenNamespace { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)))
    }
}
