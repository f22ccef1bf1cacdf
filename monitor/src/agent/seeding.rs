//! Seeds the kernel table with sockets that existed before the agent started, so their ages are
//! right from the first scrape.
//!
//! Race: a socket can close between the dump and our insert, after the kernel side already
//! deleted it, leaving an entry nobody would ever delete. A second dump after the inserts finds
//! those (gone from the kernel, present in our table) and removes them.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use monitor_common::tcp_state;

use crate::{bpf::Programs, sock_diag};

/// Every state a live socket can be in. Afterwards the kernel side sees every transition,
/// `listen()` included.
pub(super) const LIVE_STATES_MASK: u32 = 1 << tcp_state::ESTABLISHED
    | 1 << tcp_state::LISTEN
    | 1 << tcp_state::SYN_SENT
    | 1 << tcp_state::SYN_RECV
    | 1 << tcp_state::FIN_WAIT1
    | 1 << tcp_state::FIN_WAIT2
    | 1 << tcp_state::CLOSE_WAIT
    | 1 << tcp_state::LAST_ACK
    | 1 << tcp_state::CLOSING;

/// Returns how many entries were written.
pub(super) fn seed(programs: &Arc<Mutex<Programs>>) -> usize {
    let sockets = sock_diag::dump_all(LIVE_STATES_MASK);
    let owners = sock_diag::socket_owners();
    let now = crate::clock::monotonic_now_ns();
    let mut written = Vec::new();
    {
        let mut programs = crate::locks::lock(programs);
        // Timewait mini-sockets (orphaned FIN_WAIT2) are not seeded: nothing would remove them.
        for sock in sockets.iter().filter(|s| s.is_full_socket()) {
            let entry = sock_diag::to_activity(sock, owners.get(&sock.inode), now);
            match programs.maps.seed(sock.cookie, &entry) {
                Ok(true) => written.push(sock.cookie),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "seeding stopped: table full or unavailable");
                    break;
                }
            }
        }
    }
    let still_open: HashSet<u64> = sock_diag::dump_all(LIVE_STATES_MASK)
        .iter()
        .map(|s| s.cookie)
        .collect();
    let mut programs = crate::locks::lock(programs);
    let mut kept = 0;
    for cookie in written {
        if still_open.contains(&cookie) {
            kept += 1;
        } else {
            programs.maps.forget(cookie);
        }
    }
    kept
}
