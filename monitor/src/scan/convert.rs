//! Kernel-table entries → [`Connection`]s. Pure: every age is computed against one clock reading.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use monitor_common::{
    AF_INET6, FLAG_KEEPALIVE_ON, FLAG_OPTIONS_KNOWN, FLAG_ORPHAN, FLAG_SEEDED,
    FLAG_STATE_SINCE_LOWER_BOUND, FLAG_TRANSPORT_KNOWN, SockActivity, tcp_state,
};

use crate::model::{Comm, Connection, Keepalive};

/// What a socket inherits when it does not set its own values: the sysctls of **its own**
/// network namespace (pods set their own), and the kernel tick length to convert the timers it
/// does set (the kernel stores them in jiffies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketDefaults {
    /// `CONFIG_HZ`; None when the kernel config is unreadable (custom timers then stay unknown).
    pub hz: Option<u32>,
    /// `net.ipv4.tcp_keepalive_time`.
    pub keepalive_time: Duration,
    /// `net.ipv4.tcp_keepalive_intvl`.
    pub keepalive_intvl: Duration,
    /// `net.ipv4.tcp_keepalive_probes`.
    pub keepalive_probes: u32,
    /// `net.ipv4.tcp_retries2`: retransmissions before the kernel gives up on a silent peer.
    pub tcp_retries2: u32,
    /// `net.netfilter.nf_conntrack_tcp_timeout_established`; None when the namespace has no
    /// conntrack (the sysctl file is absent).
    pub conntrack_established: Option<Duration>,
}

impl Default for SocketDefaults {
    /// The kernel's own defaults (`net.ipv4.tcp_keepalive_*`, `tcp_retries2`).
    fn default() -> Self {
        Self {
            hz: None,
            keepalive_time: Duration::from_hours(2),
            keepalive_intvl: Duration::from_secs(75),
            keepalive_probes: 9,
            tcp_retries2: 15,
            conntrack_established: None,
        }
    }
}

/// Time from a kernel timestamp to `now_ns`; `None` for 0 ("never seen").
#[must_use]
pub fn age(now_ns: u64, at_ns: u64) -> Option<Duration> {
    (at_ns != 0).then(|| Duration::from_nanos(now_ns.saturating_sub(at_ns)))
}

#[must_use]
pub fn connection(
    cookie: u64,
    entry: &SockActivity,
    now_ns: u64,
    defaults: &SocketDefaults,
) -> Connection {
    let mut c = unnamed_connection(cookie, entry, now_ns, defaults);
    c.comm = (entry.tgid != 0).then(|| Comm::from_kernel(&entry.comm));
    c
}

/// [`connection`] without `comm`: a scan names the owner from `/proc` and converts the name
/// the hooks saw only when `/proc` has none.
pub(crate) fn unnamed_connection(
    cookie: u64,
    entry: &SockActivity,
    now_ns: u64,
    defaults: &SocketDefaults,
) -> Connection {
    let since = |at| age(now_ns, at);
    // Idle = since the most recent activity in either direction. A socket that has carried no
    // data yet counts from when it entered its state (e.g. a fresh, silent connection).
    let last_activity = [entry.last_send_ns, entry.last_recv_ns, entry.last_peer_ns]
        .into_iter()
        .max()
        .filter(|&t| t != 0)
        .unwrap_or(entry.state_since_ns);
    let flag = |f: u8| entry.flags & f != 0;
    let state_since_exact = !flag(FLAG_STATE_SINCE_LOWER_BOUND);
    let options_known = flag(FLAG_OPTIONS_KNOWN);
    let mut c = Connection::new(
        cookie,
        entry.state,
        socket_addr(entry.family, &entry.saddr, entry.sport),
        socket_addr(entry.family, &entry.daddr, entry.dport),
    );
    c.netns = (entry.netns != 0).then_some(entry.netns);
    c.pid = (entry.tgid != 0).then_some(entry.tgid);
    c.state_age = since(entry.state_since_ns).filter(|_| state_since_exact);
    c.state_age_at_least = since(entry.state_since_ns).filter(|_| !state_since_exact);
    c.idle = since(last_activity);
    c.since_send = since(entry.last_send_ns);
    c.since_recv = since(entry.last_recv_ns);
    // tcp_probe fires for segments an ESTABLISHED socket receives: the packet that entered the
    // state (the handshake's SYN-ACK or last ACK, its ACK of our FIN for FIN_WAIT2) is not
    // always one of them (measured: a server cut off right after accept had none about half the
    // time). Until another arrives, it is the last one heard from the peer.
    let entered_on_peer_packet = matches!(
        entry.state,
        tcp_state::ESTABLISHED | tcp_state::CLOSE_WAIT | tcp_state::FIN_WAIT2
    );
    c.since_peer = since(entry.last_peer_ns).or(c.state_age.filter(|_| entered_on_peer_packet));
    c.conntrack_timeout = defaults.conntrack_established;
    c.bytes_sent = entry.bytes_sent;
    c.bytes_received = entry.bytes_received;
    if flag(FLAG_TRANSPORT_KNOWN) {
        c.unacked_bytes = Some(entry.unacked_bytes);
        c.srtt = Some(Duration::from_micros(entry.srtt_us.into()));
    }
    c.retransmits = entry.retransmits;
    c.seeded = flag(FLAG_SEEDED);
    c.orphan = flag(FLAG_ORPHAN);
    if options_known {
        c.keepalive = Some(keepalive(entry, defaults));
        c.user_timeout = (entry.user_timeout_ms != 0)
            .then(|| Duration::from_millis(entry.user_timeout_ms.into()));
    } else if flag(FLAG_KEEPALIVE_ON) {
        // Seeded from sock_diag: a pending keepalive timer says it is on, not with which timers.
        c.keepalive = Some(Keepalive {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
        });
    }
    c
}

fn keepalive(entry: &SockActivity, defaults: &SocketDefaults) -> Keepalive {
    keepalive_of(
        entry.flags & FLAG_KEEPALIVE_ON != 0,
        (
            entry.keepalive_time,
            entry.keepalive_intvl,
            entry.keepalive_probes,
        ),
        defaults,
    )
}

/// Keepalive on or off, with its effective timers: the socket's own `(keepalive_time,
/// keepalive_intvl, keepalive_probes)` as the kernel keeps them (jiffies, jiffies, count; 0 =
/// unset), the namespace's sysctls where unset. A timer set in jiffies is unknown without
/// `defaults.hz`.
pub(crate) fn keepalive_of(
    enabled: bool,
    (time, intvl, probes): (u32, u32, u8),
    defaults: &SocketDefaults,
) -> Keepalive {
    let jiffies = |j: u32, default: Duration| match (j, defaults.hz) {
        (0, _) => Some(default),
        (j, Some(hz)) if hz > 0 => Some(Duration::from_millis(u64::from(j) * 1000 / u64::from(hz))),
        _ => None,
    };
    Keepalive {
        enabled,
        idle: jiffies(time, defaults.keepalive_time),
        interval: jiffies(intvl, defaults.keepalive_intvl),
        count: Some(match probes {
            0 => defaults.keepalive_probes,
            n => n.into(),
        }),
    }
}

fn socket_addr(family: u16, addr: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests;
