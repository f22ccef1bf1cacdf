use std::net::SocketAddr;

use monitor_common::{
    SockActivity,
    holders::{HeldSocket, NO_SLOT},
    tcp_state,
};

use super::*;
use crate::model::Comm;

/// A descriptor `fd` of `tgid` holding the socket `cookie`, which the table keeps in slot
/// `cookie` (cookie 0: not tracked).
fn record(cookie: u64, tgid: u32, fd: u32) -> HeldSocket {
    let mut r = HeldSocket::zeroed();
    (r.cookie, r.tgid, r.fd) = (cookie, tgid, fd);
    r.slot = if cookie == 0 { NO_SLOT } else { slot(cookie) };
    r
}

fn slot(cookie: u64) -> u32 {
    u32::try_from(cookie).unwrap()
}

/// One pass over `records`, begun at `read_ns`, after the passes already in `held`.
fn pass(held: &mut HeldSockets, records: &[HeldSocket], read_ns: u64) -> HeldPass {
    held.pass_of(records, read_ns)
}

/// The holders of `cookie` as one pass over `records` saw them.
fn one_pass(records: &[HeldSocket]) -> HeldSockets {
    let mut held = HeldSockets::default();
    pass(&mut held, records, 1);
    held
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
    let mut index = HeldSockets::default();
    let counted = pass(&mut index, &records, 1);
    assert_eq!((counted.sockets, counted.untracked), (2, 1));
    assert_eq!(index.of(1, 1), Some(&[20, 25, 30][..]));
    assert_eq!(index.of(2, 2), Some(&[40][..]));
    assert_eq!(index.of(0, 0), None);
    assert_eq!(index.of(3, 3), None);
    // A slot another socket took since the pass.
    assert_eq!(index.of(1, 5), None);

    let mut shared = connection(1, Some(30));
    attribute(&mut shared, Some(&index), 1, false);
    assert_eq!(
        (shared.pid, pids(&shared)),
        (Some(20), Some(vec![20, 25, 30]))
    );
    let mut inherited = connection(2, Some(99));
    attribute(&mut inherited, Some(&index), 2, false);
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
    let index = one_pass(&[record(1, 30, 3)]);
    let mut orphan = connection(7, Some(12));
    orphan.orphan = true;
    attribute(&mut orphan, Some(&index), 7, false);
    assert_eq!((orphan.pid, pids(&orphan)), (Some(12), Some(vec![])));
    let mut queued = connection(8, None);
    attribute(&mut queued, Some(&index), 8, true);
    assert_eq!((queued.pid, pids(&queued)), (None, Some(vec![])));
    // Newer than the pass: the hooks' owner, holders unknown.
    let mut newer = connection(9, Some(12));
    attribute(&mut newer, Some(&index), 9, false);
    assert_eq!((newer.pid, pids(&newer)), (Some(12), None));
    // Before the first pass: as today.
    let mut early = connection(1, Some(12));
    attribute(&mut early, None, 1, false);
    assert_eq!((early.pid, pids(&early)), (Some(12), None));
}

#[test]
fn holders_are_named_from_proc_and_the_owner_keeps_its_name() {
    let index = one_pass(&[record(1, 7, 3), record(1, 8, 3)]);
    let mut c = connection(1, None);
    attribute(&mut c, Some(&index), 1, false);
    c.comm = Some(Comm::new("owner"));
    let mut processes = ProcessCache::with_lookup(|pid| super::super::processes::ProcessInfo {
        name: (pid == 8).then(|| Comm::new("worker")),
        cgroup: None,
        pod: None,
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
    let index = one_pass(&[a, b]);
    assert_eq!(index.view(1, 1).map(|v| v.sample.lsndtime), Some(7));
    assert!(index.view(2, 2).is_none());
}

#[test]
fn a_socket_the_last_pass_missed_is_unseen_and_a_failed_pass_keeps_the_one_before() {
    let mut held = HeldSockets::default();
    pass(&mut held, &[record(1, 30, 3), record(2, 40, 4)], 1_000);
    pass(&mut held, &[record(2, 41, 4)], 2_000);
    assert!(held.view(1, 1).is_none(), "closed since: no descriptor");
    assert_eq!(held.of(2, 2), Some(&[41][..]));
    assert_eq!(held.view(2, 2).map(|v| v.read_ns), Some(2_000));
    // A pass that fails after reaching socket 2 only: socket 3 keeps the last complete pass.
    pass(&mut held, &[record(3, 50, 5)], 3_000);
    held.slots_of.sweep_pairs([(2, 2), (3, 3)]);
    held.begin(4_000);
    held.add(&record(2, 42, 4), &mut HeldPass::default());
    assert_eq!(held.of(2, 2), Some(&[42][..]));
    assert_eq!(held.view(3, 3).map(|v| v.read_ns), Some(3_000));
    assert_eq!(held.of(3, 3), Some(&[50][..]));
}

#[test]
fn passes_are_paced_by_their_cpu_time() {
    let mut pacer = HeldPacer::default();
    let began = Instant::now();
    assert!(pacer.due(began), "the first pass is due at once");
    pacer.record(
        began,
        Duration::from_millis(2),
        Some(Duration::from_millis(3)),
    );
    let wait = Duration::from_millis(2) * HELD_READ_SHARE;
    assert!(!pacer.due(began + wait.saturating_sub(Duration::from_millis(1))));
    assert!(pacer.due(began + wait));
    assert_eq!(pacer.reads.total, 1);
    // However long a pass took, the next comes within the longest wait; a failed one is not
    // counted.
    pacer.record(began, Duration::from_secs(1), None);
    assert!(!pacer.due(began + HELD_READ_MAX_AGE.saturating_sub(Duration::from_millis(1))));
    assert!(pacer.due(began + HELD_READ_MAX_AGE));
    assert_eq!(pacer.reads.total, 1);
}

#[test]
fn at_the_longest_wait_a_pass_comes_at_the_nearest_scan_not_the_one_after() {
    let interval = Duration::from_secs(5);
    let mut pacer = HeldPacer::with_scan_interval(interval);
    let began = Instant::now();
    // A pass whose share would put the next a minute off: the longest wait decides.
    pacer.record(
        began,
        Duration::from_millis(600),
        Some(Duration::from_millis(600)),
    );
    let early = Duration::from_millis(40);
    let scans = |n: u32, late: bool| {
        let at = interval * n;
        began
            + if late {
                at + early
            } else {
                at.saturating_sub(early)
            }
    };
    // Scans a little early or late: never the first two after the pass, always the third
    // (15 s: HELD_READ_MAX_AGE), so values are never put off to the fourth (20 s).
    for late in [false, true] {
        assert!(
            !pacer.due(scans(1, late)) && !pacer.due(scans(2, late)),
            "late: {late}"
        );
        assert!(pacer.due(scans(3, late)), "late: {late}");
    }
    assert_eq!(interval * 3, HELD_READ_MAX_AGE);
}

#[test]
fn a_peers_segment_that_changes_no_kernel_time_is_heard_by_the_pass_that_sees_it() {
    let mut before = record(1, 30, 3);
    (before.segs_in, before.rcv_tstamp) = (10, 500);
    let mut held = HeldSockets::default();
    pass(&mut held, &[before, record(2, 30, 4)], 1_000);
    assert_eq!(held.view(1, 1).and_then(|v| v.heard_ns), None);
    // Socket 1: one more segment, no new ACK time (a keepalive probe); socket 2: nothing.
    let mut probe = before;
    probe.segs_in = 11;
    pass(&mut held, &[probe, record(2, 30, 4)], 2_000);
    assert_eq!(held.view(1, 1).and_then(|v| v.heard_ns), Some(2_000));
    assert_eq!(held.view(2, 2).and_then(|v| v.heard_ns), None);
    // Carried while nothing changes; an ACK the kernel timed (rcv_tstamp moved) needs none.
    pass(&mut held, &[probe], 3_000);
    assert_eq!(held.view(1, 1).and_then(|v| v.heard_ns), Some(2_000));
    let mut acked = probe;
    (acked.segs_in, acked.rcv_tstamp) = (12, 600);
    pass(&mut held, &[acked], 4_000);
    assert_eq!(held.view(1, 1).and_then(|v| v.heard_ns), Some(2_000));
    // Another socket in the slot: nothing carried over.
    let mut other = record(7, 30, 3);
    (other.slot, other.segs_in, other.rcv_tstamp) = (1, 99, 600);
    pass(&mut held, &[other], 5_000);
    assert_eq!(held.view(1, 7).and_then(|v| v.heard_ns), None);
}

#[test]
fn a_pass_that_finds_missed_sockets_asks_for_a_read_at_most_once_per_max_age() {
    let mut held = HeldSockets::default();
    let mut missed = record(9, 30, 3);
    missed.slot = NO_SLOT;
    missed.state = tcp_state::ESTABLISHED;
    let mut never_connected = record(0, 30, 4);
    never_connected.state = tcp_state::CLOSE;
    let counted = pass(&mut held, &[missed, never_connected, record(1, 30, 5)], 1);
    assert_eq!(
        (counted.sockets, counted.untracked, counted.missed),
        (1, 2, 1)
    );

    let mut pacer = HeldPacer::default();
    let now = Instant::now();
    assert!(pacer.ask_for_read(now));
    assert!(!pacer.ask_for_read(now + HELD_READ_MAX_AGE.saturating_sub(Duration::from_millis(1))));
    assert!(pacer.ask_for_read(now + HELD_READ_MAX_AGE));
}

#[test]
fn a_socket_the_table_added_during_the_pass_is_placed_not_missed() {
    let mut held = HeldSockets::default();
    let mut fresh = record(9, 30, 3);
    fresh.state = tcp_state::ESTABLISHED;
    let mut gone = record(8, 30, 4);
    gone.state = tcp_state::ESTABLISHED;
    // The table as the pass began: socket 1 only.
    held.slots_of.sweep_pairs([(1, 1)]);
    held.begin(1_000);
    let mut counted = HeldPass::default();
    for r in [record(1, 30, 5), fresh, gone] {
        held.add(&r, &mut counted);
    }
    // As it ends: the hooks have added socket 9; socket 8 the table never got.
    let table: Vec<(u64, SockActivity)> = [1, 0, 0, 0, 0, 0, 0, 0, 0, 9]
        .into_iter()
        .map(|cookie| (cookie, SockActivity::zeroed()))
        .collect();
    held.slots_of.look_again(&table);
    held.place_the_rest(&mut counted);
    held.finish();
    assert_eq!(
        (counted.sockets, counted.untracked, counted.missed),
        (2, 1, 1)
    );
    assert_eq!(
        held.of(9, 9),
        Some(&[30][..]),
        "in the slot the table gave it"
    );
}
