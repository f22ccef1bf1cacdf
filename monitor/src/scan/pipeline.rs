//! The one per-socket path, shared by the scan and `/connections`: kernel entry → converted
//! [`Connection`] → owner's cgroup → verdicts. Nothing is collected: each connection is handed
//! to the caller and dropped unless the caller keeps it.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use monitor_common::{SockActivity, tcp_state};

use super::{
    confirm::{self, Confirmed, Confirmer, Outcome},
    convert::{self, SocketDefaults},
    enforce::Enforcement,
    kernel_state::{self, FastMap, KernelTruth},
    namespaces::{DefaultsByNetns, NamespaceDefaults},
    probe::ProbeBook,
    processes::ProcessCache,
    remediate::{Action, Remediator},
};
use crate::{
    model::Connection,
    bpf::SocketSource,
    verdict::{self, Policy},
};

/// What judging a socket needs; fixed for the agent's lifetime except the process cache, the
/// kernel truth and the policy (replaced on a config reload).
pub struct Pipeline {
    /// Each namespace's keepalive and retransmission sysctls, and `CONFIG_HZ`.
    pub(crate) defaults: NamespaceDefaults,
    /// Thresholds, overrides and the ignore list, for the verdicts. A pass takes the `Arc` once,
    /// so a reload never changes the rules halfway through a scan or an answer.
    policy: RwLock<Arc<Policy>>,
    /// Owners' names and cgroups from `/proc`. Shared by the scan and the HTTP handlers; a scan
    /// takes it once, a `/connections` reader once per socket.
    processes: Mutex<ProcessCache>,
    /// What the last read of the kernel's own socket state found besides the table (None before
    /// the first, or without the iterator): which namespaces were read, and when.
    truth: RwLock<Option<Arc<KernelTruth>>>,
    /// Confirms new verdicts against the kernel at the scan that raises them; locked by a scan
    /// for its pass.
    confirmer: Mutex<Confirmer>,
    /// The reasons the last scan confirmed, by cookie: `/connections` shows only those.
    confirmed: RwLock<Arc<Confirmed>>,
    /// The owner of each listener by (namespace, port), from the last scan: a connection still
    /// in a listener's accept queue belongs to the listener's owner.
    listeners: RwLock<Arc<Listeners>>,
    /// Whether verdicts are confirmed against the kernel (the agent; tests and benchmarks judge
    /// made-up sockets the kernel has never had).
    confirms: bool,
    /// The keepalive probes (`[probe]`), when enabled: results go into each connection, the
    /// scans offer candidates.
    probing: Option<Arc<ProbeBook>>,
    /// `[[enforce]]`, when configured: which policy each socket got, and the agent's own
    /// applications at each scan.
    enforcement: OnceLock<Arc<Enforcement>>,
}

impl Pipeline {
    /// A pipeline that looks owners up in `/proc`; `defaults` are the agent's own namespace's,
    /// used for every socket until [`NamespaceDefaults::refresh_if_due`] reads the others.
    #[must_use]
    pub fn new(defaults: SocketDefaults, policy: Policy) -> Self {
        Self {
            defaults: NamespaceDefaults::new(defaults),
            policy: RwLock::new(Arc::new(policy)),
            processes: Mutex::default(),
            truth: RwLock::default(),
            confirmer: Mutex::default(),
            confirmed: RwLock::default(),
            listeners: RwLock::default(),
            confirms: false,
            probing: None,
            enforcement: OnceLock::new(),
        }
    }

    /// Raises a verdict only once the socket's kernel state at that scan confirms it
    /// ([`confirm`]: an exact `sock_diag` query per new suspect, in the socket's namespace).
    #[must_use]
    pub fn confirming_verdicts(mut self) -> Self {
        self.confirms = true;
        self
    }

    /// Puts the keepalive probes' state into every connection and offers the scans' candidates
    /// to `book` ([`ProbeBook::annotate`], [`ProbeBook::observe`]).
    #[must_use]
    pub fn probing(mut self, book: Arc<ProbeBook>) -> Self {
        self.probing = Some(book);
        self
    }

    /// A pipeline that never reads `/proc` (unit tests: their pids are made up, and the host's
    /// processes with those pids are not theirs). Owners keep the name the kernel side saw.
    #[cfg(test)]
    pub(crate) fn without_proc(defaults: SocketDefaults, policy: Policy) -> Self {
        Self {
            defaults: NamespaceDefaults::new(defaults),
            policy: RwLock::new(Arc::new(policy)),
            processes: Mutex::new(ProcessCache::with_lookup(|_| {
                super::processes::ProcessInfo::default()
            })),
            truth: RwLock::default(),
            confirmer: Mutex::default(),
            confirmed: RwLock::default(),
            listeners: RwLock::default(),
            confirms: false,
            probing: None,
            enforcement: OnceLock::new(),
        }
    }

    /// A scan: every live socket of `source`, judged as of `now_ns`. Also ages the process cache
    /// (pids that own no socket any more are forgotten). Returns the cookies of the entries
    /// whose socket the kernel no longer has ([`KernelTruth::is_gone`]): they are left out, and
    /// the caller removes them from the table.
    pub fn scan(
        &self,
        source: &dyn SocketSource,
        now_ns: u64,
        f: &mut dyn FnMut(Connection),
    ) -> Vec<u64> {
        // First: the pass's context takes the enforced sockets' names it publishes.
        let mut enforce = self.enforcement.get().map(|e| e.start_pass());
        let mut processes = self.processes();
        let mut confirmer = crate::locks::lock(&self.confirmer);
        processes.start_scan();
        confirmer.start_scan();
        let mut listeners = Listeners::default();
        let gone = self.pass(&mut processes, &mut confirmer, source, now_ns, &mut |c| {
            if c.state == tcp_state::LISTEN
                && let (Some(netns), Some(pid)) = (c.netns, c.pid)
            {
                listeners.entry((netns, c.local.port())).or_insert(pid);
            }
            if let Some(pass) = &mut enforce {
                pass.observe(&c);
            }
            f(c);
        });
        processes.end_scan();
        if let Some(book) = &self.probing {
            book.end_scan();
        }
        *crate::locks::write(&self.listeners) = Arc::new(listeners);
        *crate::locks::write(&self.confirmed) = confirmer.end_scan();
        drop((processes, confirmer));
        // Outside the pass's locks: `/connections` readers do not wait for the iterator reads.
        if let Some(pass) = enforce {
            let _enforced = pass.finish();
        }
        gone
    }

    /// Runs `remediator` on this scan's confirmed `suspects` (after the pass: their verdicts
    /// are confirmed), through the confirmer's exact-query sockets and with the verdict rules
    /// as the current policy applies them.
    pub(crate) fn remediate(
        &self,
        remediator: &mut Remediator,
        suspects: &[Connection],
    ) -> Vec<Action> {
        let context = self.context();
        let judge = |c: &Connection| {
            let retries2 = self.defaults.of(&context.namespaces, c.netns).tcp_retries2;
            verdict::evaluate(c, &context.policy, retries2).0
        };
        let now_ms = || crate::clock::monotonic_now_ns() / 1_000_000;
        let mut confirmer = crate::locks::lock(&self.confirmer);
        remediator.run(suspects, confirmer.queries(), &judge, &now_ms)
    }

    /// Hands the `[[enforce]]` state to the passes (once, at start-up).
    pub fn set_enforcement(&self, enforcement: Arc<Enforcement>) {
        let _ = self.enforcement.set(enforcement);
    }

    /// The `[[enforce]]` state, when configured.
    pub fn enforcement(&self) -> Option<&Arc<Enforcement>> {
        self.enforcement.get()
    }

    /// Verdict confirmations that failed (the kernel could not be asked), since the start.
    pub(crate) fn confirm_errors(&self) -> u64 {
        crate::locks::lock(&self.confirmer).errors
    }

    /// Replaces the kernel truth the next passes overlay.
    pub(crate) fn set_truth(&self, truth: KernelTruth) {
        *crate::locks::write(&self.truth) = Some(Arc::new(truth));
    }

    /// Replaces the thresholds, overrides and ignore list from the next pass on (a config
    /// reload).
    pub(crate) fn set_policy(&self, policy: Policy) {
        *crate::locks::write(&self.policy) = Arc::new(policy);
    }

    /// The policy passes use now.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&crate::locks::read(&self.policy))
    }

    /// The last kernel truth, if any.
    pub(crate) fn truth(&self) -> Option<Arc<KernelTruth>> {
        crate::locks::read(&self.truth).clone()
    }

    /// Like [`scan`](Self::scan), for readers between scans (`/connections`). The cgroup cache
    /// is locked per socket, not for the pass: `f` may wait on a slow client, and a scan must
    /// not wait behind it.
    ///
    /// When verdicts are confirmed, suspects show the reasons the last scan confirmed, and only
    /// those.
    pub fn read(&self, source: &dyn SocketSource, now_ns: u64, f: &mut dyn FnMut(Connection)) {
        let context = self.context();
        let confirmed = Arc::clone(&crate::locks::read(&self.confirmed));
        source.for_each_socket(&mut |cookie, entry| {
            let judged = self.judge(cookie, entry, now_ns, &context, &mut self.processes());
            if let Judged::Live(mut c) = judged {
                if self.confirms {
                    let known = confirmed.get(&cookie);
                    c.suspect.retain(|r| known.is_some_and(|k| k.contains(r)));
                    if c.suspect.is_empty() {
                        c.gives_up_in = None;
                    }
                }
                f(c);
            }
        });
    }

    /// What a pass shares across its sockets, taken once at its start.
    fn context(&self) -> Context {
        Context {
            namespaces: self.defaults.current(),
            truth: self.truth(),
            policy: self.policy(),
            listeners: Arc::clone(&crate::locks::read(&self.listeners)),
            enforced: self.enforcement.get().map(|e| e.names()),
        }
    }

    fn processes(&self) -> MutexGuard<'_, ProcessCache> {
        // A panic mid-pass leaves a valid cache (at worst missing entries).
        crate::locks::lock(&self.processes)
    }

    fn pass(
        &self,
        processes: &mut ProcessCache,
        confirmer: &mut Confirmer,
        source: &dyn SocketSource,
        now_ns: u64,
        f: &mut dyn FnMut(Connection),
    ) -> Vec<u64> {
        let context = self.context();
        let mut gone = Vec::new();
        source.for_each_socket(&mut |cookie, entry| match self
            .judge(cookie, entry, now_ns, &context, processes)
        {
            Judged::Live(mut c) if self.confirms && !c.suspect.is_empty() => {
                let retries2 = self.defaults.of(&context.namespaces, c.netns).tcp_retries2;
                let judge = |c: &Connection| verdict::evaluate(c, &context.policy, retries2);
                let key = confirm::key_of(&c);
                match confirmer.confirm(&mut c, key, |c| judge(c).0) {
                    Outcome::Gone => gone.push(cookie),
                    Outcome::Judged => {
                        c.gives_up_in = if c.suspect.is_empty() {
                            None
                        } else {
                            judge(&c).1
                        };
                        self.offer_probe(&c, &context);
                        f(c);
                    }
                }
            }
            Judged::Live(c) => {
                self.offer_probe(&c, &context);
                f(c);
            }
            Judged::Gone => gone.push(cookie),
            Judged::NotLive => {}
        });
        gone
    }

    /// At a scan: `c` is a candidate for a keepalive probe, if probing is on and it qualifies.
    fn offer_probe(&self, c: &Connection, context: &Context) {
        if let Some(book) = &self.probing {
            book.observe(c, &context.policy);
        }
    }

    /// One entry, judged. CLOSE and `TIME_WAIT` entries are never live (a straggler would make
    /// counts differ from what `ss` shows for live sockets); one whose socket the kernel no
    /// longer has is gone. The kernel's own values come from the entry itself (the last read
    /// wrote them into its slot).
    fn judge(
        &self,
        cookie: u64,
        entry: &SockActivity,
        now_ns: u64,
        context: &Context,
        processes: &mut ProcessCache,
    ) -> Judged {
        if entry.state == tcp_state::CLOSE || entry.state == tcp_state::TIME_WAIT {
            return Judged::NotLive;
        }
        if context.truth.as_deref().is_some_and(|t| t.is_gone(entry)) {
            return Judged::Gone;
        }
        let netns = (entry.netns != 0).then_some(entry.netns);
        let defaults = self.defaults.of(&context.namespaces, netns);
        let mut c = convert::connection(cookie, entry, now_ns, &defaults);
        kernel_state::apply(&mut c, entry, now_ns, &defaults);
        if c.pid.is_none() && kernel_state::in_accept_queue(entry) {
            c.accept_queue = true;
            c.pid = c
                .netns
                .and_then(|netns| context.listeners.get(&(netns, c.local.port())))
                .copied();
        }
        if let Some(pid) = c.pid {
            let process = processes.info(pid);
            // The thread group leader's name: the kernel side saw whichever thread did the I/O.
            c.comm = process.name.or(c.comm);
            c.cgroup = process.cgroup;
        }
        if let Some(book) = &self.probing {
            book.annotate(&mut c, now_ns, &context.policy);
        }
        c.enforced = context
            .enforced
            .as_ref()
            .and_then(|names| names.get(&cookie).cloned());
        (c.suspect, c.gives_up_in) = verdict::evaluate(&c, &context.policy, defaults.tcp_retries2);
        Judged::Live(c)
    }
}

/// What became of one table entry in a pass.
#[expect(
    clippy::large_enum_variant,
    reason = "returned by value once per socket and consumed at once; boxing would allocate per socket"
)]
enum Judged {
    Live(Connection),
    /// CLOSE or `TIME_WAIT`: never reported.
    NotLive,
    /// The kernel no longer has the socket.
    Gone,
}

/// The owner (pid) of each listening socket by (network namespace, port).
type Listeners = FastMap<(u32, u16), u32>;

/// What one pass reads once and every socket of it shares.
struct Context {
    namespaces: DefaultsByNetns,
    truth: Option<Arc<KernelTruth>>,
    policy: Arc<Policy>,
    listeners: Arc<Listeners>,
    /// cookie → `[[enforce]]` policy name (None without `[[enforce]]`).
    enforced: Option<Arc<FastMap<u64, Arc<str>>>>,
}
