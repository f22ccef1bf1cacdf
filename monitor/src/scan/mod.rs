//! The scan: the kernel's per-socket table and counters in, one [`Snapshot`] out — the hand-off
//! between I/O (maps, `sock_diag`) and everything that reports (alerting, metrics, HTTP).
//!
//! A scan streams the table through one per-socket pipeline ([`pipeline`]: convert, attribute,
//! judge, with every age computed against one clock reading) into a [`Snapshot`] that keeps
//! aggregates and suspects only ([`summary`]): its size follows the number of label sets and
//! suspects, not the number of sockets. [`Scanner::scan`] is the one place a snapshot is built;
//! tests build snapshots from connection lists through the same code
//! ([`Snapshot::from_connections`]).
//!
//! A scan reads and judges; it never acts on a socket. Features that change sockets (`act`)
//! join the pipeline through [`Feature`], and remediation runs on the snapshot after the scan.

pub(crate) mod confirm;
pub mod conntrack;
pub mod convert;
mod feature;
pub mod forecast;
pub(crate) mod held_state;
pub mod holders;
pub(crate) mod kernel_defaults;
pub mod kernel_state;
pub(crate) mod namespaces;
mod pipeline;
pub(crate) mod processes;
pub mod summary;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use self::{
    feature::{Annotator, Feature, ScanPass},
    pipeline::Pipeline,
    summary::Summary,
};
use crate::{
    bpf::{
        HookStatus, KernelCounters, KernelStateReader, KernelStatus, SocketSource,
        task_file::TaskFileReader, walk::SlotWalker,
    },
    clock,
    model::{Connection, Grouping, RemediationAction, ServicePorts},
    periodic::Periodic,
    verdict::Policy,
};

/// Reads of the kernel's socket state take at most 1/this of a core (0.25%): with verdicts
/// confirmed at scan time by an exact query, the reads refresh values and find stale entries;
/// at 100k connections they come every minute or two.
pub const KERNEL_READ_SHARE: u32 = 400;

/// [`KERNEL_READ_SHARE`] while slot walks succeed (0.1% of a core): the walk then brings every
/// tracked socket's values (the receive queue too), and the reads are left with what the
/// table has no entry for (sockets it missed, `TIME_WAIT` and orphaned `FIN_WAIT2` counts), the
/// entries whose close was never seen, and the addresses of sockets older than the agent. A
/// descriptor pass that finds sockets the table missed still starts a read at once. At 100k
/// connections the reads come every three to five minutes.
pub const KERNEL_READ_SHARE_WALKING: u32 = 1000;

/// A set of socket cookies (the kernel's `sk_cookie`), hashed with foldhash: a scan looks every
/// table entry up in the cookies it watches, and the alert tracker builds the set from every
/// suspect at each scan, hundreds of thousands on a host of idle pools.
pub type Cookies = std::collections::HashSet<u64, foldhash::fast::RandomState>;

/// One scan's view of the host: aggregates and suspects, no per-socket data for healthy sockets
/// (`/connections` reads the live table instead).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Everything `/metrics` reports about the sockets, precomputed.
    pub summary: Summary,
    /// The connections with at least one reason in `suspect`, in table order.
    pub suspects: Vec<Connection>,
    /// Where something listens, to tell service ports from ephemeral ones.
    pub service_ports: ServicePorts,
    /// Of the cookies the scan was asked to watch (the alert tracker's previous suspects), those
    /// still in the table: how a cleared alert tells "socket closed" from "recovered" without
    /// the snapshot keeping every cookie.
    pub watched_open: Cookies,
    /// The kernel programs' counters; after a failed read, the last values read (never zeros:
    /// Prometheus would take them for a counter reset). See `failures`.
    pub counters: KernelCounters,
    /// Live entries in the kernel table (CLOSE and `TIME_WAIT` stragglers excluded).
    pub tracked_sockets: usize,
    /// Slots in the kernel table (`--table-capacity`).
    pub table_capacity: u32,
    /// Every hook, attached or not.
    pub hooks: Vec<HookStatus>,
    /// How long the scan took (table pass and counter read; the agent's scan loop adds the
    /// remediation that follows it).
    pub scan_duration: Duration,
    /// How owners are grouped in bounded-cardinality metrics and alerts.
    pub grouping: Grouping,
    /// The stages of this scan that failed (values kept from an earlier scan instead).
    pub failures: Vec<ScanFailure>,
    /// Table entries this scan removed because the kernel no longer has their socket (their
    /// close was never seen: a lost event, or a socket that predates the agent).
    pub stale_removed: usize,
    /// What `[[remediate]]` policies did right after this scan (each socket's result reported
    /// once); filled by the agent's scan loop, empty from [`Scanner::scan`].
    pub remediations: Vec<RemediationAction>,
    /// Time to descriptor exhaustion of the processes holding the most suspects
    /// ([`forecast`]); filled by the agent's scan loop, empty from [`Scanner::scan`].
    pub forecasts: Vec<forecast::ProcessForecast>,
    /// `fd_exhaustion_horizon`: a forecast within it is an `TcpLivenessFdExhaustionPredicted` alert.
    pub fd_exhaustion_horizon: Duration,
    /// The thresholds, overrides and ignore list the scan judged with: what the suspects' `why`
    /// quotes ([`crate::verdict::explain`]).
    pub policy: Arc<Policy>,
}

/// A part of a scan that failed; its values in the snapshot are the last good ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScanStage {
    /// Reading the kernel programs' counter maps.
    Counters,
    /// Asking the kernel about a new suspect (the verdict then stands unconfirmed).
    Confirm,
    /// The scan as a whole (it panicked or its thread could not run): nothing was published.
    Scan,
}

impl ScanStage {
    /// Every stage, so the error counter exists at 0 for each from the start.
    pub const ALL: [ScanStage; 3] = [ScanStage::Counters, ScanStage::Confirm, ScanStage::Scan];

    /// The `stage` label of `tcp_liveness_scan_errors_total`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ScanStage::Counters => "counters",
            ScanStage::Confirm => "confirm",
            ScanStage::Scan => "scan",
        }
    }
}

/// One failed stage and why, as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanFailure {
    pub stage: ScanStage,
    pub error: String,
}

impl Snapshot {
    /// The snapshot a scan of exactly these connections would publish (counters, hooks and
    /// capacity left empty): tests and benchmarks build snapshots through the scan's own code.
    /// Every cookie counts as watched.
    pub fn from_connections(
        connections: impl IntoIterator<Item = Connection>,
        grouping: Grouping,
    ) -> Self {
        let connections: Vec<Connection> = connections.into_iter().collect();
        let watched = connections.iter().map(|c| c.cookie).collect();
        let mut builder = summary::SnapshotBuilder::new(grouping, watched, Arc::default());
        for c in &connections {
            builder.add(c);
        }
        builder.finish()
    }
}

/// Builds snapshots: the table pass, the counters and hook status, and the timing, together.
/// Fixed for the agent's lifetime except the last good counters.
pub struct Scanner {
    table: Arc<dyn SocketSource>,
    kernel: Arc<dyn KernelStatus>,
    /// Shared with `/connections`, so both judge a socket the same way.
    pipeline: Arc<Pipeline>,
    grouping: Grouping,
    /// The last counters read successfully, published again when a read fails.
    last_counters: Mutex<KernelCounters>,
    /// Read each network namespace's sysctls (the agent; tests and benchmarks judge every
    /// socket by the defaults they were given).
    reads_namespaces: bool,
    /// The `iter/task_file` program, and when its next pass is due (None: the kernel refused
    /// it, or tests and benchmarks without it).
    held: Option<(TaskFileReader, Mutex<holders::HeldPacer>)>,
    /// The slot walk, and when the next is due (None: the kernel cannot run it, or tests and
    /// benchmarks without it).
    walk: Option<(SlotWalker, Mutex<holders::HeldPacer>)>,
    /// Live table entries at the last scan (whether the table has room).
    tracked: std::sync::atomic::AtomicUsize,
}

impl Scanner {
    pub fn new(
        table: Arc<dyn SocketSource>,
        kernel: Arc<dyn KernelStatus>,
        pipeline: Arc<Pipeline>,
        grouping: Grouping,
    ) -> Self {
        Self {
            table,
            kernel,
            pipeline,
            grouping,
            last_counters: Mutex::default(),
            reads_namespaces: false,
            held: None,
            walk: None,
            tracked: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Reads every held socket's own state and holders with `reader` at each scan that is due
    /// ([`holders::HeldPacer`]: every scan unless that would take more than 1% of a core, and
    /// at least every [`holders::HELD_READ_MAX_AGE`]), before judging the table. Scans come
    /// every `scan_interval`.
    #[must_use]
    pub fn reading_held_sockets(mut self, reader: TaskFileReader, scan_interval: Duration) -> Self {
        let pacer = holders::HeldPacer::with_scan_interval(scan_interval);
        self.held = Some((reader, Mutex::new(pacer)));
        self
    }

    /// Refreshes every tracked socket's values with `walker` at each scan that is due
    /// ([`holders::HeldPacer`] with [`holders::WALK_SHARE`], at least every
    /// [`holders::HELD_READ_MAX_AGE`]); the descriptor pass, which then brings only the holders,
    /// comes at most every [`holders::HOLDERS_READ_SHARE`] and at least every
    /// [`holders::HOLDERS_READ_MAX_AGE`] while walks succeed (after a failed one, as without
    /// the walk, until one succeeds again). Scans come every `scan_interval`. Call it after
    /// [`reading_held_sockets`](Self::reading_held_sockets).
    #[must_use]
    pub fn walking_slots(mut self, walker: SlotWalker, scan_interval: Duration) -> Self {
        let pacer = holders::HeldPacer::with_scan_interval(scan_interval)
            .paced(holders::WALK_SHARE, holders::HELD_READ_MAX_AGE);
        self.walk = Some((walker, Mutex::new(pacer)));
        self.pace_descriptor_passes(true);
        self
    }

    /// Paces the descriptor passes for holders alone while the walk brings the values
    /// (`walking`), else for the values too; and the reads of the kernel's socket state
    /// ([`KERNEL_READ_SHARE_WALKING`] or [`KERNEL_READ_SHARE`]).
    fn pace_descriptor_passes(&self, walking: bool) {
        self.pipeline.set_kernel_read_share(if walking {
            KERNEL_READ_SHARE_WALKING
        } else {
            KERNEL_READ_SHARE
        });
        if let Some((_, pacer)) = &self.held {
            let (share, max_age) = if walking {
                (holders::HOLDERS_READ_SHARE, holders::HOLDERS_READ_MAX_AGE)
            } else {
                (holders::HELD_READ_SHARE, holders::HELD_READ_MAX_AGE)
            };
            crate::locks::lock(pacer).pace(share, max_age);
        }
    }

    /// The slot walk, when one is due. A failed walk keeps the values there were, and the
    /// descriptor passes bring them as often as without the walk until a walk succeeds (the
    /// first failure is logged as a warning, the others at debug level).
    fn walk_slots(&self) {
        let Some((walker, pacer)) = &self.walk else {
            return;
        };
        let mut pacer = crate::locks::lock(pacer);
        let Some((_, cpu, refreshed)) = pacer.run_if_due(|| self.pipeline.refresh_held(walker))
        else {
            return;
        };
        let failed_before = pacer.failures > 0;
        match refreshed {
            Ok(pass) => {
                pacer.failures = 0;
                tracing::debug!(
                    walk_ms = pass.took.as_secs_f64() * 1e3,
                    cpu_ms = cpu.as_secs_f64() * 1e3,
                    sockets = pass.sockets,
                    "tracked sockets' values refreshed by the slot walk"
                );
            }
            Err(error) => {
                pacer.failures += 1;
                let error = crate::model::format::error_chain(&error);
                if pacer.failures == 1 {
                    tracing::warn!(%error, "slot walk failed: descriptor passes bring the values");
                } else {
                    tracing::debug!(%error, "slot walk failed again");
                }
            }
        }
        let failing = pacer.failures > 0;
        drop(pacer);
        if failing != failed_before {
            self.pace_descriptor_passes(!failing);
        }
    }

    /// The pass over the held sockets, when one is due; a failed pass keeps the last one (the
    /// debug log says why).
    fn read_held_sockets(&self) {
        let Some((reader, pacer)) = &self.held else {
            return;
        };
        let mut pacer = crate::locks::lock(pacer);
        let Some((began, cpu, read)) =
            pacer.run_if_due(|| self.pipeline.refill_held(reader, self.table.as_ref()))
        else {
            return;
        };
        match read {
            Ok(pass) => {
                let room = self.kernel.table_capacity() as usize
                    > self.tracked.load(std::sync::atomic::Ordering::Relaxed);
                if pass.missed > 0 && room && pacer.ask_for_read(began) {
                    // Sockets the table missed while it was full: the read adds them now
                    // rather than at its own pace (minutes on a large host).
                    self.pipeline.read_kernel_state_now();
                }
                tracing::debug!(
                    read_ms = pass.took.as_secs_f64() * 1e3,
                    cpu_ms = cpu.as_secs_f64() * 1e3,
                    sockets = pass.sockets,
                    untracked = pass.untracked,
                    missed = pass.missed,
                    "held sockets read"
                );
            }
            Err(error) => tracing::debug!(
                error = crate::model::format::error_chain(&error),
                "held sockets (their last values and holders stay)"
            ),
        }
    }

    /// Judges each socket by its own network namespace's sysctls (`tcp_keepalive_*`,
    /// `tcp_retries2`), read from a thread inside each namespace as namespaces appear and every
    /// minute ([`namespaces`]). Needs `CAP_SYS_ADMIN` to enter other namespaces; one that cannot
    /// be entered keeps the agent's own defaults.
    #[must_use]
    pub fn reading_namespace_sysctls(mut self) -> Self {
        self.reads_namespaces = true;
        self
    }

    /// The per-socket pipeline this scanner judges with (for `/connections`).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// One complete scan as of now. `watched`: cookies whose presence the snapshot reports
    /// ([`Snapshot::watched_open`]). A failed counter read is recorded in
    /// [`Snapshot::failures`]; the rest of the snapshot is still fresh.
    pub fn scan(&self, watched: Cookies) -> Snapshot {
        let started = Instant::now();
        if self.reads_namespaces {
            self.pipeline.defaults.refresh_if_due();
        }
        self.read_held_sockets();
        // After the descriptor pass, whose values of the held sockets it brings up to date and
        // to which it adds the sockets no process holds.
        self.walk_slots();
        let confirm_errors = self.pipeline.confirm_errors();
        let mut snapshot = self.scan_table(watched, clock::monotonic_now_ns());
        let failed = self.pipeline.confirm_errors() - confirm_errors;
        if failed > 0 {
            snapshot.failures.push(ScanFailure {
                stage: ScanStage::Confirm,
                error: format!(
                    "{failed} new verdicts could not be confirmed against the kernel's socket \
                     state (they stand unconfirmed; the debug log says why)"
                ),
            });
        }
        let read = self.kernel.counters();
        let mut last = crate::locks::lock(&self.last_counters);
        match read {
            Ok(counters) => *last = counters,
            Err(error) => snapshot.failures.push(ScanFailure {
                stage: ScanStage::Counters,
                error: error.to_string(),
            }),
        }
        snapshot.counters = last.clone();
        snapshot.hooks = self.kernel.hooks();
        snapshot.table_capacity = self.kernel.table_capacity();
        if let Some((_, pacer)) = &self.held {
            snapshot.summary.held_reads = Some(crate::locks::lock(pacer).reads);
        }
        if let Some((_, pacer)) = &self.walk {
            snapshot.summary.slot_walks = Some(crate::locks::lock(pacer).reads);
        }
        self.tracked.store(
            snapshot.tracked_sockets,
            std::sync::atomic::Ordering::Relaxed,
        );
        snapshot.scan_duration = started.elapsed();
        snapshot
    }

    /// The table pass alone, as of `now_ns` (benchmarks time it on its own).
    pub fn scan_table(&self, watched: Cookies, now_ns: u64) -> Snapshot {
        // Taken as the pass takes its own: a reload in between at worst quotes the new
        // thresholds for one scan.
        let policy = self.pipeline.policy();
        let mut builder =
            summary::SnapshotBuilder::new(self.grouping, watched, Arc::clone(&policy));
        let gone = self
            .pipeline
            .scan(self.table.as_ref(), now_ns, &mut |c| builder.add(c));
        if let Some(truth) = self.pipeline.truth() {
            let reads = summary::KernelReads {
                total: truth.reads,
                seconds: truth.read_time.as_secs_f64(),
                untracked: truth.untracked,
            };
            builder.add_kernel_read(truth.time_wait, truth.orphan_fin_wait2, reads);
        }
        let mut snapshot = builder.finish();
        for feature in self.pipeline.features() {
            feature.summarize(&mut snapshot.summary);
        }
        self.kernel.forget(&gone);
        snapshot.stale_removed = gone.len();
        snapshot
    }
}

/// The thread that reads the kernel's own socket state ([`kernel_state::read_truth`]: the kernel
/// writes each tracked socket's values into its slot) and hands what each read found besides the
/// table to the pipeline, apart from the scans so a scan never waits for it. Reads are paced
/// to at most 1/[`KERNEL_READ_SHARE`] of a core (1/[`KERNEL_READ_SHARE_WALKING`] while slot
/// walks succeed; CPU time, [`clock::thread_cpu_time`]) and never more often than
/// `min_interval` (the
/// scan interval): every scan on a host with a few thousand sockets, every few minutes at 100k
/// connections. Each read refreshes the values the kernel keeps ([`kernel_state::apply`]), tells
/// which entries are gone, and counts `TIME_WAIT`, orphaned `FIN_WAIT2` and untracked sockets.
/// Dropping it stops the thread (at once, even mid-wait) and joins it.
pub struct KernelStateThread {
    _thread: Periodic,
}

impl KernelStateThread {
    /// Starts refreshing `table` with `reader` (the table refresh program), handing what the
    /// reads find besides the table to `pipeline`, and adding the sockets the table missed
    /// through `kernel` while it has room ([`kernel_state::track_missing`]).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(
        pipeline: Arc<Pipeline>,
        kernel: Arc<dyn KernelStatus>,
        reader: KernelStateReader,
        min_interval: Duration,
    ) -> std::io::Result<Self> {
        let (mut reads, mut read_time) = (0, Duration::ZERO);
        let ahead = Arc::clone(&pipeline);
        let thread = Periodic::start("kernel-state", move || {
            let started = Instant::now();
            let (mut truth, errors) = kernel_state::read_truth(&reader);
            let read = started.elapsed();
            for error in &errors {
                tracing::debug!(
                    error = crate::model::format::error_chain(error),
                    "socket state of a namespace"
                );
            }
            // Measured from here on this thread; the namespaces' reads measured themselves.
            let cpu_started = clock::thread_cpu_time();
            let hz = pipeline.defaults.hz();
            let added = kernel_state::track_missing(&mut truth, kernel.as_ref(), hz);
            tracing::debug!(
                read_ms = read.as_secs_f64() * 1e3,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                namespaces = truth.namespaces.len(),
                added,
                untracked = truth.untracked,
                "kernel socket state read"
            );
            let elapsed = started.elapsed();
            reads += 1;
            read_time += elapsed;
            (truth.reads, truth.read_time) = (reads, read_time);
            // Paced by CPU time, not wall time: a read that waited for a core on a busy host
            // used no more of the budget than on an idle one, and must not come later for it.
            let cpu = truth.cpu_time + clock::thread_cpu_time().saturating_sub(cpu_started);
            let share = pipeline.kernel_read_share();
            pipeline.set_truth(truth);
            (cpu * share).max(min_interval)
        })?;
        ahead.set_kernel_read_waker(thread.waker());
        Ok(Self { _thread: thread })
    }
}

#[cfg(test)]
mod tests;
