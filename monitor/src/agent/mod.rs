//! The daemon: load the probes, seed the table, scan on an interval, serve HTTP, stop cleanly.

mod descriptors;
mod scan_loop;
mod seeding;

use std::sync::{Arc, Mutex};

use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

pub(crate) use descriptors::raise_limit as raise_open_file_limit;

use crate::{
    alerting::Alerting,
    config::{GroupBy, RunConfig},
    error::Error,
    export::{
        SnapshotStore,
        http::{self, HttpState, auth::BasicAuth, limits::Limits, server_metrics::ServerMetrics},
        metrics::Metrics,
    },
    model::Grouping,
    probes::{KernelStatus, Probes},
    scan::{KernelStateThread, Pipeline, Scanner, kernel_defaults},
};

/// Runs the agent until SIGTERM or SIGINT, then detaches everything.
///
/// # Errors
/// Programs the kernel refuses as a whole ([`Error::Probes`]), an address that cannot be bound
/// ([`Error::Bind`]), a thread or signal handler that cannot be set up, or a task that panicked.
pub(crate) async fn run(config: RunConfig) -> Result<(), Error> {
    // First: an unusable Alertmanager URL fails before any probe is loaded.
    let alerting = Alerting::new(
        config.alert_log_limit,
        config.alertmanager_url.as_deref(),
        config.scan_interval,
    )
    .map_err(|source| Error::Thread {
        name: "alertmanager",
        source,
    })?;
    let mut probes = Probes::load(config.table_capacity)?;
    let attached = probes.hooks.iter().filter(|h| h.attached).count();
    tracing::info!(
        attached,
        total = probes.hooks.len(),
        capacity = config.table_capacity,
        "probes loaded"
    );
    if let Some(kernel_log) = probes.kernel_log.take() {
        tokio::spawn(forward_kernel_log(kernel_log));
    }
    let table = probes.socket_source();
    let kernel_state = probes.kernel_state.clone();
    let probes = Arc::new(Mutex::new(probes));

    let seeded = {
        let probes = Arc::clone(&probes);
        tokio::task::spawn_blocking(move || seeding::seed(&probes)).await?
    };
    tracing::info!(seeded, "pre-existing sockets seeded from sock_diag");
    // Loading parsed the kernel's BTF and seeding dumped every socket: give that memory back.
    crate::memory::release_free_heap();

    let pipeline = Arc::new(Pipeline::new(
        kernel_defaults::load(),
        config.policy.clone(),
    ));
    let kernel: Arc<dyn KernelStatus> = Arc::clone(&probes) as _;
    let scanner = Scanner::new(
        Arc::clone(&table),
        kernel,
        Arc::clone(&pipeline),
        Grouping {
            top_n: config.top_n,
            by_cgroup: config.group_by == GroupBy::Cgroup,
        },
    )
    .reading_namespace_sysctls();
    let scanner = Arc::new(scanner);
    // Reads the kernel's own socket state beside the scans (dropped before the probes).
    let hz = crate::probes::kernel_state::kernel_hz();
    if kernel_state.is_some() && hz.is_none() {
        tracing::warn!("kernel tick rate unknown: the kernel's socket state is not read");
    }
    let kernel_state = kernel_state
        .zip(hz)
        .map(|(reader, hz)| {
            KernelStateThread::start(Arc::clone(&pipeline), reader, hz, config.scan_interval)
        })
        .transpose()
        .map_err(|source| Error::Thread {
            name: "kernel-state",
            source,
        })?;
    let store = Arc::new(SnapshotStore::default());
    let metrics = Arc::new(Metrics::new(Arc::clone(&store), env!("CARGO_PKG_VERSION")));
    metrics.set_scan_interval(config.scan_interval);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!(listen = %config.listen, "serving /metrics, /connections, /alerts, /healthz");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let state = HttpState {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            source: table,
            pipeline,
            allow_remote_connections: config.allow_remote_connections,
        };
        serve_http(listener, state, &config, &metrics, stop_rx.clone())
    };
    let scanner = tokio::spawn(scan_loop::run(
        scanner,
        alerting,
        scan_loop::Outputs { store, metrics },
        config.scan_interval,
        stop_rx,
    ));

    wait_for_signal().await?;
    tracing::info!("stopping: detaching probes");
    let _ = stop_tx.send(true);
    scanner.await?;
    server.await?.map_err(Error::Http)?;
    drop(kernel_state);
    // Last reference: dropping the probes detaches every program and frees the maps.
    drop(probes);
    Ok(())
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

async fn wait_for_signal() -> Result<(), Error> {
    let mut term = signal(SignalKind::terminate()).map_err(Error::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Runtime)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Forwards what the kernel programs log (aya-log ring buffer) whenever it has records.
async fn forward_kernel_log(kernel_log: crate::probes::KernelLog) {
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
