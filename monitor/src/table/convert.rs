//! Kernel-table entries → [`Connection`]s. Pure: every age is computed against one clock reading.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use monitor_common::{AF_INET6, FLAG_SEEDED, FLAG_TRANSPORT_KNOWN, SockActivity};

use super::Connection;

/// Time from a kernel timestamp to `now_ns`; `None` for 0 ("never seen").
pub fn age(now_ns: u64, at_ns: u64) -> Option<Duration> {
    (at_ns != 0).then(|| Duration::from_nanos(now_ns.saturating_sub(at_ns)))
}

pub fn connection(cookie: u64, entry: &SockActivity, now_ns: u64) -> Connection {
    let since = |at| age(now_ns, at);
    // Idle = since the most recent activity in either direction. A socket that has carried no
    // data yet counts from when it entered its state (e.g. a fresh, silent connection).
    let last_activity = [entry.last_send_ns, entry.last_recv_ns, entry.last_peer_ns]
        .into_iter()
        .max()
        .filter(|&t| t != 0)
        .unwrap_or(entry.state_since_ns);
    let transport_known = entry.flags & FLAG_TRANSPORT_KNOWN != 0;
    Connection {
        cookie,
        state: entry.state,
        local: socket_addr(entry.family, &entry.saddr, entry.sport),
        remote: socket_addr(entry.family, &entry.daddr, entry.dport),
        netns: (entry.netns != 0).then_some(entry.netns),
        pid: (entry.tgid != 0).then_some(entry.tgid),
        comm: (entry.tgid != 0).then(|| comm(&entry.comm)),
        state_age: since(entry.state_since_ns),
        idle: since(last_activity),
        since_send: since(entry.last_send_ns),
        since_recv: since(entry.last_recv_ns),
        since_peer: since(entry.last_peer_ns),
        bytes_sent: entry.bytes_sent,
        bytes_received: entry.bytes_received,
        unacked_bytes: transport_known.then_some(entry.unacked_bytes),
        srtt: transport_known.then(|| Duration::from_micros(entry.srtt_us.into())),
        retransmits: entry.retransmits,
        seeded: entry.flags & FLAG_SEEDED != 0,
        suspect: Vec::new(),
        keepalive: None,
        user_timeout: None,
        orphan: false,
        cgroup: None,
        gives_up_in: None,
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

/// The kernel's `comm` is NUL padded and not guaranteed UTF-8.
fn comm(raw: &[u8; 16]) -> String {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use monitor_common::{AF_INET, tcp_state};

    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn entry() -> SockActivity {
        let mut e = SockActivity::zeroed();
        e.family = AF_INET;
        e.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        e.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        e.sport = 5000;
        e.dport = 80;
        e.state = tcp_state::ESTABLISHED;
        e.state_since_ns = 100 * SEC;
        e
    }

    #[test]
    fn unknown_values_stay_unknown() {
        let c = connection(7, &entry(), 130 * SEC);
        assert_eq!(c.local.to_string(), "10.0.0.1:5000");
        assert_eq!(c.remote.to_string(), "10.0.0.2:80");
        assert_eq!(c.pid, None);
        assert_eq!(c.comm, None);
        assert_eq!(c.since_send, None);
        assert_eq!(c.since_peer, None);
        assert_eq!(c.unacked_bytes, None);
        assert_eq!(c.netns, None);
        assert_eq!(c.state_age, Some(Duration::from_secs(30)));
        // Nothing carried yet: idle since the state was entered.
        assert_eq!(c.idle, Some(Duration::from_secs(30)));
    }

    #[test]
    fn idle_is_since_the_latest_activity_in_either_direction() {
        let mut e = entry();
        e.last_send_ns = 110 * SEC;
        e.last_recv_ns = 120 * SEC;
        e.last_peer_ns = 115 * SEC;
        e.tgid = 42;
        e.comm[..5].copy_from_slice(b"redis");
        let c = connection(7, &e, 130 * SEC);
        assert_eq!(c.idle, Some(Duration::from_secs(10)));
        assert_eq!(c.since_send, Some(Duration::from_secs(20)));
        assert_eq!(c.since_peer, Some(Duration::from_secs(15)));
        assert_eq!(c.pid, Some(42));
        assert_eq!(c.comm.as_deref(), Some("redis"));
    }

    #[test]
    fn ipv6_addresses_and_transport_fields() {
        let mut e = entry();
        e.family = AF_INET6;
        e.saddr = Ipv6Addr::LOCALHOST.octets();
        e.daddr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        e.flags = FLAG_TRANSPORT_KNOWN | FLAG_SEEDED;
        e.unacked_bytes = 1448;
        e.srtt_us = 250;
        let c = connection(7, &e, 130 * SEC);
        assert_eq!(c.local.to_string(), "[::1]:5000");
        assert_eq!(c.remote.to_string(), "[fd00::2]:80");
        assert_eq!(c.unacked_bytes, Some(1448));
        assert_eq!(c.srtt, Some(Duration::from_micros(250)));
        assert!(c.seeded);
    }

    #[test]
    fn clock_skew_never_underflows() {
        let mut e = entry();
        e.last_send_ns = 200 * SEC; // written by another CPU after our clock reading
        assert_eq!(
            connection(1, &e, 130 * SEC).since_send,
            Some(Duration::ZERO)
        );
    }
}
