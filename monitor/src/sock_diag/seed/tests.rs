use std::net::Ipv4Addr;

use monitor_common::{AF_INET, AF_INET6};

use super::*;
use crate::{model::kernel_buffer, sock_diag::TcpInfoSummary};

const NOW: u64 = 5_000_000_000_000; // 5000 s of uptime

fn info() -> TcpInfoSummary {
    TcpInfoSummary {
        retransmits: 0,
        probes: 0,
        rto_us: 200_000,
        last_data_sent_ms: 1_000,
        last_data_recv_ms: 2_000,
        last_ack_recv_ms: 30,
        unacked_segments: 2,
        total_retrans: 4,
        rtt_us: 180,
        bytes_sent: Some(10_000),
        bytes_acked: Some(7_000),
        bytes_retrans: Some(1_000),
        bytes_received: Some(555),
    }
}

fn established_v4() -> DiagSocket {
    DiagSocket {
        netns: 4_026_531_840,
        cookie: 42,
        family: AF_INET,
        state: tcp_state::ESTABLISHED,
        local: "10.1.2.3:40000".parse().expect("addr"),
        remote: "10.9.8.7:5432".parse().expect("addr"),
        inode: 123,
        tcp_info: Some(info()),
        keepalive_timer: false,
    }
}

#[test]
fn established_v4_with_owner() {
    let owner = Owner {
        pid: 777,
        comm: kernel_buffer(b"postgres\n"),
    };
    let a = to_activity(&established_v4(), Some(&owner), NOW);
    assert_eq!(a.family, AF_INET);
    assert_eq!(&a.saddr[..4], &[10, 1, 2, 3]);
    assert_eq!(&a.saddr[4..], &[0; 12]);
    assert_eq!(&a.daddr[..4], &[10, 9, 8, 7]);
    assert_eq!((a.sport, a.dport), (40_000, 5432));
    assert_eq!(a.state, tcp_state::ESTABLISHED);
    assert_eq!(a.netns, 4_026_531_840);
    assert_eq!(a.tgid, 777);
    assert_eq!(&a.comm, b"postgres\0\0\0\0\0\0\0\0");
    assert_eq!(
        a.state_since_ns, NOW,
        "only a lower bound for seeded sockets"
    );
    assert_ne!(a.flags & FLAG_STATE_SINCE_LOWER_BOUND, 0);
    assert_eq!(a.flags & (FLAG_ORPHAN | FLAG_KEEPALIVE_ON), 0);
    assert_eq!(a.last_send_ns, NOW - 1_000_000_000);
    assert_eq!(a.last_recv_ns, NOW - 2_000_000_000);
    assert_eq!(a.last_peer_ns, NOW - 30_000_000);
    assert_eq!(a.bytes_sent, 10_000);
    assert_eq!(a.bytes_received, 555);
    assert_eq!(
        a.unacked_bytes, 2_000,
        "10000 sent - 1000 retransmitted - 7000 acked"
    );
    assert_eq!(a.srtt_us, 180);
    assert_eq!(a.retransmits, 4);
    assert_eq!(
        a.flags,
        FLAG_SEEDED | FLAG_TRANSPORT_KNOWN | FLAG_STATE_SINCE_LOWER_BOUND
    );
}

#[test]
fn ipv6_and_v4_mapped_fill_sixteen_bytes() {
    let mapped = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped();
    let sock = DiagSocket {
        family: AF_INET6,
        local: "[2001:db8::1]:443".parse().expect("addr"),
        remote: SocketAddr::new(mapped.into(), 50_000),
        ..established_v4()
    };
    let a = to_activity(&sock, None, NOW);
    assert_eq!(a.family, AF_INET6);
    assert_eq!(
        a.saddr,
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .expect("ip")
            .octets()
    );
    assert_eq!(a.daddr, mapped.octets());
    assert_eq!((a.tgid, a.comm), (0, [0; 16]), "no owner");
}

#[test]
fn long_comm_is_truncated_to_15_bytes() {
    let owner = Owner {
        pid: 1,
        comm: kernel_buffer(b"a-very-long-process-name\n"),
    };
    let a = to_activity(&established_v4(), Some(&owner), NOW);
    assert_eq!(&a.comm[..15], b"a-very-long-pro");
    assert_eq!(a.comm[15], 0);
}

#[test]
fn ages_saturate_and_never_give_zero() {
    let mut sock = established_v4();
    sock.tcp_info = Some(TcpInfoSummary {
        last_data_sent_ms: u32::MAX,
        last_data_recv_ms: 5_000_000, // exactly NOW
        ..info()
    });
    let a = to_activity(&sock, None, NOW);
    assert_eq!(a.last_send_ns, 1);
    assert_eq!(a.last_recv_ns, 1);
    assert_eq!(to_activity(&established_v4(), None, 0).last_peer_ns, 1);
}

#[test]
fn unacked_needs_all_three_counters() {
    let mut sock = established_v4();
    sock.tcp_info = Some(TcpInfoSummary {
        bytes_sent: None,
        bytes_retrans: None,
        ..info()
    });
    let a = to_activity(&sock, None, NOW);
    assert_eq!(a.unacked_bytes, 0);
    assert_eq!(a.flags, FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND);
    assert_eq!(a.bytes_sent, 0);
    assert_eq!(a.bytes_received, 555);
    assert_eq!(
        a.srtt_us, 180,
        "rtt is known even without the byte counters"
    );
}

#[test]
fn unacked_saturates() {
    let mut sock = established_v4();
    sock.tcp_info = Some(TcpInfoSummary {
        bytes_sent: Some(100),
        bytes_acked: Some(500),
        bytes_retrans: Some(0),
        ..info()
    });
    assert_eq!(to_activity(&sock, None, NOW).unacked_bytes, 0);
    sock.tcp_info = Some(TcpInfoSummary {
        bytes_sent: Some(u64::MAX),
        bytes_acked: Some(0),
        bytes_retrans: Some(0),
        ..info()
    });
    assert_eq!(to_activity(&sock, None, NOW).unacked_bytes, u32::MAX);
}

#[test]
fn no_tcp_info_leaves_times_unknown() {
    let mut sock = established_v4();
    sock.state = tcp_state::TIME_WAIT;
    sock.inode = 0;
    sock.tcp_info = None;
    let a = to_activity(&sock, None, NOW);
    assert_eq!((a.last_send_ns, a.last_recv_ns, a.last_peer_ns), (0, 0, 0));
    assert_eq!(
        a.flags,
        FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND | FLAG_ORPHAN,
        "no inode: orphan"
    );
    assert_eq!(a.state, tcp_state::TIME_WAIT);
}

#[test]
fn listeners_get_no_times() {
    // For a listener the kernel reports zero "ms ago" (and aliases unacked to the accept queue).
    let mut sock = established_v4();
    sock.state = tcp_state::LISTEN;
    sock.remote = "0.0.0.0:0".parse().expect("addr");
    sock.tcp_info = Some(TcpInfoSummary::default());
    let a = to_activity(&sock, None, NOW);
    assert_eq!((a.last_send_ns, a.last_recv_ns, a.last_peer_ns), (0, 0, 0));
    assert_eq!(a.flags, FLAG_SEEDED | FLAG_STATE_SINCE_LOWER_BOUND);
}

#[test]
fn a_pending_keepalive_timer_means_keepalive_is_on() {
    let mut sock = established_v4();
    sock.keepalive_timer = true;
    let a = to_activity(&sock, None, NOW);
    assert_ne!(a.flags & FLAG_KEEPALIVE_ON, 0);
}

/// A `CLOSE_WAIT` (or `FIN_WAIT2`) socket entered its state on a packet from the peer, so it has been
/// in it at least since the peer was last heard from: a better bound than the seeding time. Other
/// states keep the seeding time.
#[test]
fn states_a_peer_packet_enters_are_bounded_by_the_last_packet() {
    let mut sock = established_v4();
    sock.tcp_info = Some(TcpInfoSummary {
        last_ack_recv_ms: 260_000,
        ..info()
    });
    for state in [tcp_state::CLOSE_WAIT, tcp_state::FIN_WAIT2] {
        sock.state = state;
        let a = to_activity(&sock, None, NOW);
        assert_eq!(a.state_since_ns, NOW - 260_000_000_000, "state {state}");
        assert_ne!(a.flags & FLAG_STATE_SINCE_LOWER_BOUND, 0, "still a bound");
    }
    sock.state = tcp_state::ESTABLISHED;
    assert_eq!(to_activity(&sock, None, NOW).state_since_ns, NOW);
}

/// An orphaned `FIN_WAIT2` socket is a timewait mini-socket: listed without `tcp_info`, never seeded.
#[test]
fn only_full_sockets_are_seeded() {
    let mut sock = established_v4();
    assert!(sock.is_full_socket());
    sock.state = tcp_state::FIN_WAIT2;
    sock.inode = 0;
    sock.tcp_info = None;
    assert!(!sock.is_full_socket());
    sock.state = tcp_state::LISTEN;
    assert!(sock.is_full_socket());
}
