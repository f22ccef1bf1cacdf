//! Exact `sock_diag` queries: one socket by its addresses, ports and cookie, as `ss` asks the
//! kernel about one socket — the kernel's own state of that socket *now*, for confirming a
//! verdict at the scan that raises it.
//!
//! A netlink socket answers for the namespace it was created in, so one is opened (inside a
//! thread that entered the namespace) per namespace on first use and kept: later queries need
//! no `setns()`, and cost one request and one reply (~10–20 µs).
//!
//! The same sockets destroy one socket ([`SocketQueries::destroy`]: `SOCK_DESTROY`, what
//! `ss -K` sends), addressed exactly as a query is, cookie included.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::SocketAddr,
};

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{SOCK_DESTROY, SOCK_DIAG_BY_FAMILY},
    inet::{SocketId, StateFlags},
};
use netlink_sys::Socket;

use super::{
    SeedError,
    diag::{self, DiagSocket},
    netns,
};

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

/// The per-namespace netlink sockets that answer exact queries.
#[derive(Default)]
pub struct SocketQueries {
    by_netns: HashMap<u32, Socket>,
}

impl SocketQueries {
    /// The kernel's current view of the socket `key` names; `None` when the kernel has no such
    /// socket any more (closed, or its addresses now belong to another socket). A namespace not
    /// queried before is looked up in `/proc` and entered once.
    ///
    /// # Errors
    /// The namespace is gone or cannot be entered, or the netlink request fails ([`SeedError`]);
    /// the namespace's socket is then dropped and reopened on the next query.
    pub fn query(&mut self, key: &SocketKey) -> Result<Option<DiagSocket>, SeedError> {
        let socket = match self.by_netns.entry(key.netns) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => slot.insert(open_in(key.netns)?),
        };
        let answer = ask(socket, key);
        if answer.is_err() {
            self.by_netns.remove(&key.netns);
        }
        answer
    }

    /// Destroys the socket `key` names (`SOCK_DESTROY`: the kernel's `tcp_abort`, so the owner's
    /// blocked and next calls fail with `ECONNABORTED` and the peer gets a reset). Ok(true) when
    /// destroyed, Ok(false) when the kernel has no such socket (closed, or its addresses now
    /// belong to a socket with another cookie: that one is never touched). The calling thread
    /// needs `CAP_NET_ADMIN` over the socket's namespace.
    ///
    /// # Errors
    /// As [`query`](Self::query); refused by the kernel: `EPERM` without `CAP_NET_ADMIN`,
    /// `EOPNOTSUPP` on a kernel without `CONFIG_INET_DIAG_DESTROY`.
    pub fn destroy(&mut self, key: &SocketKey) -> Result<bool, SeedError> {
        let socket = match self.by_netns.entry(key.netns) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => slot.insert(open_in(key.netns)?),
        };
        let answer = kill(socket, key);
        if matches!(answer, Err(SeedError::Netlink(_) | SeedError::Decode(_))) {
            self.by_netns.remove(&key.netns);
        }
        answer
    }
}

/// One `SOCK_DESTROY` request, one acknowledgement.
fn kill(socket: &Socket, key: &SocketKey) -> Result<bool, SeedError> {
    let request = serialize(key, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK);
    socket.send(&request, 0).map_err(SeedError::Netlink)?;
    let mut buf = Vec::with_capacity(diag::RECV_BUFFER);
    socket.recv(&mut buf, 0).map_err(SeedError::Netlink)?;
    let message =
        NetlinkMessage::<SockDiagMessage>::deserialize(&buf).map_err(SeedError::Decode)?;
    match message.payload {
        NetlinkPayload::Error(err) if err.code.is_none() => Ok(true),
        NetlinkPayload::Error(err) => match err.to_io().raw_os_error() {
            Some(libc::ENOENT | libc::ESTALE) => Ok(false),
            _ => Err(SeedError::Kernel(err.to_io())),
        },
        _ => Err(SeedError::Kernel(std::io::Error::other(
            "SOCK_DESTROY answered with something other than an acknowledgement",
        ))),
    }
}

/// A `sock_diag` socket opened inside the namespace whose inode is `netns`.
fn open_in(netns: u32) -> Result<Socket, SeedError> {
    let ns = netns::find_namespaces()
        .into_iter()
        .find(|ns| ns.inode == netns)
        .ok_or_else(|| vanished(netns))?;
    netns::run_in(&ns, diag::open_socket)
}

/// The error of a namespace no process and no bind mount holds any more.
fn vanished(netns: u32) -> SeedError {
    SeedError::OpenNamespace {
        path: format!("net:[{netns}]").into(),
        source: std::io::Error::from_raw_os_error(libc::ENOENT),
    }
}

/// One request, one reply: the socket, or ENOENT (no socket with those addresses) / ESTALE
/// (another socket has them now) as None.
fn ask(socket: &Socket, key: &SocketKey) -> Result<Option<DiagSocket>, SeedError> {
    socket.send(&request(key), 0).map_err(SeedError::Netlink)?;
    let mut buf = Vec::with_capacity(diag::RECV_BUFFER);
    socket.recv(&mut buf, 0).map_err(SeedError::Netlink)?;
    let message =
        NetlinkMessage::<SockDiagMessage>::deserialize(&buf).map_err(SeedError::Decode)?;
    match message.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            Ok(Some(diag::from_response(key.netns, &response)))
        }
        NetlinkPayload::Error(err) => match err.to_io().raw_os_error() {
            Some(libc::ENOENT | libc::ESTALE) => Ok(None),
            _ => Err(SeedError::Kernel(err.to_io())),
        },
        _ => Ok(None),
    }
}

/// The serialized exact request: every state, with `tcp_info`.
fn request(key: &SocketKey) -> Vec<u8> {
    serialize(key, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST)
}

/// A request about exactly the socket `key` names (addresses, ports and cookie).
fn serialize(key: &SocketKey, message_type: u16, flags: u16) -> Vec<u8> {
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
    diag::serialize(message_type, flags, family, StateFlags::all(), socket_id)
}
