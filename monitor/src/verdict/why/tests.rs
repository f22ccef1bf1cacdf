//! One sentence per reason, each from a connection the rule flags (checked with `evaluate`, so
//! the words and the rule cannot drift apart).

use std::{net::SocketAddr, time::Duration};

use monitor_common::tcp_state;

use super::*;
use crate::{
    model::{Keepalive, PeerVerdict, ProbeResult},
    verdict::{Matcher, Override, evaluate},
};

const S: fn(u64) -> Duration = Duration::from_secs;
const RETRIES2: u32 = 15;

fn conn(state: u8) -> Connection {
    let local: SocketAddr = "10.0.0.1:8080".parse().unwrap();
    let remote: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let mut c = Connection::new(1, state, local, remote);
    c.unacked_bytes = Some(0);
    c.keepalive = Some(keepalive(false, (7200, 75, 9)));
    c
}

/// `SO_KEEPALIVE` and its timers: idle and interval in seconds, then the probe count.
fn keepalive(enabled: bool, (idle, interval, count): (u64, u64, u32)) -> Keepalive {
    Keepalive {
        enabled,
        idle: Some(S(idle)),
        interval: Some(S(interval)),
        count: Some(count),
    }
}

/// Judges `c` as the scan does, then explains it under the default policy.
fn explained(mut c: Connection) -> Vec<String> {
    let policy = Policy::default();
    (c.suspect, c.gives_up_in) = evaluate(&c, &policy, RETRIES2);
    explain(&c, &policy)
}

#[test]
fn close_wait_stuck() {
    let mut c = conn(tcp_state::CLOSE_WAIT);
    c.state_age = Some(S(77));
    assert_eq!(
        explained(c.clone()),
        ["CLOSE_WAIT 1m17s > close_wait_after 1m00s"]
    );
    c.state_age = Some(S(600));
    c.since_send = Some(S(90));
    assert_eq!(
        explained(c.clone()),
        ["CLOSE_WAIT 10m00s, nothing sent for 1m30s > close_wait_after 1m00s"]
    );
    c.state_age = None;
    c.since_send = None;
    c.state_age_at_least = Some(S(73));
    assert_eq!(explained(c), ["CLOSE_WAIT ≥1m13s > close_wait_after 1m00s"]);
}

#[test]
fn fin_wait2_stuck() {
    let mut c = conn(tcp_state::FIN_WAIT2);
    c.state_age = Some(S(300));
    c.since_recv = Some(S(150));
    assert_eq!(
        explained(c),
        ["FIN_WAIT2 5m00s, nothing received for 2m30s > fin_wait2_after 2m00s"]
    );
}

#[test]
fn peer_unresponsive() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.unacked_bytes = Some(4448);
    c.retransmits = 9;
    c.since_peer = Some(S(75));
    c.since_send = Some(S(80));
    c.since_retrans_start = Some(S(75));
    assert_eq!(
        explained(c),
        [
            "4448 B unacked, 9 retransmits, nothing from the peer for 1m15s > unresponsive_after 10s; the kernel gives up in 14m09s"
        ]
    );
}

#[test]
fn keepalive_unanswered() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.keepalive = Some(keepalive(true, (30, 5, 3)));
    c.since_peer = Some(S(47));
    assert_eq!(
        explained(c),
        [
            "keepalive on, nothing from the peer for 47s > first probe 30s + interval 5s; reset after 3 unanswered"
        ]
    );
}

#[test]
fn idle_no_keepalive_with_an_override_threshold() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.since_peer = Some(S(16 * 60));
    assert_eq!(
        explained(c.clone()),
        ["keepalive off, nothing from the peer for 16m00s > idle_after 15m00s"]
    );
    // The threshold quoted is the one that applied: an override for the port wins.
    let policy = Policy {
        overrides: vec![Override {
            matcher: Matcher {
                local_port: Some(8080),
                ..Matcher::default()
            },
            idle_after: Some(S(300)),
            ..Override::default()
        }],
        ..Policy::default()
    };
    c.suspect = vec![Reason::IdleNoKeepalive];
    assert_eq!(
        explain(&c, &policy),
        ["keepalive off, nothing from the peer for 16m00s > idle_after 5m00s"]
    );
    // Never heard from, predating the agent: silent for at least the time it was seen.
    c.since_peer = None;
    c.state_age_at_least = Some(S(3600));
    assert_eq!(
        explained(c),
        ["keepalive off, nothing from the peer for ≥1h00m > idle_after 15m00s"]
    );
}

#[test]
fn peer_dead() {
    let mut c = conn(tcp_state::ESTABLISHED);
    c.since_peer = Some(S(20 * 60));
    c.probe = Some(ProbeResult {
        sent_at: std::time::SystemTime::UNIX_EPOCH,
        in_progress: false,
        answered: false,
        rtt: None,
        unanswered: 3,
        verdict: Some(PeerVerdict::Dead),
    });
    assert_eq!(
        explained(c),
        ["3 keepalive probes of ours unanswered, nothing from the peer for 20m00s"]
    );
}

#[test]
fn a_clean_connection_has_nothing_to_explain() {
    assert!(explained(conn(tcp_state::ESTABLISHED)).is_empty());
}
