//! The daemon: load the programs, seed the table, scan on an interval, serve HTTP, stop cleanly.

mod descriptors;
mod enforce;
mod pipeline;
mod probing;
mod reload;
mod scan_loop;
mod seeding;

use std::sync::{Arc, Mutex};

pub(crate) use reload::LoadConfig;
use reload::Reloader;
use scan_loop::ScanThread;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
    sync::Semaphore,
};

pub(crate) use descriptors::raise_limit as raise_open_file_limit;

use crate::{
    act::{
        probe::ProbeBook,
        remediate::{RemediationCounters, Remediator},
    },
    alerting::Alerting,
    bpf::{KernelStateReader, KernelStatus, Programs},
    config::RunConfig,
    error::Error,
    export::{
        SnapshotStore, health,
        http::{self, HttpState, auth::BasicAuth, limits::Limits, server_metrics::ServerMetrics},
        metrics::{Metrics, ReloadMetrics},
    },
    privileges::{self, Feature},
    scan::{KernelStateThread, Pipeline, Scanner},
};

/// What reads the held sockets' state, as far as the kernel runs it: the descriptor pass
/// (`iter/task_file`) and the slot walk.
struct HeldReaders {
    holders: Option<crate::bpf::task_file::TaskFileReader>,
    walker: Option<crate::bpf::walk::SlotWalker>,
}

impl HeldReaders {
    /// Takes them from `programs`, loading the walk now (while the thread has `CAP_BPF`); a walk
    /// the kernel refuses is reported as hook `walk_slots`, and the descriptor pass then reads
    /// the values too, as often as before.
    fn take(programs: &mut Programs) -> Self {
        let walker = programs.slot_walker();
        programs
            .hooks
            .push(crate::bpf::walk_status(walker.as_ref().err()));
        Self {
            holders: programs.holders.clone(),
            walker: walker.ok(),
        }
    }

    fn into_scanner(self, mut scanner: Scanner, scan_interval: std::time::Duration) -> Scanner {
        if let Some(holders) = self.holders {
            scanner = scanner.reading_held_sockets(holders, scan_interval);
        }
        if let Some(walker) = self.walker {
            scanner = scanner.walking_slots(walker, scan_interval);
        }
        scanner
    }
}

/// Runs the agent until SIGTERM or SIGINT, then detaches everything. SIGHUP calls `load` and
/// applies what it can of the result ([`Reloader`]).
///
/// # Errors
/// A capability start-up needs is missing ([`Error::Privileges`]), programs the kernel refuses
/// as a whole ([`Error::Bpf`]), an address that cannot be bound
/// ([`Error::Bind`]), a thread or signal handler that cannot be set up, or a task that panicked.
pub(crate) async fn run(config: RunConfig, load: LoadConfig) -> Result<(), Error> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting");
    crate::memory::keep_heap_small();
    // A capability the service was not given is named here, not found as a refused load later.
    privileges::check_start(&running_features(&config))?;
    // From here on SIGHUP is ours: its default action would end the agent with no log line.
    let mut signals = Signals::install()?;
    // First: a port in use or an address not on this host, and an unusable Alertmanager URL,
    // fail in milliseconds, before any probe is loaded or namespace seeded.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let alerting = Alerting::new(
        config.alert_log_limit,
        config.alertmanager_url.as_deref(),
        &config.alertmanager_http,
        config.scan_interval,
    )?;
    let mut programs = Programs::load_recording_stacks(
        config.table_capacity,
        config.per_packet_hooks,
        config.stacks,
    )?;
    let attached = programs.hooks.iter().filter(|h| h.attached).count();
    tracing::info!(
        attached,
        total = programs.hooks.len(),
        capacity = config.table_capacity,
        "probes loaded"
    );
    if let Some(kernel_log) = programs.kernel_log.take() {
        tokio::spawn(forward_kernel_log(kernel_log));
    }
    // Loaded now, while the thread has CAP_BPF; runs after the drop with none. A previous
    // agent's probe journal is settled here, before anything is probed (it enters namespaces).
    let sockopt = tokio::task::block_in_place(|| probing::load_control(&config, &mut programs))?;
    let table = programs.socket_source();
    let table_refresh = programs.table_refresh.clone();
    let held = HeldReaders::take(&mut programs);
    let programs = Arc::new(Mutex::new(programs));

    // On this thread, which still has every capability (the runtime's threads have none).
    let seeded = tokio::task::block_in_place(|| seeding::seed(&programs));
    tracing::info!(seeded, "pre-existing sockets seeded from sock_diag");
    // Loading parsed the kernel's BTF and seeding dumped every socket: give that memory back.
    crate::memory::release_free_heap();

    // Before the drop below: attaching `[[enforce]]` needs it.
    let (pipeline, features) = pipeline::build(&config, &programs, sockopt.is_some())?;
    let kernel: Arc<dyn KernelStatus> = Arc::clone(&programs) as _;
    let scanner = Scanner::new(
        Arc::clone(&table),
        Arc::clone(&kernel),
        Arc::clone(&pipeline),
        config.grouping(),
    )
    .reading_namespace_sysctls();
    let scanner = Arc::new(held.into_scanner(scanner, config.scan_interval));
    let remediation = RemediationCounters::new(&config.remediate);
    let remediator = remediator(&config, &remediation);
    // Before the drop below: entering other namespaces needs it.
    let enforcement = features.enforcement.as_deref();
    tokio::task::block_in_place(|| enforce::apply_to_existing(enforcement, &pipeline, &*table));
    // Loaded and seeded: CAP_BPF, CAP_PERFMON and all else not kept are gone for good; the
    // threads started next inherit the kept set.
    // Plus CAP_NET_ADMIN for the conntrack questions when given (never required at start).
    say_if_conntrack_is_unread();
    let kept = privileges::kept(&[running_features(&config), vec![Feature::Conntrack]].concat());
    privileges::restrict_thread(&kept)?;
    // Reads the kernel's own socket state beside the scans (dropped before the programs).
    let kernel_state = start_kernel_state(table_refresh, &pipeline, &kernel, &config)?;
    // Keepalive probes (`[probe]`): on a thread of their own that enters the namespaces.
    let probe_thread = probing::start(features.probe.as_ref(), sockopt)?;
    let (store, metrics) = new_metrics(&config, &alerting, features.probe.as_deref(), &remediation);
    tracing::info!(listen = %config.listen, "serving /metrics, /connections, /alerts, /healthz");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let state = HttpState {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            source: table,
            pipeline: Arc::clone(&pipeline),
            allow_remote_connections: config.allow_remote_connections,
            connections_streams: Arc::new(Semaphore::new(http::MAX_CONNECTIONS_STREAMS)),
            stale_after: health::stale_after(config.scan_interval),
        };
        serve_http(listener, state, &config, &metrics, stop_rx.clone())
    };
    let reloader = Reloader::new(
        config.clone(),
        load,
        pipeline,
        ReloadMetrics::register(&metrics),
    );
    let outputs = scan_loop::Outputs { store, metrics };
    let scans = ScanThread::start(scanner, remediator, alerting, outputs, &config)?;
    // Every thread that needs the kept set runs: this one (signals, reloads) keeps nothing.
    privileges::restrict_thread(&privileges::kept(&[]))?;
    tracing::info!(
        kept = ?kept.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "capabilities dropped; kept only in the scan, kernel-state and probe threads"
    );

    signals.serve_until_stopped(reloader).await;
    tracing::info!("stopping: detaching probes");
    let _ = stop_tx.send(true);
    // Waits for a scan in progress (its Alertmanager push is bounded by the client's timeout).
    tokio::task::block_in_place(|| drop(scans));
    server.await?.map_err(Error::Http)?;
    drop(kernel_state);
    // Restores every socket still being probed (on the probe thread, which may enter
    // namespaces) before the program is unloaded.
    tokio::task::block_in_place(|| drop(probe_thread));
    // Last reference: dropping the programs detaches every program and frees the maps.
    drop(programs);
    Ok(())
}

/// The snapshot store and the metrics registry, with every counter the agent's parts keep on
/// their own (Alertmanager pushes, probes, remediations) registered.
fn new_metrics(
    config: &RunConfig,
    alerting: &Alerting,
    probe_book: Option<&ProbeBook>,
    remediation: &RemediationCounters,
) -> (Arc<SnapshotStore>, Arc<Metrics>) {
    let store = Arc::new(SnapshotStore::default());
    let metrics = Arc::new(Metrics::new(Arc::clone(&store), env!("CARGO_PKG_VERSION")));
    metrics.set_scan_interval(config.scan_interval);
    alerting
        .register_metrics(metrics.registry())
        .expect("push counters register once");
    probing::register_metrics(probe_book, &metrics);
    remediation
        .register(metrics.registry())
        .expect("registered once");
    (store, metrics)
}

/// What the running agent does that needs a capability (docs/privileges.md): its scan and
/// kernel-state threads enter every network namespace and walk every process's descriptors. A
/// feature that needs more (socket destroy) adds itself here when its setting enables it.
const RUNNING_FEATURES: &[Feature] = &[Feature::Namespaces, Feature::Owners];

/// Remediation by the `[[remediate]]` policies, if there are any (the scan loop runs it after
/// each scan).
fn remediator(config: &RunConfig, counters: &RemediationCounters) -> Option<Remediator> {
    if config.remediate.is_empty() {
        return None;
    }
    for policy in &config.remediate {
        tracing::info!(
            policy = %policy.name(),
            dry_run = policy.dry_run,
            min_age = %humantime::format_duration(policy.min_age),
            max_per_minute = policy.max_per_minute,
            "remediation policy"
        );
    }
    Some(Remediator::new(config.remediate.clone(), counters.clone()))
}

/// [`RUNNING_FEATURES`], and [`Feature::Destroy`] when a `[[remediate]]` policy really destroys
/// (dry-run ones only log: no `CAP_NET_ADMIN` then).
fn running_features(config: &RunConfig) -> Vec<Feature> {
    let destroys = config.remediate.iter().any(|p| !p.dry_run);
    let mut features = RUNNING_FEATURES.to_vec();
    if destroys {
        features.push(Feature::Destroy);
    }
    features
}

/// The thread refreshing the table from the kernel's own socket state and reading the sockets'
/// holders (`readers`: the table refresh program, the `iter/task_file` program); None when the
/// kernel refused the table refresh iterator (the hooks' values are then used alone).
fn start_kernel_state(
    reader: Option<KernelStateReader>,
    pipeline: &Arc<Pipeline>,
    kernel: &Arc<dyn KernelStatus>,
    config: &RunConfig,
) -> Result<Option<KernelStateThread>, Error> {
    let Some(reader) = reader else {
        return Ok(None);
    };
    let (pipeline, kernel) = (Arc::clone(pipeline), Arc::clone(kernel));
    KernelStateThread::start(pipeline, kernel, reader, config.scan_interval)
        .map(Some)
        .map_err(|source| Error::Thread {
            name: "kernel-state",
            source,
        })
}

/// Serves HTTP until `stop` turns true.
fn serve_http(
    listener: tokio::net::TcpListener,
    state: HttpState,
    config: &RunConfig,
    metrics: &Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let stopped = async move {
        let _ = stop.wait_for(|&s| s).await;
    };
    tokio::spawn(http::serve(
        listener,
        state,
        server_options(config, metrics),
        stopped,
    ))
}

/// How the HTTP server serves: the configured limits, TLS and users, its metrics registered.
fn server_options(config: &RunConfig, metrics: &Metrics) -> http::server::Options {
    http::server::Options {
        limits: Limits {
            max_connections: config.max_connections,
            max_connections_per_client: config.max_connections_per_client,
            ..Limits::default()
        },
        tls: config.web.tls.as_ref().map(|tls| Arc::clone(&tls.server)),
        auth: BasicAuth::new(config.web.users.clone()).map(Arc::new),
        loopback_only: !config.allow_remote_connections,
        metrics: ServerMetrics::register(metrics.registry())
            .expect("HTTP server metrics registered once"),
    }
}

/// The signals the agent handles, installed before anything is loaded.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Self, Error> {
        let install = |kind| signal(kind).map_err(Error::Runtime);
        Ok(Self {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    /// Reloads the config on each SIGHUP; returns at SIGTERM or SIGINT.
    async fn serve_until_stopped(&mut self, mut reloader: Reloader) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                Some(()) = self.hup.recv() => reloader.reload(),
            }
        }
    }
}

/// Forwards what the kernel programs log (aya-log ring buffer) whenever it has records.
async fn forward_kernel_log(kernel_log: crate::bpf::KernelLog) {
    // SAFETY: the descriptor is the ring buffer map's, owned by `kernel_log`, which the AsyncFd
    // owns from here on: it stays open and the same for the AsyncFd's whole life.
    let registered = unsafe { AsyncFd::register_with_interest(kernel_log, Interest::READABLE) };
    let mut kernel_log = match registered {
        Ok(fd) => fd,
        Err(error) => {
            tracing::warn!(%error, "cannot poll the kernel programs' log");
            return;
        }
    };
    loop {
        let Ok(mut ready) = kernel_log.readable_mut().await else {
            return;
        };
        ready.get_inner_mut().flush();
        ready.clear_ready();
    }
}

/// Says once, at start, when the host's conntrack cannot be asked (no `CAP_NET_ADMIN`: not
/// required), so an operator knows why no flow is flagged with path `conntrack`.
fn say_if_conntrack_is_unread() {
    if !caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    )
    .unwrap_or(false)
    {
        tracing::info!(
            "the host's conntrack timeouts are not read (no CAP_NET_ADMIN): idle flows the host's conntrack will drop are not flagged unless a [[path]] names them; grant CAP_NET_ADMIN to read them (docs/path-timeouts.md)"
        );
    }
}
