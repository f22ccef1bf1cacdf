//! The one per-socket path, shared by the scan and `/connections`: kernel entry → converted
//! [`Connection`] → owner's cgroup → verdicts. Nothing is collected: each connection is handed
//! to the caller and dropped unless the caller keeps it.

use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, RwLock,
    atomic::{AtomicU32, Ordering},
};

mod judge;

use monitor_common::tcp_state;

use self::judge::{Context, Judged, Listeners, observe, refilled};
use super::{
    confirm::{self, Confirmed, Confirmer, Outcome},
    convert::SocketDefaults,
    feature::{Feature, ScanPass},
    holders::{HeldPass, HeldSockets},
    kernel_state::KernelTruth,
    namespaces::NamespaceDefaults,
    processes::ProcessCache,
};
use crate::{
    bpf::{BpfError, SocketSource, task_file::TaskFileReader, walk::SlotWalker},
    kubernetes::PodResolver,
    model::{Connection, Reason},
    periodic::Waker,
    sock_diag::SocketQueries,
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
    /// The last pass over the held sockets (None before the first, or without the program):
    /// every held socket's own values and its holders.
    held: RwLock<Option<Arc<HeldSockets>>>,
    /// Starts a read of the kernel's socket state ahead of its pace (set once its thread runs).
    kernel_read: OnceLock<Waker>,
    /// The reads of the kernel's socket state take at most 1/this of a core
    /// ([`super::KERNEL_READ_SHARE`], less while slot walks succeed).
    kernel_read_share: AtomicU32,
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
    /// The features registered ([`with_feature`](Self::with_feature)), in registration order:
    /// each pass goes through every one.
    features: Vec<Arc<dyn Feature>>,
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
            held: RwLock::default(),
            kernel_read: OnceLock::new(),
            kernel_read_share: AtomicU32::new(super::KERNEL_READ_SHARE),
            confirmer: Mutex::default(),
            confirmed: RwLock::default(),
            listeners: RwLock::default(),
            confirms: false,
            features: Vec::new(),
        }
    }

    /// Raises a verdict only once the socket's kernel state at that scan confirms it
    /// ([`confirm`]: an exact `sock_diag` query per new suspect, in the socket's namespace).
    #[must_use]
    pub fn confirming_verdicts(mut self) -> Self {
        self.confirms = true;
        self
    }

    /// Names the Kubernetes pod of each connection's owner with `pods` (asked once per new
    /// owner pid; see [`PodResolver`]).
    #[must_use]
    pub fn with_pods(self, pods: PodResolver) -> Self {
        let processes = std::mem::take(&mut *self.processes()).with_pods(pods);
        *self.processes() = processes;
        self
    }

    /// Adds `feature` to every pass from now on (after the features added before it): the one
    /// way a feature joins the pipeline.
    #[must_use]
    pub fn with_feature(mut self, feature: Arc<dyn Feature>) -> Self {
        self.features.push(feature);
        self
    }

    /// The features registered, in order.
    pub fn features(&self) -> &[Arc<dyn Feature>] {
        &self.features
    }

    /// A pipeline that never reads `/proc` (unit tests: their pids are made up, and the host's
    /// processes with those pids are not theirs). Owners keep the name the kernel side saw.
    #[cfg(test)]
    pub(crate) fn without_proc(defaults: SocketDefaults, policy: Policy) -> Self {
        Self {
            processes: Mutex::new(ProcessCache::with_lookup(|_| {
                super::processes::ProcessInfo::default()
            })),
            ..Self::new(defaults, policy)
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
        f: &mut dyn FnMut(&Connection),
    ) -> Vec<u64> {
        // First: the pass's context takes what the features publish as their scans start.
        let mut scans: Vec<Box<dyn ScanPass + '_>> = self
            .features
            .iter()
            .filter_map(|f| f.start_scan())
            .collect();
        let mut processes = self.processes();
        let mut confirmer = crate::locks::lock(&self.confirmer);
        processes.start_scan();
        confirmer.start_scan();
        let mut listeners = Listeners::default();
        let locked = (&mut *processes, &mut *confirmer);
        let gone = self.pass(locked, &mut scans, source, now_ns, &mut |c| {
            if c.state == tcp_state::LISTEN
                && let (Some(netns), Some(pid)) = (c.netns, c.pid)
            {
                listeners.entry((netns, c.local.port())).or_insert(pid);
            }
            f(c);
        });
        processes.end_scan();
        *crate::locks::write(&self.listeners) = Arc::new(listeners);
        *crate::locks::write(&self.confirmed) = confirmer.end_scan();
        drop((processes, confirmer));
        // Outside the pass's locks: `/connections` readers do not wait for the features.
        for scan in scans {
            scan.finish();
        }
        gone
    }

    /// Runs `f` with the confirmer's exact-query sockets (one per namespace, kept between
    /// scans) and the verdict rules as the current policy applies them (a connection → its
    /// reasons): for acting on a scan's confirmed suspects right after the scan. A scan waits
    /// for `f`.
    pub fn with_kernel_queries<R>(
        &self,
        f: impl FnOnce(&mut SocketQueries, &dyn Fn(&Connection) -> Vec<Reason>) -> R,
    ) -> R {
        let (namespaces, policy) = (self.defaults.current(), self.policy());
        let judge = |c: &Connection| {
            let retries2 = self.defaults.of(&namespaces, c.netns).tcp_retries2;
            verdict::evaluate(c, &policy, retries2).0
        };
        let mut confirmer = crate::locks::lock(&self.confirmer);
        f(confirmer.queries(), &judge)
    }

    /// Verdict confirmations that failed (the kernel could not be asked), since the start.
    pub(crate) fn confirm_errors(&self) -> u64 {
        crate::locks::lock(&self.confirmer).errors
    }

    /// Replaces the kernel truth the next passes overlay.
    pub(crate) fn set_truth(&self, truth: KernelTruth) {
        *crate::locks::write(&self.truth) = Some(Arc::new(truth));
    }

    /// Refills the held sockets the next passes overlay with one pass of `reader`, each in its
    /// slot of `table` ([`HeldSockets::refill`]), in place: a copy is made only while a reader between scans
    /// (`/connections`) still holds the last pass. Readers starting meanwhile wait for it.
    ///
    /// # Errors
    /// As [`HeldSockets::refill`].
    pub(crate) fn refill_held(
        &self,
        reader: &TaskFileReader,
        table: &dyn SocketSource,
    ) -> Result<HeldPass, BpfError> {
        let mut current = crate::locks::write(&self.held);
        let held = current.get_or_insert_with(Arc::default);
        Arc::make_mut(held).refill(reader, table)
    }

    /// Refreshes the values of the held sockets the next passes overlay with one slot walk
    /// ([`HeldSockets::refresh`]), in place, as [`refill_held`](Self::refill_held) does.
    ///
    /// # Errors
    /// As [`HeldSockets::refresh`].
    pub(crate) fn refresh_held(&self, walker: &SlotWalker) -> Result<HeldPass, BpfError> {
        let mut current = crate::locks::write(&self.held);
        let held = current.get_or_insert_with(Arc::default);
        Arc::make_mut(held).refresh(walker)
    }

    /// Makes `waker` start the reads of the kernel's socket state ahead of their pace
    /// ([`read_kernel_state_now`](Self::read_kernel_state_now)); the first one set stays.
    pub(crate) fn set_kernel_read_waker(&self, waker: Waker) {
        let _ = self.kernel_read.set(waker);
    }

    /// Paces the reads of the kernel's socket state to at most 1/`share` of a core from the next
    /// read on.
    pub(crate) fn set_kernel_read_share(&self, share: u32) {
        self.kernel_read_share.store(share, Ordering::Relaxed);
    }

    /// See [`set_kernel_read_share`](Self::set_kernel_read_share).
    pub(crate) fn kernel_read_share(&self) -> u32 {
        self.kernel_read_share.load(Ordering::Relaxed)
    }

    /// Starts a read of every namespace's socket state now, if its thread runs: the read adds
    /// the sockets the table missed while it has room.
    pub(crate) fn read_kernel_state_now(&self) {
        if let Some(waker) = self.kernel_read.get() {
            waker.wake();
        }
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

    /// The network namespaces whose sysctls the last read found (the host's namespaces, when
    /// the scanner reads them).
    pub(crate) fn namespaces_read(&self) -> usize {
        self.defaults.current().len()
    }

    /// The last kernel truth, if any.
    pub(crate) fn truth(&self) -> Option<Arc<KernelTruth>> {
        crate::locks::read(&self.truth).clone()
    }

    /// Like [`scan`](Self::scan), for readers between scans (`/connections`). The cgroup cache
    /// is locked per socket, not for the pass: `f` may wait on a slow client, and a scan must
    /// not wait behind it; for the same reason a reader never asks the container runtime (a
    /// process new since the last scan shows without its pod until the next).
    ///
    /// When verdicts are confirmed, suspects show the reasons the last scan confirmed, and only
    /// those.
    pub fn read(&self, source: &dyn SocketSource, now_ns: u64, f: &mut dyn FnMut(&Connection)) {
        let context = self.context();
        let confirmed = Arc::clone(&crate::locks::read(&self.confirmed));
        let mut c = refilled();
        source.for_each_socket(&mut |slot, cookie, entry| {
            let socket = (slot, cookie, entry);
            let judged = self.processes().without_asking_runtime(|processes| {
                self.judge(socket, now_ns, &context, processes, &mut c)
            });
            if judged == Judged::Live {
                if self.confirms {
                    let known = confirmed.get(&cookie);
                    c.suspect.retain(|r| known.is_some_and(|k| k.contains(r)));
                    if c.suspect.is_empty() {
                        c.gives_up_in = None;
                    }
                }
                f(&c);
            }
        });
    }

    /// What a pass shares across its sockets, taken once at its start.
    fn context(&self) -> Context<'_> {
        Context {
            namespaces: self.defaults.current(),
            truth: self.truth(),
            held: crate::locks::read(&self.held).clone(),
            policy: self.policy(),
            listeners: Arc::clone(&crate::locks::read(&self.listeners)),
            annotators: self.features.iter().filter_map(|f| f.annotator()).collect(),
        }
    }

    fn processes(&self) -> MutexGuard<'_, ProcessCache> {
        // A panic mid-pass leaves a valid cache (at worst missing entries).
        crate::locks::lock(&self.processes)
    }

    fn pass(
        &self,
        (processes, confirmer): (&mut ProcessCache, &mut Confirmer),
        scans: &mut [Box<dyn ScanPass + '_>],
        source: &dyn SocketSource,
        now_ns: u64,
        f: &mut dyn FnMut(&Connection),
    ) -> Vec<u64> {
        let context = self.context();
        let mut gone = Vec::new();
        // One connection, refilled for each socket: a pass moves no connection around.
        let mut c = refilled();
        source.for_each_socket(&mut |slot, cookie, entry| match self.judge(
            (slot, cookie, entry),
            now_ns,
            &context,
            processes,
            &mut c,
        ) {
            Judged::Live if self.confirms && !c.suspect.is_empty() => {
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
                        observe(scans, &c, &context.policy);
                        f(&c);
                    }
                }
            }
            Judged::Live => {
                observe(scans, &c, &context.policy);
                f(&c);
            }
            Judged::Gone => gone.push(cookie),
            Judged::NotLive => {}
        });
        gone
    }
}
