//! Prometheus metrics, built from the latest [`Snapshot`] at scrape time.
//!
//! Only aggregates: per-connection labels (addresses, pids) would make the series count grow with
//! the connection count. Per-connection detail is in `/connections`.

#[cfg(test)]
mod catalogue_tests;
mod errno;
mod forecasts;
mod proto;
mod reload;
#[cfg(test)]
mod tests;
pub mod verdicts;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, SystemTime},
};

use monitor_common::tcp_state;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};

pub(crate) use self::proto::FamilyExt;
use self::proto::{counter, float_counter, gauge, histogram_metric, idle_histogram};
pub use self::{errno::errno_name, proto::histogram, reload::ReloadMetrics};
use super::{Published, SnapshotStore};
pub use crate::scan::summary::IDLE_BUCKETS;
use crate::{
    model::{
        labels::state_label,
        metric_families::{
            BUILD_INFO, CAPACITY, CONNECTIONS, HELD_READ_SECONDS, HELD_READS, HOOK_ATTACHED, IDLE,
            INSERT_FAILURES, KERNEL_READ_SECONDS, KERNEL_READS, LAST_SCAN_SUCCESS,
            RECURSION_MISSES, RESETS, RETRANSMITS, SCAN_DURATION, SCAN_ERRORS, SCAN_INTERVAL,
            SLOT_WALK_SECONDS, SLOT_WALKS, SNAPSHOT, SOCKET_ERRORS, STALE_ENTRIES_REMOVED, TRACKED,
            TRANSITIONS, UNTRACKED,
        },
    },
    scan::{ScanStage, Snapshot, summary::IdleHistogram},
};

/// Upper bounds of `tcp_liveness_scan_duration_seconds`: a scan is ms for small tables and can
/// reach seconds for a full 262k-entry table.
const SCAN_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric derived from one published scan (pure; the collector calls it on each scrape).
/// Reads the snapshot's precomputed summary: the cost follows the number of series, not of
/// sockets.
#[must_use]
pub fn snapshot_families(published: &Published, version: &str) -> Vec<MetricFamily> {
    let snapshot = &published.snapshot;
    let per_state = &snapshot.summary.states;
    // Every reported state, even at 0: a series that vanishes breaks rate() and alerts.
    let count = |s: &u8| per_state.get(s).map_or(0, |summary| summary.count);
    // TIME_WAIT sockets have no table entry: counted from the kernel's own state when read.
    let time_wait = snapshot.summary.time_wait.map(|n| {
        let name = state_label(tcp_state::TIME_WAIT);
        gauge(&[("state", &name)], n as f64)
    });
    let connections = tcp_state::REPORTED
        .iter()
        .map(|s| gauge(&[("state", &state_label(*s))], count(s) as f64))
        .chain(time_wait)
        .collect();
    let no_sockets = IdleHistogram::default();
    let idle = tcp_state::REPORTED
        .iter()
        .filter(|&&s| s != tcp_state::LISTEN)
        .map(|s| {
            let data = per_state
                .get(s)
                .map_or(&no_sockets, |summary| &summary.idle);
            histogram_metric(&[("state", &state_label(*s))], idle_histogram(data))
        })
        .collect();

    // Maps, not vectors: two sources can share a label set (a hook listed twice, states 3 and 12
    // both named syn_recv), and Prometheus rejects duplicate series in one scrape.
    let mut hooks = BTreeMap::new();
    for hook in &snapshot.hooks {
        *hooks.entry(hook.hook).or_insert(false) |= hook.attached;
    }
    let mut transitions = BTreeMap::new();
    for &(from, to, n) in &snapshot.counters.transitions {
        if let (Some(from), Some(to)) = (tcp_state::name(from), tcp_state::name(to)) {
            *transitions.entry((from, to)).or_insert(0) += n;
        }
    }
    // The errors worth alerting on exist from the first scrape at 0, so that rate() and
    // increase() count their first occurrence.
    let mut errors: BTreeMap<_, u64> = [
        libc::ETIMEDOUT,
        libc::ECONNRESET,
        libc::ECONNREFUSED,
        libc::EHOSTUNREACH,
        libc::EPIPE,
    ]
    .into_iter()
    .map(|errno| (errno_name(errno.cast_unsigned()), 0))
    .collect();
    // errno 0 is no error (a soft or cleared error was reported): programs older than this
    // agent counted it.
    for &(errno, n) in snapshot
        .counters
        .socket_errors
        .iter()
        .filter(|(e, _)| *e != 0)
    {
        *errors.entry(errno_name(errno)).or_insert(0) += n;
    }

    let c = &snapshot.counters;
    vec![
        CONNECTIONS.family(connections),
        IDLE.family(idle),
        INSERT_FAILURES.family(vec![counter(&[], c.table_insert_failures)]),
        HOOK_ATTACHED.family(
            hooks
                .into_iter()
                .map(|(h, up)| gauge(&[("hook", h)], f64::from(u8::from(up))))
                .collect(),
        ),
        RECURSION_MISSES.family(
            c.recursion_misses
                .iter()
                .map(|&(hook, n)| counter(&[("hook", hook)], n))
                .collect(),
        ),
        TRANSITIONS.family(
            transitions
                .into_iter()
                .map(|((f, t), n)| counter(&[("from", f), ("to", t)], n))
                .collect(),
        ),
        RETRANSMITS.family(vec![counter(&[], c.retransmits)]),
        RESETS.family(vec![
            counter(&[("direction", "sent")], c.resets_sent),
            counter(&[("direction", "received")], c.resets_received),
        ]),
        SOCKET_ERRORS.family(
            errors
                .into_iter()
                .map(|(e, n)| counter(&[("error", &e)], n))
                .collect(),
        ),
        BUILD_INFO.family(vec![gauge(&[("version", version)], 1.0)]),
    ]
    .into_iter()
    .chain(table_families(snapshot))
    .chain(verdicts::families(published))
    .chain(forecasts::families(snapshot))
    .collect()
}

/// The socket table's size and coverage, and the kernel reads that check it.
fn table_families(snapshot: &Snapshot) -> [MetricFamily; 9] {
    // Without kernel reads (the iterator refused), their series are absent rather than 0: 0
    // untracked would claim a check that was never made.
    let (reads, held) = (snapshot.summary.kernel_reads, snapshot.summary.held_reads);
    let walks = snapshot.summary.slot_walks;
    let one = |metric: Option<prometheus::proto::Metric>| metric.into_iter().collect();
    [
        TRACKED.family(vec![gauge(&[], snapshot.tracked_sockets as f64)]),
        CAPACITY.family(vec![gauge(&[], f64::from(snapshot.table_capacity))]),
        UNTRACKED.family(one(reads.map(|r| gauge(&[], r.untracked as f64)))),
        KERNEL_READS.family(one(reads.map(|r| counter(&[], r.total)))),
        KERNEL_READ_SECONDS.family(one(reads.map(|r| float_counter(&[], r.seconds)))),
        HELD_READS.family(one(held.map(|r| counter(&[], r.total)))),
        HELD_READ_SECONDS.family(one(held.map(|r| float_counter(&[], r.seconds)))),
        SLOT_WALKS.family(one(walks.map(|r| counter(&[], r.total)))),
        SLOT_WALK_SECONDS.family(one(walks.map(|r| float_counter(&[], r.seconds)))),
    ]
}

/// A [`Collector`] that reads the latest snapshot on every scrape, so metrics are never staler
/// than the last scan and cost nothing between scrapes.
pub struct SnapshotCollector {
    store: Arc<SnapshotStore>,
    version: String,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    /// A collector of `store`'s latest scan; `version` is the `build_info` label.
    ///
    /// # Errors
    /// A metric spec the prometheus crate rejects (a programming error; the tests build it).
    pub fn new(store: Arc<SnapshotStore>, version: &str) -> prometheus::Result<Self> {
        let descs = SNAPSHOT
            .iter()
            .map(|s| {
                let labels = s.labels.iter().map(|l| (*l).to_owned()).collect();
                Desc::new(s.name.to_owned(), s.help.to_owned(), labels, HashMap::new())
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(Self {
            store,
            version: version.to_owned(),
            descs,
        })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        snapshot_families(&self.store.latest(), &self.version)
    }
}

/// The agent's metrics registry: the snapshot collector, plus the scan loop's own health
/// (duration, errors per stage, last success, interval) and the process collector.
pub struct Metrics {
    registry: Registry,
    scan_duration: Histogram,
    scan_errors: IntCounterVec,
    last_success: Gauge,
    scan_interval: Gauge,
    stale_removed: IntCounter,
}

impl Metrics {
    /// The registry over `store`'s latest scan; `version` is the `build_info` label.
    ///
    /// # Panics
    /// Never in practice: registration fails only on invalid or duplicate metric names, all
    /// constants here and covered by the unit tests.
    pub fn new(store: Arc<SnapshotStore>, version: &str) -> Self {
        // Registration only fails on invalid or duplicate names, all constants here (and covered
        // by the tests), so a failure is a programming error.
        let scan_duration = Histogram::with_opts(
            HistogramOpts::from(SCAN_DURATION.opts()).buckets(SCAN_BUCKETS.to_vec()),
        )
        .expect("valid scan duration histogram");
        let scan_errors = IntCounterVec::new(SCAN_ERRORS.opts(), SCAN_ERRORS.labels)
            .expect("valid scan errors counter");
        // Every stage at 0 from the start, so rate() and increase() see the first failure.
        for stage in ScanStage::ALL {
            scan_errors.with_label_values(&[stage.as_str()]);
        }
        let last_success =
            Gauge::with_opts(LAST_SCAN_SUCCESS.opts()).expect("valid last success gauge");
        let scan_interval =
            Gauge::with_opts(SCAN_INTERVAL.opts()).expect("valid scan interval gauge");
        let stale_removed = IntCounter::with_opts(STALE_ENTRIES_REMOVED.opts())
            .expect("valid stale entries counter");
        let registry = Registry::new();
        for collector in [
            Box::new(stale_removed.clone()) as Box<dyn Collector>,
            Box::new(scan_duration.clone()),
            Box::new(scan_errors.clone()),
            Box::new(last_success.clone()),
            Box::new(scan_interval.clone()),
        ] {
            registry
                .register(collector)
                .expect("register scan health metrics");
        }
        let collector = SnapshotCollector::new(store, version).expect("valid metric specs");
        registry
            .register(Box::new(collector))
            .expect("register snapshot collector");
        // The agent's own CPU, memory and file descriptors (process_*): what it costs the host.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("register process collector");
        Self {
            registry,
            scan_duration,
            scan_errors,
            last_success,
            scan_interval,
            stale_removed,
        }
    }

    /// Counts table entries a scan removed as stale (`tcp_liveness_stale_entries_removed_total`).
    pub fn stale_removed(&self, entries: usize) {
        self.stale_removed
            .inc_by(u64::try_from(entries).unwrap_or(u64::MAX));
    }

    /// Records how long one scan took.
    pub fn observe_scan(&self, duration: Duration) {
        self.scan_duration.observe(duration.as_secs_f64());
    }

    /// Counts one failure of `stage` (`tcp_liveness_scan_errors_total`).
    pub fn scan_failed(&self, stage: ScanStage) {
        self.scan_errors.with_label_values(&[stage.as_str()]).inc();
    }

    /// Records that a scan completed with every stage succeeding, at wall-clock time `at`.
    pub fn scan_succeeded(&self, at: SystemTime) {
        let unix = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_success.set(unix.as_secs_f64());
    }

    /// Exports the configured scan interval (`tcp_liveness_scan_interval_seconds`).
    pub fn set_scan_interval(&self, interval: Duration) {
        self.scan_interval.set(interval.as_secs_f64());
    }

    /// All metrics in the Prometheus text format ([`prometheus::TEXT_FORMAT`]).
    #[must_use]
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            // Only fails on families without a name or metrics, which `gather` already drops.
            .unwrap_or_else(|err| {
                tracing::error!(%err, "cannot encode metrics");
                String::new()
            })
    }

    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
