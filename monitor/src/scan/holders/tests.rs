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
    let index = HolderIndex::of_records(&records);
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
    let index = HolderIndex::of_records(&[record(1, 30, 3)]);
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
    let index = HolderIndex::of_records(&[record(1, 7, 3), record(1, 8, 3)]);
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
