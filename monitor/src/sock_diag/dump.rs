//! The `sock_diag` dump: one netlink request per address family, multipart replies until `NLMSG_DONE`.

use std::net::SocketAddr;

use monitor_common::tcp_state;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY},
    inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, Timer, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use super::{
    SockDiagError,
    tcp_info::{self, TcpInfoSummary},
};
use crate::netns::{self, Netns};

/// One socket from a `sock_diag` dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// Inode of the namespace the socket lives in.
    pub netns: u32,
    /// `idiag_cookie`: the same value `bpf_get_socket_cookie()` gives the kernel programs.
    pub cookie: u64,
    pub family: u16,
    /// Kernel TCP state number (`monitor_common::tcp_state`).
    pub state: u8,
    /// IPv6 sockets stay V6, v4-mapped addresses included: that is how the kernel sees them.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// 0 when the socket has no file (orphaned, e.g. `FIN_WAIT2` after close; `TIME_WAIT`).
    pub inode: u32,
    /// Absent for `TIME_WAIT` and request sockets, which have no `tcp_info`.
    pub tcp_info: Option<TcpInfoSummary>,
    /// The pending timer is the keepalive timer (`ss -o` shows `timer:(keepalive,…)`): an idle
    /// socket with `SO_KEEPALIVE` on always has it armed.
    pub keepalive_timer: bool,
}

impl DiagSocket {
    /// A full socket, not a timewait mini-socket: an orphaned `FIN_WAIT2` socket is one (the
    /// kernel swaps the full socket for it at `close()`, and `sock_diag` lists it as
    /// `FIN_WAIT2` without `tcp_info`). The kernel programs never see a mini-socket end, so a
    /// table entry for one would outlive it: only full sockets are seeded.
    #[must_use]
    pub fn is_full_socket(&self) -> bool {
        self.tcp_info.is_some() || self.state == tcp_state::LISTEN
    }
}

/// Large enough for any dump message: the kernel sizes dump batches to at most 32 KiB.
pub(super) const RECV_BUFFER: usize = 64 * 1024;

/// Dumps TCP sockets whose state is in `state_mask` (bit `1 << state`, kernel numbering from
/// `monitor_common::tcp_state`) in one namespace, IPv4 and IPv6, with `tcp_info`.
///
/// # Errors
/// The namespace cannot be entered, or the netlink request fails or answers malformed messages
/// ([`SockDiagError`]).
pub fn dump(ns: &Netns, state_mask: u32) -> Result<Vec<DiagSocket>, SockDiagError> {
    let inode = ns.inode;
    netns::in_namespace(ns, move || {
        // Created inside the namespace: a netlink socket answers for the namespace it was made in.
        let socket = open_socket()?;
        let mut sockets = dump_family(&socket, AF_INET, state_mask, inode)?;
        sockets.extend(dump_family(&socket, AF_INET6, state_mask, inode)?);
        Ok(sockets)
    })?
}

/// [`dump`] in every namespace from [`netns::find_namespaces`]; a namespace that fails is logged
/// and skipped.
pub fn dump_all(state_mask: u32) -> Vec<DiagSocket> {
    let mut all = Vec::new();
    for ns in netns::find_namespaces() {
        match dump(&ns, state_mask) {
            Ok(sockets) => all.extend(sockets),
            Err(err) if err.is_vanished_namespace() => {
                tracing::debug!(path = %ns.path.display(), "namespace vanished before its dump");
            }
            Err(err) => {
                tracing::warn!(netns = ns.inode, path = %ns.path.display(), %err, "sock_diag dump failed");
            }
        }
    }
    all
}

pub(super) fn open_socket() -> Result<Socket, SockDiagError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Netlink)?;
    socket.bind_auto().map_err(SockDiagError::Netlink)?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .map_err(SockDiagError::Netlink)?;
    Ok(socket)
}

fn dump_family(
    socket: &Socket,
    family: u8,
    state_mask: u32,
    netns: u32,
) -> Result<Vec<DiagSocket>, SockDiagError> {
    socket
        .send(&request(family, state_mask), 0)
        .map_err(SockDiagError::Netlink)?;
    let mut sockets = Vec::new();
    let mut buf = Vec::with_capacity(RECV_BUFFER);
    loop {
        buf.clear();
        // MSG_TRUNC makes recv return the datagram's real length, so truncation is detectable.
        let len = socket
            .recv(&mut buf, libc::MSG_TRUNC)
            .map_err(SockDiagError::Netlink)?;
        if len > buf.len() {
            return Err(SockDiagError::Truncated {
                len,
                capacity: buf.len(),
            });
        }
        if parse_batch(&buf, netns, &mut sockets)? == Batch::Done {
            return Ok(sockets);
        }
    }
}

/// The serialized dump request for one family.
fn request(family: u8, state_mask: u32) -> Vec<u8> {
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    // retain, not truncate: the crate's flags stop at CLOSING and would drop NEW_SYN_RECV.
    let states = StateFlags::from_bits_retain(state_mask);
    serialize(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        family,
        states,
        socket_id,
    )
}

/// One TCP `inet_diag` request with `tcp_info`, serialized: `message_type` `SOCK_DIAG_BY_FAMILY`
/// to read (`flags`: `NLM_F_REQUEST`, and `NLM_F_DUMP` for every socket matching `states`
/// rather than the one `socket_id` names) or `SOCK_DESTROY` to destroy the one `socket_id`
/// names (what `ss -K` sends; the payload is the same `inet_diag_req_v2`).
pub(super) fn serialize(
    message_type: u16,
    flags: u16,
    family: u8,
    states: StateFlags,
    socket_id: SocketId,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    // finalize() wrote the payload's own type (SOCK_DIAG_BY_FAMILY); SOCK_DESTROY shares it.
    packet.header.message_type = message_type;
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

#[derive(Debug, PartialEq, Eq)]
enum Batch {
    More,
    Done,
}

/// Parses one datagram of netlink messages, appending the sockets. A message whose attributes the
/// crate cannot parse is skipped with a warning rather than failing the whole dump.
fn parse_batch(buf: &[u8], netns: u32, out: &mut Vec<DiagSocket>) -> Result<Batch, SockDiagError> {
    let mut rest = buf;
    while !rest.is_empty() {
        let len = NetlinkBuffer::new_checked(rest)
            .map_err(SockDiagError::Decode)?
            .length() as usize;
        let (message, tail) = rest.split_at(len);
        // Messages are padded to 4 bytes (NLMSG_ALIGN).
        rest = tail
            .get(len.next_multiple_of(4) - len..)
            .unwrap_or_default();
        match NetlinkMessage::<SockDiagMessage>::deserialize(message) {
            Ok(msg) => match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    out.push(from_response(netns, &response));
                }
                NetlinkPayload::Done(done) if done.code < 0 => {
                    return Err(SockDiagError::Kernel(std::io::Error::from_raw_os_error(
                        -done.code,
                    )));
                }
                NetlinkPayload::Done(_) => return Ok(Batch::Done),
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    return Err(SockDiagError::Kernel(err.to_io()));
                }
                NetlinkPayload::Overrun(_) => {
                    return Err(SockDiagError::Overrun);
                }
                _ => {}
            },
            Err(err) => tracing::warn!(%err, "skipping unparsable sock_diag message"),
        }
    }
    Ok(Batch::More)
}

pub(super) fn from_response(netns: u32, response: &InetResponse) -> DiagSocket {
    let header = &response.header;
    let id = &header.socket_id;
    let tcp_info = response.nlas.iter().find_map(|nla| match nla {
        Nla::TcpInfo(bytes) => tcp_info::parse(bytes),
        _ => None,
    });
    DiagSocket {
        netns,
        cookie: cookie(id.cookie),
        family: u16::from(header.family),
        state: header.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        inode: header.inode,
        tcp_info,
        keepalive_timer: matches!(header.timer, Some(Timer::KeepAlive(_))),
    }
}

/// `idiag_cookie` is two native-endian u32s, low half first (`sock_diag_save_cookie`).
fn cookie(raw: [u8; 8]) -> u64 {
    let (lo, hi) = raw.split_at(4);
    let half = |b: &[u8]| u64::from(u32::from_ne_bytes(b.try_into().unwrap_or_default()));
    half(lo) | half(hi) << 32
}

#[cfg(test)]
mod tests;
