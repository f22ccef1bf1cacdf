//! The ctnetlink sockets, one per network namespace, and the exact GET of one flow through them
//! (~10–20 µs: one request, one reply).

use std::{
    collections::{HashMap, hash_map::Entry},
    io,
    time::Duration,
};

use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_NETFILTER};

use super::message::{self, Answer, Direction, Tuple};
use crate::netns::{self, NetnsError};

/// Why the kernel could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The namespace could not be entered (gone, or no privilege).
    #[error(transparent)]
    Namespace(#[from] NetnsError),
    #[error("ctnetlink socket: {0}")]
    Netlink(io::Error),
    /// The kernel refused the request (`EPERM` without `CAP_NET_ADMIN`).
    #[error("ctnetlink request refused by the kernel: {0}")]
    Kernel(io::Error),
    #[error("malformed ctnetlink answer")]
    Malformed,
}

/// The per-namespace ctnetlink sockets (namespace inode → socket), opened on first use.
#[derive(Default)]
pub struct ConntrackQueries {
    by_netns: HashMap<u32, Socket>,
    seq: u32,
}

impl ConntrackQueries {
    /// How long conntrack in namespace `netns` keeps the flow `tuple` (as seen by the socket:
    /// local to remote) if nothing more crosses it: the entry asked for with `tuple` as its
    /// original tuple and, when there is none, reversed as its reply tuple. None when the
    /// namespace tracks no such flow.
    ///
    /// # Errors
    /// The namespace cannot be entered, or netlink fails (the namespace's socket is then
    /// reopened on the next query), or the kernel refuses ([`ConntrackError`]).
    pub fn time_left(
        &mut self,
        netns: u32,
        tuple: Tuple,
    ) -> Result<Option<Duration>, ConntrackError> {
        let asked = [
            (tuple, Direction::Original),
            (tuple.reversed(), Direction::Reply),
        ];
        for (tuple, direction) in asked {
            self.seq = self.seq.wrapping_add(1);
            let request = message::request(tuple, direction, self.seq);
            let answer = ask(self.socket_for(netns)?, &request);
            match answer {
                Ok(Some(left)) => return Ok(Some(left)),
                Ok(None) => {}
                Err(error) => {
                    self.by_netns.remove(&netns);
                    return Err(error);
                }
            }
        }
        Ok(None)
    }

    fn socket_for(&mut self, netns: u32) -> Result<&Socket, ConntrackError> {
        Ok(match self.by_netns.entry(netns) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => slot.insert(netns::in_namespace_of(netns, open_socket)??),
        })
    }
}

fn open_socket() -> Result<Socket, ConntrackError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Netlink)?;
    socket.bind_auto().map_err(ConntrackError::Netlink)?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .map_err(ConntrackError::Netlink)?;
    Ok(socket)
}

/// One request, one reply: the entry's time left, None for `ENOENT` (no such entry) or an
/// entry that never expires.
fn ask(socket: &Socket, request: &[u8]) -> Result<Option<Duration>, ConntrackError> {
    socket.send(request, 0).map_err(ConntrackError::Netlink)?;
    let mut buf = Vec::with_capacity(8192);
    socket.recv(&mut buf, 0).map_err(ConntrackError::Netlink)?;
    match message::answer(&buf) {
        // An entry without a timeout (offloaded to hardware) is never forgotten while idle.
        Answer::Entry(left) => Ok(left.map(|secs| Duration::from_secs(secs.into()))),
        Answer::Error(libc::ENOENT) => Ok(None),
        Answer::Error(errno) => Err(ConntrackError::Kernel(io::Error::from_raw_os_error(errno))),
        Answer::Malformed => Err(ConntrackError::Malformed),
    }
}
