use std::{net::SocketAddr, time::Duration};

use monitor_common::tcp_state;

use super::*;
use crate::{
    model::{ConntrackDrop, Keepalive},
    verdict::{Cidr, PathTimeout, Share},
};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn idle(state: u8, idle_secs: u64, keepalive: Option<Keepalive>) -> Connection {
    let local: SocketAddr = "10.0.0.1:5000".parse().expect("address");
    let remote: SocketAddr = "10.9.0.2:80".parse().expect("address");
    Connection {
        idle: Some(SECS(idle_secs)),
        keepalive,
        conntrack_timeout: Some(SECS(100)),
        ..Connection::new(1, state, local, remote)
    }
}

fn off() -> Keepalive {
    Keepalive {
        enabled: false,
        idle: None,
        interval: None,
        count: None,
    }
}

fn on(idle_secs: u64) -> Keepalive {
    Keepalive {
        enabled: true,
        idle: Some(SECS(idle_secs)),
        interval: Some(SECS(10)),
        count: Some(3),
    }
}

/// One connection judged by a fresh scan's test.
fn worth_asking(c: &Connection, policy: &Policy, host: Option<Duration>) -> bool {
    Candidates::new(policy, host).worth_asking(c, policy)
}

#[test]
fn one_scans_test_follows_each_sockets_own_timeout() {
    let policy = Policy::default();
    let mut candidates = Candidates::new(&policy, None);
    let mut short = idle(tcp_state::ESTABLISHED, 81, Some(off()));
    assert!(candidates.worth_asking(&short, &policy));
    let mut long = short.clone();
    long.conntrack_timeout = Some(SECS(1000));
    assert!(
        !candidates.worth_asking(&long, &policy),
        "800 s for this one"
    );
    short.idle = Some(SECS(79));
    assert!(!candidates.worth_asking(&short, &policy));
    short.conntrack_timeout = None;
    short.idle = Some(SECS(10_000));
    assert!(!candidates.worth_asking(&short, &policy), "no conntrack");
}

#[test]
fn asked_only_when_idle_past_the_share_without_keepalive_in_time() {
    let policy = Policy::default();
    assert_eq!(policy.path_timeout_share, Share::DEFAULT);
    assert!(worth_asking(
        &idle(tcp_state::ESTABLISHED, 81, Some(off())),
        &policy,
        None
    ));
    assert!(
        !worth_asking(
            &idle(tcp_state::ESTABLISHED, 79, Some(off())),
            &policy,
            None
        ),
        "80% of 100 s"
    );
    assert!(!worth_asking(
        &idle(tcp_state::CLOSE_WAIT, 81, Some(off())),
        &policy,
        None
    ));
    assert!(
        worth_asking(
            &idle(tcp_state::ESTABLISHED, 81, Some(on(100))),
            &policy,
            None
        ),
        "probe at the timeout"
    );
    assert!(
        !worth_asking(
            &idle(tcp_state::ESTABLISHED, 81, Some(on(30))),
            &policy,
            None
        ),
        "probe in time"
    );
    assert!(
        !worth_asking(&idle(tcp_state::ESTABLISHED, 81, None), &policy, None),
        "unknown keepalive"
    );
}

#[test]
fn the_host_timeout_counts_and_the_shorter_one_decides() {
    let policy = Policy::default();
    let mut c = idle(tcp_state::ESTABLISHED, 50, Some(off()));
    c.conntrack_timeout = None;
    assert!(
        !Candidates::new(&policy, None).worth_asking(&c, &policy),
        "no conntrack anywhere"
    );
    assert!(
        Candidates::new(&policy, Some(SECS(60))).worth_asking(&c, &policy),
        "the host tracks it"
    );
    c.conntrack_timeout = Some(SECS(600));
    assert!(Candidates::new(&policy, Some(SECS(60))).worth_asking(&c, &policy));
    assert!(!Candidates::new(&policy, Some(SECS(6000))).worth_asking(&c, &policy));
}

#[test]
fn a_configured_path_wins() {
    let timeout = SECS(1000);
    let policy = Policy {
        paths: vec![PathTimeout {
            name: "nat".into(),
            remote: Cidr::parse("10.9.0.0/16").expect("cidr"),
            local_port: None,
            remote_port: None,
            idle_timeout: timeout,
            report_after: timeout,
        }],
        ..Policy::default()
    };
    assert!(!worth_asking(
        &idle(tcp_state::ESTABLISHED, 81, Some(off())),
        &policy,
        None
    ));
}

#[test]
fn the_rule_takes_the_share_of_the_entrys_namespace_timeout() {
    let policy = Policy::default();
    let found = ConntrackDrop {
        timeout: SECS(100),
        drops_at_idle: SECS(100),
    };
    let mut c = idle(tcp_state::ESTABLISHED, 81, Some(off()));
    assert!(!beyond_conntrack(&c, &policy), "no entry found");
    c.conntrack = Some(found);
    assert!(beyond_conntrack(&c, &policy));
    c.idle = Some(SECS(5));
    assert!(!beyond_conntrack(&c, &policy), "traffic clears it");
    c.idle = Some(SECS(81));
    c.keepalive = Some(on(30));
    assert!(!beyond_conntrack(&c, &policy));
}
