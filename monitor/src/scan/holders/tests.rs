use std::net::SocketAddr;

use monitor_common::{holders::HeldSocket, tcp_state};

use super::*;
use crate::model::Comm;

fn record(cookie: u64, tgid: u32, fd: u32) -> HeldSocket {
    let mut r = HeldSocket::zeroed();
    (r.cookie, r.tgid, r.fd) = (cookie, tgid, fd);
    r
}

fn connection(cookie: u64, hooks_pid: Option<u32>) -> Connection {
    let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let mut c = Connection::new(cookie, tcp_state::CLOSE_WAIT, addr, addr);
    c.pid = hooks_pid;
    c
}

fn pids(c: &Connection) -> Option<Vec<u32>> {
    c.holders
        .as_slice()
        .map(|holders| holders.iter().map(|h| h.pid).collect())
}

#[test]
fn every_holder_once_ascending_and_the_lowest_owns() {
    // Socket 1: held by 30 (twice: dup), 20 and 25; socket 2: by 40 only; cookie 0 is skipped.
    let records = [
        record(1, 30, 3),
        record(2, 40, 4),
        record(1, 20, 5),
        record(1, 30, 7),
        record(1, 25, 3),
        record(0, 50, 3),
    ];
    let index = HeldSockets::of_records(&records);
    assert_eq!(index.of(1), Some(&[20, 25, 30][..]));
    assert_eq!(index.of(2), Some(&[40][..]));
    assert_eq!(index.of(0), None);
    assert_eq!(index.of(3), None);

    let mut shared = connection(1, Some(30));
    attribute(&mut shared, Some(&index), false);
    assert_eq!(
        (shared.pid, pids(&shared)),
        (Some(20), Some(vec![20, 25, 30]))
    );
    let mut inherited = connection(2, Some(99));
    attribute(&mut inherited, Some(&index), false);
    assert_eq!(
        (inherited.pid, &inherited.holders),
        (
            Some(40),
            &Holders::One(Holder {
                pid: 40,
                comm: None
            })
        )
    );
}

#[test]
fn no_descriptor_says_why_and_unknown_keeps_the_hooks_owner() {
    let index = HeldSockets::of_records(&[record(1, 30, 3)]);
    let mut orphan = connection(7, Some(12));
    orphan.orphan = true;
    attribute(&mut orphan, Some(&index), false);
    assert_eq!((orphan.pid, pids(&orphan)), (Some(12), Some(vec![])));
    let mut queued = connection(8, None);
    attribute(&mut queued, Some(&index), true);
    assert_eq!((queued.pid, pids(&queued)), (None, Some(vec![])));
    // Newer than the pass: the hooks' owner, holders unknown.
    let mut newer = connection(9, Some(12));
    attribute(&mut newer, Some(&index), false);
    assert_eq!((newer.pid, pids(&newer)), (Some(12), None));
    // Before the first pass: as today.
    let mut early = connection(1, Some(12));
    attribute(&mut early, None, false);
    assert_eq!((early.pid, pids(&early)), (Some(12), None));
}

#[test]
fn holders_are_named_from_proc_and_the_owner_keeps_its_name() {
    let index = HeldSockets::of_records(&[record(1, 7, 3), record(1, 8, 3)]);
    let mut c = connection(1, None);
    attribute(&mut c, Some(&index), false);
    c.comm = Some(Comm::new("owner"));
    let mut processes = ProcessCache::with_lookup(|pid| super::super::processes::ProcessInfo {
        name: (pid == 8).then(|| Comm::new("worker")),
        cgroup: None,
    });
    name_holders(&mut c, &mut processes);
    let names: Vec<_> = c
        .holders
        .as_slice()
        .unwrap()
        .iter()
        .map(|h| h.comm)
        .collect();
    assert_eq!(names, [Some(Comm::new("owner")), Some(Comm::new("worker"))]);
}

#[test]
fn the_first_visit_of_a_socket_is_its_sample() {
    let mut a = record(1, 30, 3);
    a.lsndtime = 7;
    let mut b = record(1, 20, 4);
    b.lsndtime = 9;
    let index = HeldSockets::of_records(&[a, b]);
    assert_eq!(index.view(1).map(|v| v.sample.lsndtime), Some(7));
    assert!(index.view(2).is_none());
}

#[test]
fn passes_are_paced_by_their_cpu_time() {
    let mut pacer = HeldPacer::default();
    let began = Instant::now();
    assert!(pacer.due(began), "the first pass is due at once");
    pacer.record(began, Duration::from_millis(2));
    let wait = Duration::from_millis(2) * HELD_READ_SHARE;
    assert!(!pacer.due(began + wait.saturating_sub(Duration::from_millis(1))));
    assert!(pacer.due(began + wait));
}

#[test]
fn a_peers_segment_that_changes_no_kernel_time_is_heard_by_the_pass_that_sees_it() {
    let mut before = record(1, 30, 3);
    (before.segs_in, before.rcv_tstamp) = (10, 500);
    let mut previous = HeldSockets::of_records(&[before, record(2, 30, 4)]);
    previous.read_ns = 1_000;
    // Socket 1: one more segment, no new ACK time (a keepalive probe); socket 2: nothing.
    let mut probe = before;
    probe.segs_in = 11;
    let mut next = HeldSockets::of_records(&[probe, record(2, 30, 4)]);
    next.read_ns = 2_000;
    next.carry_from(&previous);
    assert_eq!(next.view(1).and_then(|v| v.heard_ns), Some(2_000));
    assert_eq!(next.view(2).and_then(|v| v.heard_ns), None);
    // Carried while nothing changes; an ACK the kernel timed (rcv_tstamp moved) needs none.
    let mut later = HeldSockets::of_records(&[probe]);
    later.read_ns = 3_000;
    later.carry_from(&next);
    assert_eq!(later.view(1).and_then(|v| v.heard_ns), Some(2_000));
    let mut acked = probe;
    (acked.segs_in, acked.rcv_tstamp) = (12, 600);
    let mut last = HeldSockets::of_records(&[acked]);
    last.carry_from(&later);
    assert_eq!(last.view(1).and_then(|v| v.heard_ns), Some(2_000));
}
