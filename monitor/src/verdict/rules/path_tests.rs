//! `idle_beyond_path_timeout`: the rule and its sentence, under a policy with two `[[path]]`s.

use std::net::SocketAddr;

use super::*;
use crate::{
    model::Keepalive,
    verdict::{Cidr, PathTimeout, Share, explain},
};

const S: fn(u64) -> Duration = Duration::from_secs;
const RETRIES2: u32 = 15;

/// An NLB in front of `10.0.0.0/8` port 443 (350 s) and a NAT for everything in `fd00::/8`.
fn policy() -> Policy {
    let path = |name: &str, cidr, remote_port, secs| PathTimeout {
        name: name.into(),
        remote: Cidr::parse(cidr).expect("range"),
        local_port: None,
        remote_port,
        idle_timeout: S(secs),
        report_after: Share::DEFAULT.of(S(secs)),
    };
    Policy {
        paths: vec![
            path("aws-nlb", "10.0.0.0/8", Some(443), 350),
            path("nat", "fd00::/8", None, 240),
        ],
        ..Policy::default()
    }
}

/// ESTABLISHED to `remote`, idle `idle` seconds, keepalive as given (idle in seconds).
fn conn(remote: &str, idle: u64, keepalive: Option<u64>) -> Connection {
    let local: SocketAddr = "10.9.9.9:50000".parse().expect("address");
    let mut c = Connection::new(
        1,
        tcp_state::ESTABLISHED,
        local,
        remote.parse().expect("address"),
    );
    c.idle = Some(S(idle));
    c.since_peer = Some(S(idle));
    c.state_age = Some(S(idle));
    c.unacked_bytes = Some(0);
    c.keepalive = Some(Keepalive {
        enabled: keepalive.is_some(),
        idle: Some(S(keepalive.unwrap_or(7200))),
        interval: Some(S(75)),
        count: Some(9),
    });
    c
}

fn flagged(c: &Connection, policy: &Policy) -> bool {
    evaluate(c, policy, RETRIES2)
        .0
        .contains(&Reason::IdleBeyondPathTimeout)
}

#[test]
fn idle_past_the_share_without_timely_keepalive_is_flagged() {
    let p = policy();
    // 0.8 × 350 s = 280 s.
    let cases = [
        ("10.1.2.3:443", 280, None, false, "at the share"),
        ("10.1.2.3:443", 281, None, true, "keepalive off"),
        (
            "10.1.2.3:443",
            281,
            Some(350),
            true,
            "first probe at the timeout",
        ),
        ("10.1.2.3:443", 281, Some(7200), true, "default 2 h"),
        ("10.1.2.3:443", 281, Some(60), false, "probes keep it alive"),
        ("10.1.2.3:80", 3000, None, false, "another port"),
        ("192.0.2.1:443", 3000, None, false, "another range"),
        ("[fd00::1]:5432", 200, None, true, "IPv6 path, any port"),
    ];
    for (remote, idle, keepalive, expected, case) in cases {
        assert_eq!(
            flagged(&conn(remote, idle, keepalive), &p),
            expected,
            "{case}"
        );
    }
    let mut unknown = conn("10.1.2.3:443", 3000, None);
    unknown.keepalive = None;
    assert!(
        !flagged(&unknown, &p),
        "unknown keepalive is not guessed at"
    );
    let mut closing = conn("10.1.2.3:443", 3000, None);
    closing.state = tcp_state::CLOSE_WAIT;
    assert!(!flagged(&closing, &p), "only ESTABLISHED");
}

#[test]
fn independent_of_idle_after_and_absent_without_paths() {
    let c = conn("10.1.2.3:443", 300, None);
    let (reasons, _) = evaluate(&c, &policy(), RETRIES2);
    assert_eq!(
        reasons,
        [Reason::IdleBeyondPathTimeout],
        "idle_after is 15 min"
    );
    assert!(!flagged(&c, &Policy::default()));
    let mut long = conn("10.1.2.3:443", 3600, None);
    long.since_peer = Some(S(3600));
    let (reasons, _) = evaluate(&long, &policy(), RETRIES2);
    assert_eq!(
        reasons,
        [Reason::IdleNoKeepalive, Reason::IdleBeyondPathTimeout]
    );
}

#[test]
fn the_sentence_names_the_path_its_timeout_and_when_the_flow_is_forgotten() {
    let p = policy();
    let mut before = conn("10.1.2.3:443", 290, None);
    before.suspect = evaluate(&before, &p, RETRIES2).0;
    assert_eq!(
        explain(&before, &p),
        [
            "path aws-nlb (10.0.0.0/8) drops flows idle 5m50s: idle 4m50s > 0.8 of it, keepalive off; forgets the flow in 1m00s"
        ]
    );
    let mut after = conn("[fd00::1]:5432", 300, Some(7200));
    after.suspect = evaluate(&after, &p, RETRIES2).0;
    assert_eq!(
        explain(&after, &p),
        [
            "path nat (fd00::/8) drops flows idle 4m00s: idle 5m00s > 0.8 of it, keepalive idle 2h00m ≥ the timeout; forgot the flow 1m00s ago: the next packet gets no answer or a reset"
        ]
    );
}

#[test]
fn the_hosts_conntrack_entry_is_a_path_a_configured_one_wins_over() {
    let found = crate::model::ConntrackDrop {
        timeout: S(300),
        drops_at_idle: S(299),
    };
    let mut c = conn("192.0.2.7:443", 250, None);
    assert!(!flagged(&c, &policy()), "no [[path]] and no entry");
    c.conntrack = Some(found);
    c.suspect = evaluate(&c, &policy(), RETRIES2).0;
    assert_eq!(c.suspect, [Reason::IdleBeyondPathTimeout]);
    assert_eq!(
        explain(&c, &policy()),
        [
            "path conntrack (this host's entry for the flow) drops flows idle 5m00s: idle 4m10s > 0.8 of it, keepalive off; forgets the flow in 49s"
        ]
    );
    let mut nlb = conn("10.1.2.3:443", 250, None);
    nlb.conntrack = Some(found);
    assert!(
        !flagged(&nlb, &policy()),
        "the NLB's 350 s decides: 250 s < 280 s"
    );
    c.idle = Some(S(3));
    assert!(!flagged(&c, &policy()), "traffic clears it");
}
