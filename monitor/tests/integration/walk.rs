//! The slot walk (`Programs::slot_walker`) against the kernel's own view: real connections in a
//! pair of namespaces the test creates, among them sockets no process holds (an orphan in
//! FIN-WAIT-2 after its application closed it, and a connection waiting in an accept queue),
//! which the descriptor pass cannot see. One walk must report every socket of both namespaces
//! with `ss -tanieO`'s cookie and state, its byte and segment counts, receive queue and ages
//! within `ss -ti`'s tolerance, and say which is the orphan and which sockets have no
//! `struct socket` (`ino:0`: the orphan and the queued connection). Run as root, under the shared kernel test lock; under
//! CI=true a missing privilege fails instead of skipping.

use std::{collections::BTreeMap, time::Duration};

use harness::{
    netns::Netns, peer::Peer, privilege::Need, scenario::SERVICE_PORT, ss::SsSocket, wait::poll,
};
use monitor::bpf::{Programs, kernel_state::kernel_hz, walk::SlotWalker};
use monitor_common::{
    holders::{HS_DEAD, HS_NO_SOCKET, HeldSocket},
    tcp_state,
};

use crate::{
    common::scenario,
    holders::{kernel_at_least, ss_sockets, values_vs_ss},
};

/// Table slots: room for every socket the host makes while the test runs.
const CAPACITY: u32 = 4096;

/// The port of the listener that never accepts.
const QUEUE_PORT: u16 = SERVICE_PORT + 1;

/// One walk's records, by cookie.
fn walk(walker: &SlotWalker) -> BTreeMap<u64, HeldSocket> {
    let mut records = BTreeMap::new();
    walker
        .for_each(|r| {
            records.insert(r.cookie, *r);
        })
        .expect("walk the table's slots");
    records
}

/// `ss -tanieO` of `ns` once `ready` says the sockets are as the test needs them.
fn settled(ns: &Netns, ready: impl Fn(&[SsSocket]) -> bool) -> Vec<SsSocket> {
    poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let lines = ss_sockets(ns);
        Ok::<_, ()>(ready(&lines).then_some(lines))
    })
    .expect("ss")
    .unwrap_or_else(|| {
        panic!(
            "sockets of {} never settled: {:?}",
            ns.name(),
            ss_sockets(ns)
        )
    })
}

/// What two walks (`before` and `after` `line` was printed) say of `line`'s socket that `ss`
/// does not: its state, whether it is an orphan and has a `struct socket`, its values.
fn walked_vs_ss(
    line: &SsSocket,
    before: &BTreeMap<u64, HeldSocket>,
    after: &BTreeMap<u64, HeldSocket>,
    hz: u32,
) -> Vec<String> {
    let cookie = line.cookie.expect("ss -e prints sk:");
    let who = format!(
        "{} {} -> {} sk:{cookie:x}",
        line.state, line.local, line.remote
    );
    let (Some(first), Some(second)) = (before.get(&cookie), after.get(&cookie)) else {
        return vec![format!("{who}: not in the walk")];
    };
    let mut wrong = Vec::new();
    let state = tcp_state::name(first.state).unwrap_or("?");
    if state != line.state {
        wrong.push(format!("{who}: state {state}"));
    }
    let orphan = line.state == "fin_wait2";
    if (first.flags & HS_DEAD != 0) != orphan {
        wrong.push(format!("{who}: orphan flag {}", first.flags & HS_DEAD != 0));
    }
    // No `struct socket` (ss: ino 0): the orphan and the connection nobody accepted yet.
    let no_socket = first.flags & HS_NO_SOCKET != 0;
    if no_socket != (line.inode() == Some(0)) {
        wrong.push(format!(
            "{who}: no-socket flag {no_socket}, ss ino {:?}",
            line.inode()
        ));
    }
    if first.state != tcp_state::LISTEN {
        wrong.extend(values_vs_ss(&who, first, second, line, hz));
    }
    wrong
}

#[test]
fn one_walk_reads_every_tracked_socket_orphans_and_the_accept_queue_included() {
    let Some(sc) = scenario("slot_walk", Need::RootAndKernelBtf) else {
        return;
    };
    if !kernel_at_least(6, 2) {
        // Without bpf_rdonly_cast the agent runs no walk: the load must say so.
        let mut programs = Programs::load(CAPACITY, false).expect("load the probes");
        assert!(programs.slot_walker().is_err());
        return;
    }
    // Loaded first: the programs track the sockets whose state changes they see, and remember
    // each one's address for the walk.
    let mut programs = Programs::load(CAPACITY, false).expect("load the probes");
    let walker = programs.slot_walker().expect("load the slot walk");
    let descriptors = programs.holders_reader().expect("load iter/task_file");
    let hz = kernel_hz().expect("kernel tick rate");
    let net = sc.net();
    let ip = net.server_ip.as_str();
    let queue_port = QUEUE_PORT.to_string();
    // Echo without ever closing: the "close" client's socket is left in FIN-WAIT-2 (an orphan),
    // the server's in CLOSE_WAIT. An orphan's FIN-WAIT-2 stays a full socket only when it may
    // last longer than TIME_WAIT (60 s); otherwise the kernel swaps in a time-wait socket.
    net.client
        .run("sysctl", &["-qw", "net.ipv4.tcp_fin_timeout=120"])
        .expect("tcp_fin_timeout");
    let _server = sc.server(&["no-close"]);
    let _queue =
        Peer::start(&net.server, &["server", ip, &queue_port, "never-accept"]).expect("listener");
    let _idle = sc.client(&["idle"]);
    let _closed = sc.client(&["close"]);
    let _queued = Peer::start(&net.client, &["client", ip, &queue_port, "send-hold", "1"])
        .expect("queued client");
    let client = settled(&net.client, |lines| {
        lines.len() == 3 && lines.iter().any(|l| l.state == "fin_wait2")
    });
    // The queued client's 100 bytes arrived (they wait, unread, in the queued socket).
    let server = settled(&net.server, |lines| {
        let connections = lines.iter().filter(|l| l.state != "listen");
        lines.len() == 5 && connections.map(|l| l.recv_q).sum::<u32>() == 100
    });

    let before = walk(&walker);
    let lines: Vec<SsSocket> = [ss_sockets(&net.client), ss_sockets(&net.server)].concat();
    let after = walk(&walker);
    let held: Vec<u64> = descriptors
        .read()
        .expect("descriptor pass")
        .iter()
        .map(|r| r.cookie)
        .collect();

    let wrong: Vec<String> = lines
        .iter()
        .flat_map(|line| walked_vs_ss(line, &before, &after, hz))
        .collect();
    assert!(wrong.is_empty(), "one walk vs ss:\n{}", wrong.join("\n"));

    // The scenario itself, so a wrong set-up cannot pass by agreeing with ss: an orphan and a
    // connection in the accept queue, which no process holds and the descriptor pass misses.
    let unheld: Vec<&SsSocket> = client
        .iter()
        .chain(&server)
        .filter(|l| l.holders().is_empty())
        .collect();
    let states: Vec<&str> = unheld.iter().map(|l| l.state.as_str()).collect();
    assert_eq!(
        states,
        ["fin_wait2", "established"],
        "sockets nobody holds: {unheld:?}"
    );
    for line in unheld {
        let cookie = line.cookie.expect("cookie");
        assert!(!held.contains(&cookie), "the descriptor pass saw {line:?}");
    }
    let sent: u64 = client
        .iter()
        .filter_map(|l| l.fields.get("bytes_sent")?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        sent, 108,
        "hello, bye and the queued client's 100: {client:?}"
    );
    // Those 100 bytes are the queued socket's, which no process can read yet.
    let queued: Vec<u32> = server
        .iter()
        .filter(|l| l.holders().is_empty())
        .map(|l| l.recv_q)
        .collect();
    assert_eq!(queued, [100], "Recv-Q of the queued socket: {server:?}");
}
