//! The probe thread: every [`TICK`], starts the probes the last scan offered (within the caps)
//! and finishes the ones answered or out of time, each namespace's batch through
//! `SockoptControl::apply` on a thread inside that namespace. A running probe's answer is looked
//! for with exact `sock_diag` queries of its socket (one request each, a few times per
//! `TCP_KEEPIDLE`), so it is finished before the kernel's next probe leaves. At stop it finishes
//! every probe still running (restores the application's options) before it exits. Each socket is
//! journalled ([`super::journal`]) before its options change, and forgotten once they are back.
//!
//! Its own thread, started with the agent's kept capabilities: entering a namespace needs
//! `CAP_SYS_ADMIN`; the map updates and the iterator reads on the loaded program need none.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use monitor_common::sockopt::{OUTCOME_DONE, SockoptRequest};

use super::{
    ProbeBook,
    journal::{Journal, JournalEntry, Written},
    machine::{Candidate, Conclusion, Polled, Running, is_restored, restore_request},
};
use crate::{
    bpf::SockoptControl,
    clock,
    netns::{self, Netns},
    periodic::Periodic,
    scan::kernel_state::FastMap,
    sock_diag::{SocketKey, SocketQueries},
};

/// How often the thread looks for work: a probe's answer is noticed within its socket's next
/// exact query (`machine::poll_every`) plus a tick.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// A namespace's exact-query socket not used for this long is closed while probes run in
/// other namespaces (reopening one when needed costs ~0.1 ms).
const UNUSED_QUERY_SOCKET: Duration = Duration::from_mins(1);

/// The running probe thread. Dropping it stops the thread, which first restores every socket
/// it is still probing, and joins it.
pub struct ProbeThread {
    _thread: Periodic,
}

impl ProbeThread {
    /// Starts probing with `control` (the loaded `iter_tcp_sockopt` program) for `book`,
    /// recording each probed socket in `journal` (written already: its directory works) before
    /// its options change.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(
        book: Arc<ProbeBook>,
        control: Arc<SockoptControl>,
        journal: Journal,
    ) -> std::io::Result<Self> {
        let mut prober = Prober {
            book,
            control,
            namespaces: Namespaces::default(),
            journal: Written::new(journal),
            queries: SocketQueries::default(),
        };
        Periodic::start_with_last_run("probe", move |stopping| {
            prober.step(stopping);
            TICK
        })
        .map(|thread| Self { _thread: thread })
    }
}

/// What the thread works with.
struct Prober {
    book: Arc<ProbeBook>,
    control: Arc<SockoptControl>,
    namespaces: Namespaces,
    journal: Written,
    /// Exact queries of running probes' sockets, one netlink socket per namespace.
    queries: SocketQueries,
}

impl Prober {
    /// One round: finish what is due (everything when `stopping`), then start what may start;
    /// the journal written if it changed.
    fn step(&mut self, stopping: bool) {
        if !stopping {
            self.look_for_answers();
        }
        let now_ns = clock::monotonic_now_ns();
        let (due, starts) = {
            let mut m = self.book.machine();
            let due = m.due(now_ns, stopping);
            let starts = if stopping {
                Vec::new()
            } else {
                m.starts(now_ns)
            };
            (due, starts)
        };
        for (netns, batch) in by_netns(due, |(r, _)| r.candidate.netns) {
            self.finish_batch(netns, &batch, now_ns);
        }
        for (netns, batch) in by_netns(starts, |(c, _)| c.netns) {
            let batch = self.record_ahead(netns, batch);
            if batch.is_empty() {
                continue;
            }
            let requests: Vec<(u64, SockoptRequest)> =
                batch.iter().map(|(c, req)| (c.cookie, *req)).collect();
            let outcomes = self.apply(netns, requests);
            let (now_ns, now) = (clock::monotonic_now_ns(), SystemTime::now());
            for (candidate, _) in batch {
                let outcome = outcomes.as_ref().and_then(|o| o.get(&candidate.cookie));
                self.start(candidate, outcome, now_ns, now);
            }
        }
        self.journal.save();
    }

    /// Queries the sockets of the running probes due for it ([`Machine::due_for_query`]) and hands
    /// what each showed to the machine. A socket gone or a query that fails is left to the
    /// finish, which reads the socket anyway.
    ///
    /// [`Machine::due_for_query`]: super::machine::Machine::due_for_query
    fn look_for_answers(&mut self) {
        let polls = {
            let mut m = self.book.machine();
            // Each namespace's netlink socket holds that namespace alive (a pod's would
            // outlive the pod): none is kept while nothing is probed, nor one unused for a
            // minute while others are.
            if m.running.is_empty() {
                self.queries = SocketQueries::default();
            } else if let Some(cutoff) = Instant::now().checked_sub(UNUSED_QUERY_SOCKET) {
                self.queries.close_unused_since(cutoff);
            }
            m.due_for_query(clock::monotonic_now_ns())
        };
        for c in polls {
            let key = SocketKey::new(c.netns, c.local, c.remote, c.cookie);
            let info = match self.queries.query(&key) {
                Ok(found) => found.and_then(|s| s.tcp_info),
                Err(error) => {
                    tracing::debug!(cookie = c.cookie, %error, "keepalive probe: exact query");
                    None
                }
            };
            if let Some(info) = info {
                let seen = Polled {
                    last_ack_recv: Duration::from_millis(info.last_ack_recv_ms.into()),
                    last_data_sent: Duration::from_millis(info.last_data_sent_ms.into()),
                };
                let now_ns = clock::monotonic_now_ns();
                self.book.machine().polled(c.cookie, seen, now_ns);
            }
        }
    }

    fn apply(
        &mut self,
        netns: u32,
        requests: Vec<(u64, SockoptRequest)>,
    ) -> Option<FastMap<u64, SockoptRequest>> {
        apply_in(&self.control, &mut self.namespaces, netns, requests)
    }

    /// Puts the application's options back on `batch`'s sockets in `netns`.
    fn finish_batch(&mut self, netns: u32, batch: &[(Running, SockoptRequest)], now_ns: u64) {
        if self.namespaces.find(netns).is_none() {
            // The namespace is gone, and its sockets with it: nothing to restore.
            let mut m = self.book.machine();
            for (running, _) in batch {
                m.finished(running.candidate.cookie, &SockoptRequest::default(), now_ns);
                self.journal.remove(running.candidate.cookie);
            }
            return;
        }
        let requests = batch
            .iter()
            .map(|(r, req)| (r.candidate.cookie, *req))
            .collect();
        let outcomes = self.apply(netns, requests);
        let now_ns = clock::monotonic_now_ns();
        for (running, _) in batch {
            let cookie = running.candidate.cookie;
            let outcome = outcomes.as_ref().and_then(|o| o.get(&cookie));
            if finish(&self.book, running, outcome, now_ns) {
                self.journal.remove(cookie);
            }
        }
    }

    /// The write-ahead: reads the options of `batch`'s sockets (a request that sets nothing)
    /// and journals them with the probe's before anything changes. Returns the candidates
    /// recorded: none when the journal cannot be written (no probe starts then), without the
    /// sockets already gone.
    fn record_ahead(
        &mut self,
        netns: u32,
        batch: Vec<(Candidate, SockoptRequest)>,
    ) -> Vec<(Candidate, SockoptRequest)> {
        let reads = batch
            .iter()
            .map(|(c, _)| (c.cookie, SockoptRequest::default()))
            .collect();
        let Some(read) = self.apply(netns, reads) else {
            return Vec::new();
        };
        let batch: Vec<_> = batch
            .into_iter()
            .filter_map(|(c, req)| {
                let now = read.get(&c.cookie).filter(|r| r.outcome == OUTCOME_DONE)?;
                self.journal.add(JournalEntry {
                    netns,
                    cookie: c.cookie,
                    local: c.local,
                    remote: c.remote,
                    original: now.before,
                    probe: req.want,
                });
                Some((c, req))
            })
            .collect();
        if self.journal.save() {
            return batch;
        }
        for (c, _) in &batch {
            self.journal.remove(c.cookie);
        }
        Vec::new()
    }

    /// Records one start; a partial one is put back at once. The journal entry follows: the
    /// options the kernel read at the start are the ones a restore puts back; an entry whose
    /// socket carries none of the probe's options is dropped.
    fn start(
        &mut self,
        candidate: Candidate,
        outcome: Option<&SockoptRequest>,
        now_ns: u64,
        now: SystemTime,
    ) {
        let Some(outcome) = outcome else {
            // Unknown whether anything was applied: the entry stays for the next start.
            return;
        };
        if self.book.machine().started(candidate, outcome, now_ns, now) {
            self.journal.original_was(candidate.cookie, outcome);
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
                "keepalive probe started: keepalive switched on with probe timers (why: nothing \
                 from the peer, no keepalive, no user timeout)"
            );
        } else if outcome.applied != 0 {
            self.journal.original_was(candidate.cookie, outcome);
            let restore = restore_request(outcome);
            let restored = self.apply(candidate.netns, vec![(candidate.cookie, restore)]);
            let settled = restored
                .as_ref()
                .and_then(|r| r.get(&candidate.cookie))
                .is_some_and(|r| r.outcome != OUTCOME_DONE || is_restored(r));
            if settled {
                self.journal.remove(candidate.cookie);
            }
            tracing::warn!(
                cookie = candidate.cookie,
                error = outcome.error,
                restored = settled,
                "keepalive probe could not start: the options it set were put back"
            );
        } else {
            self.journal.remove(candidate.cookie);
        }
    }
}

/// Records one finish and writes its audit line; true when the socket is settled (its options
/// put back, or it is gone).
fn finish(
    book: &ProbeBook,
    running: &Running,
    outcome: Option<&SockoptRequest>,
    now_ns: u64,
) -> bool {
    let c = &running.candidate;
    let Some(outcome) = outcome else {
        // The namespace could not be entered: try again next round (still running).
        return false;
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
    let restored = is_restored(outcome);
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
    conclusion == Conclusion::Gone || restored
}

/// `items` grouped by namespace inode.
pub(super) fn by_netns<T>(items: Vec<T>, netns: impl Fn(&T) -> u32) -> FastMap<u32, Vec<T>> {
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
pub(super) fn apply_in(
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
pub(super) struct Namespaces {
    by_inode: FastMap<u32, Netns>,
}

impl Namespaces {
    pub(super) fn find(&mut self, inode: u32) -> Option<Netns> {
        if !self.by_inode.contains_key(&inode) {
            self.by_inode = netns::find_namespaces()
                .into_iter()
                .map(|ns| (ns.inode, ns))
                .collect();
        }
        self.by_inode.get(&inode).cloned()
    }
}
