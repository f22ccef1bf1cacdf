//! A `sock_diag` socket as a kernel-table entry, so pre-existing sockets and new events share one
//! entry keyed by the socket cookie.

use std::net::{IpAddr, SocketAddr};

use monitor_common::{
    FLAG_KEEPALIVE_ON, FLAG_ORPHAN, FLAG_SEEDED, FLAG_STATE_SINCE_LOWER_BOUND,
    FLAG_TRANSPORT_KNOWN, SockActivity, tcp_state,
};

use super::{DiagSocket, Owner};

const NS_PER_MS: u64 = 1_000_000;

/// The kernel-table entry for a pre-existing socket. `now_ns` is `CLOCK_MONOTONIC` nanoseconds,
/// the clock the kernel programs stamp with.
///
/// `tcp_info`'s `last*` fields are "milliseconds ago"; they become timestamps relative to `now_ns`,
/// never 0 (0 means "not seen"). The time the socket entered its state is unknown (the kernel
/// does not keep it), so `state_since_ns` is a lower bound (`FLAG_STATE_SINCE_LOWER_BOUND`): the
/// older of `now_ns` and, for the states a packet from the peer enters (`CLOSE_WAIT`: its FIN;
/// `FIN_WAIT2`: its ACK of ours), the last packet heard from the peer (`tcp_info` lastack) —
/// every packet after the one that entered the state is more recent. Listeners keep every other
/// time at 0: the kernel fills no times for them, and their zeros would read as "just now".
#[must_use]
pub fn to_activity(sock: &DiagSocket, owner: Option<&Owner>, now_ns: u64) -> SockActivity {
    let mut entry = SockActivity::zeroed();
    entry.saddr = addr_bytes(&sock.local);
    entry.daddr = addr_bytes(&sock.remote);
    entry.sport = sock.local.port();
    entry.dport = sock.remote.port();
    entry.family = sock.family;
    entry.state = sock.state;
    entry.netns = sock.netns;
    // Entered its state before we looked: the seeding time is only a lower bound.
    entry.state_since_ns = now_ns.max(1);
    entry.flags = FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND;
    if sock.inode == 0 {
        entry.flags |= FLAG_ORPHAN;
    }
    // sock_diag shows SO_KEEPALIVE only through the timer: a pending keepalive timer means on.
    // (Which timers the socket uses is not visible; the kernel side reads them on the next I/O.)
    if sock.keepalive_timer {
        entry.flags |= FLAG_KEEPALIVE_ON;
    }
    if let Some(owner) = owner {
        entry.tgid = owner.pid;
        entry.comm = owner.comm;
    }
    let Some(info) = sock
        .tcp_info
        .as_ref()
        .filter(|_| sock.state != tcp_state::LISTEN)
    else {
        return entry;
    };
    entry.last_send_ns = ago(now_ns, info.last_data_sent_ms);
    entry.last_recv_ns = ago(now_ns, info.last_data_recv_ms);
    entry.last_peer_ns = ago(now_ns, info.last_ack_recv_ms);
    if matches!(sock.state, tcp_state::CLOSE_WAIT | tcp_state::FIN_WAIT2) {
        entry.state_since_ns = entry.state_since_ns.min(entry.last_peer_ns);
    }
    entry.bytes_sent = info.bytes_sent.unwrap_or(0);
    entry.bytes_received = info.bytes_received.unwrap_or(0);
    entry.retransmits = info.total_retrans;
    entry.srtt_us = info.rtt_us;
    if let (Some(sent), Some(retrans), Some(acked)) =
        (info.bytes_sent, info.bytes_retrans, info.bytes_acked)
    {
        // bytes_sent counts retransmitted bytes again; what is left after the acked bytes is in flight.
        let unacked = sent.saturating_sub(retrans).saturating_sub(acked);
        entry.unacked_bytes = u32::try_from(unacked).unwrap_or(u32::MAX);
        entry.flags |= FLAG_TRANSPORT_KNOWN;
    }
    entry
}

/// `now_ns` minus `ms`, kept off the reserved 0 ("unknown").
fn ago(now_ns: u64, ms: u32) -> u64 {
    now_ns.saturating_sub(u64::from(ms) * NS_PER_MS).max(1)
}

/// IPv4 in the first four bytes, network order; IPv6 (v4-mapped included) in all sixteen.
fn addr_bytes(addr: &SocketAddr) -> [u8; 16] {
    let mut out = [0; 16];
    match addr.ip() {
        IpAddr::V4(ip) => out[..4].copy_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out = ip.octets(),
    }
    out
}

#[cfg(test)]
mod tests;
