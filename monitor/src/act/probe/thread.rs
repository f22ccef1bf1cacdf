//! The probe thread: every [`TICK`], starts the probes the last scan offered (within the caps)
//! and finishes the ones answered or out of time, each namespace's batch through
//! `SockoptControl::apply` on a thread inside that namespace. At stop it finishes every probe
//! still running (restores the application's options) before it exits.
//!
//! Its own thread, started with the agent's kept capabilities: entering a namespace needs
//! `CAP_SYS_ADMIN`; the map updates and the iterator reads on the loaded program need none.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use monitor_common::sockopt::SockoptRequest;

use super::{
    ProbeBook,
    machine::{Candidate, Conclusion, Running},
};
use crate::{
    bpf::SockoptControl,
    clock,
    netns::{self, Netns},
    periodic::Periodic,
    scan::kernel_state::FastMap,
};

/// How often the thread looks for work: a probe's answer is noticed within a scan plus a tick.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The running probe thread. Dropping it stops the thread, which first restores every socket
/// it is still probing, and joins it.
pub struct ProbeThread {
    _thread: Periodic,
}

impl ProbeThread {
    /// Starts probing with `control` (the loaded `iter_tcp_sockopt` program) for `book`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(book: Arc<ProbeBook>, control: Arc<SockoptControl>) -> std::io::Result<Self> {
        let mut namespaces = Namespaces::default();
        Periodic::start_with_last_run("probe", move |stopping| {
            step(&book, &control, &mut namespaces, stopping);
            TICK
        })
        .map(|thread| Self { _thread: thread })
    }
}

/// One round: finish what is due (everything when `stopping`), then start what may start.
fn step(book: &ProbeBook, control: &Arc<SockoptControl>, ns: &mut Namespaces, stopping: bool) {
    let now_ns = clock::monotonic_now_ns();
    let (due, starts) = {
        let mut m = book.machine();
        let due = m.due(now_ns, stopping);
        let starts = if stopping {
            Vec::new()
        } else {
            m.starts(now_ns)
        };
        (due, starts)
    };
    for (netns, batch) in by_netns(due, |(r, _)| r.candidate.netns) {
        if ns.find(netns).is_none() {
            // The namespace is gone, and its sockets with it: nothing to restore.
            let mut m = book.machine();
            for (running, _) in &batch {
                m.finished(running.candidate.cookie, &SockoptRequest::default(), now_ns);
            }
            continue;
        }
        let requests: Vec<(u64, SockoptRequest)> = batch
            .iter()
            .map(|(r, req)| (r.candidate.cookie, *req))
            .collect();
        let outcomes = apply_in(control, ns, netns, requests);
        let now_ns = clock::monotonic_now_ns();
        for (running, _) in &batch {
            let cookie = running.candidate.cookie;
            let outcome = outcomes.as_ref().and_then(|o| o.get(&cookie));
            finish(book, running, outcome, now_ns);
        }
    }
    for (netns, batch) in by_netns(starts, |(c, _)| c.netns) {
        let requests: Vec<(u64, SockoptRequest)> =
            batch.iter().map(|(c, req)| (c.cookie, *req)).collect();
        let outcomes = apply_in(control, ns, netns, requests);
        let (now_ns, now) = (clock::monotonic_now_ns(), SystemTime::now());
        for (candidate, _) in batch {
            let outcome = outcomes.as_ref().and_then(|o| o.get(&candidate.cookie));
            start(book, control, ns, candidate, outcome, now_ns, now);
        }
    }
}

/// Records one start; a partial one is put back at once.
fn start(
    book: &ProbeBook,
    control: &Arc<SockoptControl>,
    ns: &mut Namespaces,
    candidate: Candidate,
    outcome: Option<&SockoptRequest>,
    now_ns: u64,
    now: SystemTime,
) {
    let Some(outcome) = outcome else {
        return;
    };
    if book.machine().started(candidate, outcome, now_ns, now) {
        tracing::info!(
            action = "probe_start",
            cookie = candidate.cookie,
            netns = candidate.netns,
            local = %candidate.local,
            remote = %candidate.remote,
            pid = candidate.pid,
            comm = candidate.comm.as_deref(),
            silent_s = candidate.silent_for.as_secs(),
            before = ?outcome.before,
            "keepalive probe started: keepalive switched on with probe timers (why: nothing from \
             the peer, no keepalive, no user timeout)"
        );
    } else if outcome.applied != 0 {
        let restore = super::machine::restore_request(outcome);
        let _ = apply_in(
            control,
            ns,
            candidate.netns,
            vec![(candidate.cookie, restore)],
        );
        tracing::warn!(
            cookie = candidate.cookie,
            error = outcome.error,
            "keepalive probe could not start: the options it set were put back"
        );
    }
}

/// Records one finish and writes its audit line.
fn finish(book: &ProbeBook, running: &Running, outcome: Option<&SockoptRequest>, now_ns: u64) {
    let c = &running.candidate;
    let Some(outcome) = outcome else {
        // The namespace could not be entered: try again next round (still running).
        return;
    };
    let conclusion = book.machine().finished(c.cookie, outcome, now_ns);
    book.count(conclusion);
    let result = match conclusion {
        Conclusion::Answered => "answered",
        Conclusion::Dead => "peer_dead",
        Conclusion::OneWay => "one_way",
        Conclusion::Inconclusive => "inconclusive",
        Conclusion::Gone => "socket_gone",
    };
    let restored =
        outcome.error == 0 && outcome.applied == super::machine::restore_request(outcome).set;
    tracing::info!(
        action = "probe_finish",
        cookie = c.cookie,
        netns = c.netns,
        local = %c.local,
        remote = %c.remote,
        pid = c.pid,
        comm = c.comm.as_deref(),
        result,
        probes_out = outcome.probes_out,
        restored,
        "keepalive probe finished: the application's options put back"
    );
    if conclusion != Conclusion::Gone && !restored {
        tracing::error!(
            cookie = c.cookie,
            error = outcome.error,
            applied = outcome.applied,
            "keepalive probe: the application's options could not all be put back"
        );
    }
}

/// `items` grouped by namespace inode.
fn by_netns<T>(items: Vec<T>, netns: impl Fn(&T) -> u32) -> FastMap<u32, Vec<T>> {
    let mut groups: FastMap<u32, Vec<T>> = FastMap::default();
    for item in items {
        groups.entry(netns(&item)).or_default().push(item);
    }
    groups
}

/// Applies `requests` inside namespace `netns` in one walk (the program switches keepalive on
/// before it sets the idle time, so a quiet socket's first probe goes out at once), returning
/// each cookie's outcome; None when the namespace cannot be found or entered, or the program
/// fails (logged).
fn apply_in(
    control: &Arc<SockoptControl>,
    namespaces: &mut Namespaces,
    netns: u32,
    requests: Vec<(u64, SockoptRequest)>,
) -> Option<FastMap<u64, SockoptRequest>> {
    let ns = namespaces.find(netns)?;
    let inside = Arc::clone(control);
    let ran = netns::in_namespace(&ns, move || inside.apply(&requests));
    match ran {
        Ok(Ok(outcomes)) => Some(outcomes.into_iter().collect()),
        Ok(Err(error)) => {
            tracing::warn!(
                netns,
                error = %crate::model::format::error_chain(&error),
                "keepalive probe: socket options"
            );
            None
        }
        Err(error) => {
            // Listed again next round: a namespace that is gone is then not found, and its
            // probes end (their sockets went with it).
            namespaces.by_inode.remove(&netns);
            tracing::warn!(
                netns,
                error = %crate::model::format::error_chain(&error),
                "keepalive probe: entering the namespace"
            );
            None
        }
    }
}

/// The namespaces by inode, listed again when one is not known yet.
#[derive(Default)]
struct Namespaces {
    by_inode: FastMap<u32, Netns>,
}

impl Namespaces {
    fn find(&mut self, inode: u32) -> Option<Netns> {
        if !self.by_inode.contains_key(&inode) {
            self.by_inode = netns::find_namespaces()
                .into_iter()
                .map(|ns| (ns.inode, ns))
                .collect();
        }
        self.by_inode.get(&inode).cloned()
    }
}
