use std::net::SocketAddr;

use monitor_common::{
    SockActivity,
    holders::{HS_DEAD, HeldSocket, NO_SLOT},
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

#[test]
fn a_view_gives_back_every_value_the_agent_uses_and_keeps_extras_only_while_set() {
    use crate::bpf::task_file::holders::unacked_bytes;
    use monitor_common::holders::{HS_KEEPOPEN, HS_TIMERS_READ};
    let mut r = record(1, 30, 3);
    (r.snd_una, r.snd_nxt, r.write_seq) = (u32::MAX - 100, 400, 900);
    r.recv_queue = 64;
    (r.user_timeout_ms, r.keepalive_time, r.keepalive_intvl) = (5_000, 60_000, 10_000);
    (
        r.stamp_now,
        r.retrans_stamp,
        r.retransmits,
        r.keepalive_probes,
    ) = (9_000, 8_000, 2, 4);
    (r.now_jiffies, r.lsndtime, r.lrcvtime, r.rcv_tstamp) = (40, 10, 20, 30);
    (r.bytes_sent, r.bytes_received, r.srtt_us_x8, r.segs_in) = (u64::MAX - 1, 7, 800, 9);
    (r.state, r.flags) = (tcp_state::ESTABLISHED, HS_KEEPOPEN | HS_TIMERS_READ);
    let mut held = HeldSockets::default();
    pass(&mut held, &[r], 1_000);
    let s = held.view(1, 1).unwrap().sample;
    assert_eq!(unacked_bytes(&s), 501, "in flight across the sequence wrap");
    assert_eq!(s.write_seq.wrapping_sub(s.snd_una), 1_001, "send queue");
    let kept = |s: &HeldSocket| {
        (
            (s.cookie, s.tgid, s.state, s.flags, s.slot),
            (
                s.user_timeout_ms,
                s.keepalive_time,
                s.keepalive_intvl,
                s.keepalive_probes,
            ),
            (s.stamp_now, s.retrans_stamp, s.retransmits, s.recv_queue),
            (s.now_jiffies, s.lsndtime, s.lrcvtime, s.rcv_tstamp),
            (s.bytes_sent, s.bytes_received, s.srtt_us_x8, s.segs_in),
        )
    };
    assert_eq!(kept(&s), kept(&r));
    // Nothing in flight, no options, nothing retransmitted: the extras go with their values.
    let mut idle = r;
    (idle.snd_nxt, idle.write_seq, idle.recv_queue) = (idle.snd_una, idle.snd_una, 0);
    (
        idle.user_timeout_ms,
        idle.keepalive_time,
        idle.keepalive_intvl,
    ) = (0, 0, 0);
    (idle.stamp_now, idle.retrans_stamp, idle.retransmits) = (0, 0, 0);
    pass(&mut held, &[idle], 2_000);
    let s = held.view(1, 1).unwrap().sample;
    assert_eq!(
        (unacked_bytes(&s), s.user_timeout_ms, s.stamp_now),
        (0, 0, 0)
    );
    assert!(held.extras.is_empty());
    // Another socket in the slot never shows the last one's extras.
    pass(&mut held, &[r], 3_000);
    let mut other = record(7, 30, 3);
    other.slot = 1;
    pass(&mut held, &[other], 4_000);
    assert_eq!(held.view(1, 7).unwrap().sample.user_timeout_ms, 0);
    assert!(held.extras.is_empty());
}

/// A walk's record of the socket `cookie` (in its slot), with no holder, as the program writes
/// it.
fn walked(cookie: u64, bytes_sent: u64) -> HeldSocket {
    let mut r = record(cookie, 0, 0);
    r.bytes_sent = bytes_sent;
    r
}

#[test]
fn a_walk_refreshes_the_values_and_keeps_the_holders_of_the_same_socket() {
    let mut held = HeldSockets::default();
    let mut first = record(1, 30, 3);
    first.bytes_sent = 10;
    pass(
        &mut held,
        &[first, record(1, 31, 4), record(2, 40, 5)],
        1_000,
    );
    held.walk_of(&[walked(1, 99), walked(2, 7)], 2_000);
    let view = held.view(1, 1).expect("walked");
    assert_eq!((view.sample.bytes_sent, view.read_ns), (99, 2_000));
    assert_eq!(held.of(1, 1), Some(&[30, 31][..]));
    assert_eq!(held.of(2, 2), Some(&[40][..]));
}

#[test]
fn a_walk_gives_no_holders_to_an_orphan_or_to_another_socket_in_the_slot() {
    let mut held = HeldSockets::default();
    pass(&mut held, &[record(1, 30, 3), record(2, 40, 5)], 1_000);
    let mut orphan = walked(1, 5);
    orphan.flags |= HS_DEAD;
    // Slot 2 now holds the socket with cookie 2 + 2^32 (the same slot, another socket).
    let mut other = walked(2, 5);
    other.cookie = 2 + (1 << 32);
    held.walk_of(&[orphan, other], 2_000);
    assert_eq!(held.of(1, 1), None);
    assert!(held.view(1, 1).is_some(), "its values are the walk's");
    assert_eq!(held.of(2, other.cookie), None);
    assert_eq!(
        held.view(2, 2).map(|v| v.read_ns),
        None,
        "the old socket is gone"
    );
    // A later walk that finds the first socket alive again in the same slot does not bring its
    // holders back: only a descriptor pass knows them.
    held.walk_of(&[walked(2, 6)], 3_000);
    assert_eq!(held.of(2, 2), None);
}

#[test]
fn a_descriptor_pass_takes_the_holders_from_what_it_saw_and_walked_values_stay_current() {
    let mut held = HeldSockets::default();
    pass(&mut held, &[record(1, 30, 3), record(2, 40, 5)], 1_000);
    held.walk_of(&[walked(1, 11), walked(2, 22)], 2_000);
    // Socket 1's descriptor was closed (an orphan now, or about to be); socket 2 is still held.
    pass(&mut held, &[record(2, 41, 5)], 3_000);
    assert_eq!(held.of(1, 1), None);
    assert_eq!(held.of(2, 2), Some(&[41][..]));
    // Its values from the walk before the pass stay current until the next walk...
    assert_eq!(held.view(1, 1).map(|v| v.read_ns), Some(2_000));
    // ...which no longer finding it (closed) makes it stale; socket 2 the pass read stays.
    held.walk_of(&[walked(2, 23)], 4_000);
    assert_eq!(held.view(1, 1).map(|v| v.read_ns), None);
    assert_eq!(held.view(2, 2).map(|v| v.sample.bytes_sent), Some(23));
}

#[test]
fn a_socket_no_walk_reaches_keeps_the_values_of_the_descriptor_pass_until_the_next() {
    let mut held = HeldSockets::default();
    // Socket 3 was seeded by the agent: no walk reaches it until a table refresh visits it.
    pass(&mut held, &[record(1, 30, 3), record(3, 50, 6)], 1_000);
    held.walk_of(&[walked(1, 11)], 2_000);
    assert_eq!(held.view(3, 3).map(|v| v.read_ns), Some(1_000));
    assert_eq!(held.of(3, 3), Some(&[50][..]));
    held.walk_of(&[walked(1, 12)], 3_000);
    pass(&mut held, &[record(1, 30, 3)], 4_000);
    assert!(held.view(3, 3).is_none());
    assert_eq!(held.of(3, 3), None);
}

#[test]
fn a_pacer_paced_otherwise_waits_by_its_own_share_and_longest_wait() {
    let mut pacer = HeldPacer::default().paced(HOLDERS_READ_SHARE, HOLDERS_READ_MAX_AGE);
    let began = Instant::now();
    pacer.record(
        began,
        Duration::from_millis(10),
        Some(Duration::from_millis(10)),
    );
    let wait = Duration::from_millis(10) * HOLDERS_READ_SHARE;
    assert!(!pacer.due(began + wait.saturating_sub(Duration::from_millis(1))));
    assert!(pacer.due(began + wait));
    pacer.record(began, Duration::from_secs(1), Some(Duration::from_secs(1)));
    assert!(!pacer.due(began + HOLDERS_READ_MAX_AGE.saturating_sub(Duration::from_millis(1))));
    assert!(pacer.due(began + HOLDERS_READ_MAX_AGE));
}

#[test]
fn before_any_descriptor_pass_the_last_walk_alone_says_what_is_current() {
    let mut held = HeldSockets::default();
    held.walk_of(&[walked(1, 5), walked(2, 6)], 1_000);
    assert_eq!(held.view(1, 1).map(|v| v.sample.bytes_sent), Some(5));
    assert_eq!(held.of(1, 1), None, "no holders without a descriptor pass");
    // Socket 1 closed: the next walk does not find it, and its values are not current.
    held.walk_of(&[walked(2, 7)], 2_000);
    assert!(held.view(1, 1).is_none());
    assert_eq!(held.view(2, 2).map(|v| v.sample.bytes_sent), Some(7));
}

#[test]
fn a_pacer_paced_back_to_the_values_cadence_is_due_by_its_longest_wait_at_once() {
    // Descriptor passes paced for holders alone; then the walk fails, and they bring the
    // values again: the pass due by the shorter longest wait comes at the next scan.
    let mut pacer = HeldPacer::default().paced(HOLDERS_READ_SHARE, HOLDERS_READ_MAX_AGE);
    let began = Instant::now();
    pacer.record(
        began,
        Duration::from_millis(100),
        Some(Duration::from_millis(100)),
    );
    let later = began + HELD_READ_MAX_AGE + Duration::from_secs(1);
    assert!(!pacer.due(later), "40 s by its share, 60 s at most");
    pacer.pace(HELD_READ_SHARE, HELD_READ_MAX_AGE);
    assert!(pacer.due(later));
}
