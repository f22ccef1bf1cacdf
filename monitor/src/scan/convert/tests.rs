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

fn convert(e: &SockActivity, now: u64) -> Connection {
    let defaults = SocketDefaults {
        hz: Some(250),
        ..SocketDefaults::default()
    };
    connection(7, e, now, &defaults)
}

#[test]
fn unknown_values_stay_unknown() {
    let c = convert(&entry(), 130 * SEC);
    assert_eq!(c.local.to_string(), "10.0.0.1:5000");
    assert_eq!(c.remote.to_string(), "10.0.0.2:80");
    assert_eq!(c.pid, None);
    assert_eq!(c.comm, None);
    assert_eq!(c.since_send, None);
    // Not unknown: the packet that completed the handshake was the peer's (tcp_probe does not
    // always see it), 30 s ago.
    assert_eq!(c.since_peer, Some(Duration::from_secs(30)));
    assert_eq!(c.unacked_bytes, None);
    assert_eq!(c.netns, None);
    assert_eq!(c.keepalive, None);
    assert_eq!(c.state_age, Some(Duration::from_secs(30)));
    assert_eq!(c.state_age_at_least, None);
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
    let c = convert(&e, 130 * SEC);
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
    let c = convert(&e, 130 * SEC);
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
    assert_eq!(convert(&e, 130 * SEC).since_send, Some(Duration::ZERO));
}

#[test]
fn keepalive_timers_default_to_sysctl_and_convert_jiffies() {
    let mut e = entry();
    e.flags = FLAG_OPTIONS_KNOWN | FLAG_KEEPALIVE_ON;
    e.keepalive_time = 500; // 2 s at HZ=250
    e.keepalive_probes = 4;
    e.user_timeout_ms = 30_000;
    let c = convert(&e, 130 * SEC);
    let ka = c.keepalive.expect("known");
    assert!(ka.enabled);
    assert_eq!(ka.idle, Some(Duration::from_secs(2)));
    assert_eq!(ka.interval, Some(Duration::from_secs(75)));
    assert_eq!(ka.count, Some(4));
    assert_eq!(c.user_timeout, Some(Duration::from_secs(30)));

    let no_hz = connection(7, &e, 130 * SEC, &SocketDefaults::default());
    assert_eq!(
        no_hz.keepalive.unwrap().idle,
        None,
        "custom jiffies without HZ stay unknown"
    );
}

#[test]
fn seeded_state_age_is_a_lower_bound_only() {
    let mut e = entry();
    e.flags = FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND | FLAG_ORPHAN;
    let c = convert(&e, 130 * SEC);
    assert_eq!(c.state_age, None);
    assert_eq!(c.state_age_at_least, Some(Duration::from_secs(30)));
    assert!(c.orphan);
}

/// The last packet from the peer, when `tcp_probe` has seen none: the one that entered the state,
/// for states a peer packet enters and whose entry time is exact; unknown otherwise.
#[test]
fn since_peer_falls_back_to_the_packet_that_entered_the_state() {
    let mut e = entry();
    e.state = tcp_state::SYN_SENT;
    assert_eq!(
        convert(&e, 130 * SEC).since_peer,
        None,
        "no peer packet yet"
    );
    e.state = tcp_state::FIN_WAIT2;
    assert_eq!(
        convert(&e, 130 * SEC).since_peer,
        Some(Duration::from_secs(30))
    );
    e.flags |= FLAG_STATE_SINCE_LOWER_BOUND;
    assert_eq!(
        convert(&e, 130 * SEC).since_peer,
        None,
        "entry time only a bound"
    );
    e.flags &= !FLAG_STATE_SINCE_LOWER_BOUND;
    e.last_peer_ns = 125 * SEC;
    assert_eq!(
        convert(&e, 130 * SEC).since_peer,
        Some(Duration::from_secs(5))
    );
}
