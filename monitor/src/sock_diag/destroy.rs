//! `SOCK_DESTROY`: ending one socket, as `ss -K` does, addressed exactly as a query is (cookie
//! included) and sent on the query's per-namespace socket.

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{SockDiagMessage, constants::SOCK_DESTROY};
use netlink_sys::Socket;

use super::{SockDiagError, SocketKey, SocketQueries, dump, query::serialize};

impl SocketQueries {
    /// Destroys the socket `key` names (`SOCK_DESTROY`: the kernel's `tcp_abort`, so the owner's
    /// blocked and next calls fail with `ECONNABORTED` and the peer gets a reset). Ok(true) when
    /// destroyed, Ok(false) when the kernel has no such socket (closed, or its addresses now
    /// belong to a socket with another cookie: that one is never touched). The calling thread
    /// needs `CAP_NET_ADMIN` over the socket's namespace.
    ///
    /// # Errors
    /// As [`query`](Self::query); refused by the kernel: `EPERM` without `CAP_NET_ADMIN`,
    /// `EOPNOTSUPP` on a kernel without `CONFIG_INET_DIAG_DESTROY`.
    pub fn destroy(&mut self, key: &SocketKey) -> Result<bool, SockDiagError> {
        let answer = kill(self.socket_for(key.netns)?, key);
        if matches!(
            answer,
            Err(SockDiagError::Netlink(_) | SockDiagError::Decode(_))
        ) {
            self.forget(key.netns);
        }
        answer
    }
}

/// One `SOCK_DESTROY` request, one acknowledgement.
fn kill(socket: &Socket, key: &SocketKey) -> Result<bool, SockDiagError> {
    let request = serialize(key, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK);
    socket.send(&request, 0).map_err(SockDiagError::Netlink)?;
    let mut buf = Vec::with_capacity(dump::RECV_BUFFER);
    socket.recv(&mut buf, 0).map_err(SockDiagError::Netlink)?;
    let message =
        NetlinkMessage::<SockDiagMessage>::deserialize(&buf).map_err(SockDiagError::Decode)?;
    match message.payload {
        NetlinkPayload::Error(err) if err.code.is_none() => Ok(true),
        NetlinkPayload::Error(err) => match err.to_io().raw_os_error() {
            Some(libc::ENOENT | libc::ESTALE) => Ok(false),
            _ => Err(SockDiagError::Kernel(err.to_io())),
        },
        _ => Err(SockDiagError::Kernel(std::io::Error::other(
            "SOCK_DESTROY answered with something other than an acknowledgement",
        ))),
    }
}
