//! Exact `sock_diag` queries: one socket by its addresses, ports and cookie, as `ss` asks the
//! kernel about one socket — the kernel's own state of that socket *now*, for confirming a
//! verdict at the scan that raises it.
//!
//! A netlink socket answers for the namespace it was created in, so one is opened (inside a
//! thread that entered the namespace) per namespace on first use and kept: later queries need
//! no `setns()`, and cost one request and one reply (~10–20 µs).
//!
//! The same sockets destroy one socket ([`SocketQueries::destroy`], in `destroy.rs`).

use std::{net::SocketAddr, time::Instant};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::SOCK_DIAG_BY_FAMILY,
    inet::{SocketId, StateFlags},
};
use netlink_sys::Socket;

use super::{
    SockDiagError,
    by_netns::ByNetns,
    dump::{self, DiagSocket},
};
use crate::netns;

/// Which socket to ask about (what a table entry knows of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketKey {
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The socket cookie: a socket that reuses the same addresses and ports is not this one.
    pub cookie: u64,
}

impl SocketKey {
    /// The key of the socket `cookie` with these addresses in namespace `netns`; the family
    /// follows the local address (a v4-mapped IPv6 address is `AF_INET6`, as the kernel sees
    /// it).
    #[must_use]
    pub fn new(netns: u32, local: SocketAddr, remote: SocketAddr, cookie: u64) -> Self {
        Self {
            netns,
            family: if local.is_ipv4() {
                monitor_common::AF_INET
            } else {
                monitor_common::AF_INET6
            },
            local,
            remote,
            cookie,
        }
    }
}

/// The per-namespace netlink sockets that answer exact queries. Each holds its namespace
/// alive, so the owner closes those it stopped using ([`close_unused_since`](Self::close_unused_since)).
#[derive(Default)]
pub struct SocketQueries {
    by_netns: ByNetns<Socket>,
}

impl SocketQueries {
    /// The kernel's current view of the socket `key` names; `None` when the kernel has no such
    /// socket any more (closed, or its addresses now belong to another socket). A namespace not
    /// queried before is looked up in `/proc` and entered once.
    ///
    /// # Errors
    /// The namespace is gone or cannot be entered, or the netlink request fails ([`SockDiagError`]);
    /// the namespace's socket is then dropped and reopened on the next query.
    pub fn query(&mut self, key: &SocketKey) -> Result<Option<DiagSocket>, SockDiagError> {
        let answer = ask(self.socket_for(key.netns)?, key);
        if answer.is_err() {
            self.forget(key.netns);
        }
        answer
    }

    /// The socket that answers for namespace `netns`, opened there on first use.
    pub(super) fn socket_for(&mut self, netns: u32) -> Result<&Socket, SockDiagError> {
        self.by_netns
            .get_or_open(netns, Instant::now(), || open_in(netns))
    }

    /// Forgets namespace `netns`'s socket (after a failed request): the next one reopens it.
    pub(super) fn forget(&mut self, netns: u32) {
        self.by_netns.forget(netns);
    }

    /// Closes the sockets last used before `cutoff`, releasing their namespaces; returns how
    /// many were closed.
    pub fn close_unused_since(&mut self, cutoff: Instant) -> usize {
        self.by_netns.close_unused_since(cutoff)
    }
}

/// A `sock_diag` socket opened inside the namespace whose inode is `netns`.
fn open_in(netns: u32) -> Result<Socket, SockDiagError> {
    netns::in_namespace_of(netns, dump::open_socket)?
}

/// One request, one reply: the socket, or ENOENT (no socket with those addresses) / ESTALE
/// (another socket has them now) as None.
fn ask(socket: &Socket, key: &SocketKey) -> Result<Option<DiagSocket>, SockDiagError> {
    socket
        .send(&request(key), 0)
        .map_err(SockDiagError::Netlink)?;
    let mut buf = Vec::with_capacity(dump::RECV_BUFFER);
    socket.recv(&mut buf, 0).map_err(SockDiagError::Netlink)?;
    let message =
        NetlinkMessage::<SockDiagMessage>::deserialize(&buf).map_err(SockDiagError::Decode)?;
    match message.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            Ok(Some(dump::from_response(key.netns, &response)))
        }
        NetlinkPayload::Error(err) => match err.to_io().raw_os_error() {
            Some(libc::ENOENT | libc::ESTALE) => Ok(None),
            _ => Err(SockDiagError::Kernel(err.to_io())),
        },
        _ => Ok(None),
    }
}

/// The serialized exact request: every state, with `tcp_info`.
fn request(key: &SocketKey) -> Vec<u8> {
    serialize(key, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST)
}

/// A request about exactly the socket `key` names (addresses, ports and cookie).
pub(super) fn serialize(key: &SocketKey, message_type: u16, flags: u16) -> Vec<u8> {
    let lo = u32::try_from(key.cookie & u64::from(u32::MAX)).unwrap_or(0);
    let hi = u32::try_from(key.cookie >> 32).unwrap_or(0);
    let mut cookie = [0u8; 8];
    cookie[..4].copy_from_slice(&lo.to_ne_bytes());
    cookie[4..].copy_from_slice(&hi.to_ne_bytes());
    let socket_id = SocketId {
        source_port: key.local.port(),
        destination_port: key.remote.port(),
        source_address: key.local.ip(),
        destination_address: key.remote.ip(),
        interface_id: 0,
        cookie,
    };
    let family = u8::try_from(key.family).unwrap_or(0);
    dump::serialize(message_type, flags, family, StateFlags::all(), socket_id)
}
