//! The agent's HTTP endpoint: `/metrics`, `/connections`, `/alerts`, `/healthz`.
//!
//! The routes are here; how connections are served (limits, timeouts, TLS, authentication,
//! shutdown) is in [`server`], the web config file in [`web_config`].

pub(crate) mod auth;
mod host;
pub(crate) mod limits;
mod progress;
pub(crate) mod server;
pub(crate) mod server_metrics;
pub(crate) mod web_config;

use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse as _, Response},
    routing::get,
};
use tokio::sync::Semaphore;

use super::{
    SnapshotStore,
    health::Health,
    json::{ConnectionFilter, FilterParams, ViewsWriter},
    metrics::Metrics,
};
use crate::{
    alerting::{self, AlertsView},
    bpf::SocketSource,
    clock,
    scan::Pipeline,
};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    /// The live socket table: `/connections` reads it at request time (the snapshot keeps no
    /// per-connection data besides suspects).
    pub source: Arc<dyn SocketSource>,
    /// The scan's own per-socket pipeline, so `/connections` judges sockets exactly as it does.
    pub pipeline: Arc<Pipeline>,
    /// Serve `/connections` to non-loopback clients too (`--allow-remote-connections`).
    pub allow_remote_connections: bool,
    /// `/connections` answers being produced or sent at once, at most
    /// [`MAX_CONNECTIONS_STREAMS`] permits; past them the answer is 503.
    pub connections_streams: Arc<Semaphore>,
    /// How long without a successful scan before `/healthz` fails ([`super::health::stale_after`]).
    pub stale_after: Duration,
}

/// Concurrent `/connections` answers: each holds a blocking thread while it reads the table and
/// up to a few hundred KiB buffered for its client, for as long as the client takes to read.
/// Slow readers past this number get 503 instead of piling up threads and memory.
pub(crate) const MAX_CONNECTIONS_STREAMS: usize = 8;

/// Whether `ip` is this host's loopback, including IPv4 loopback seen through a dual-stack
/// (`::ffff:127.0.0.1`) socket.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The routes. `/connections` needs the peer address as a `ConnectInfo<SocketAddr>` request
/// extension, as [`serve`] gives it.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/connections", get(connections))
        .route("/alerts", get(alerts))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for a bounded time
/// ([`server::serve`]).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    options: server::Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(state), options, shutdown).await
}

/// A one-line plain-text answer (errors, health) that reads well in `curl` output.
fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

async fn connections(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<FilterParams>,
) -> Response {
    if let Some(refused) = refuse_remote(&state, peer, "/connections") {
        return refused;
    }
    let filter = match ConnectionFilter::from_params(&params) {
        Ok(filter) => filter,
        Err(err) => return text(StatusCode::BAD_REQUEST, format!("{err}\n")),
    };
    // Held by the producer and by the body, so it is released once both are done: the answer
    // fully sent, or the client gone.
    let Ok(permit) = Arc::clone(&state.connections_streams).try_acquire_owned() else {
        let mut busy = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_CONNECTIONS_STREAMS} /connections answers are already in progress; try again later\n"
            ),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return busy;
    };
    let permit = Arc::new(permit);
    // Streamed: a whole-host answer is ~575 bytes per socket (115 MB at 200k sockets), which
    // the agent should not hold at once. A few chunks in flight at most.
    let (chunks, body) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    // Reading the table and /proc is blocking work: off the runtime threads (the scan has a
    // thread of its own, so these never delay it).
    let producer_permit = Arc::clone(&permit);
    tokio::task::spawn_blocking(move || {
        live_connections(&state, filter, &chunks);
        drop(producer_permit);
    });
    let body = futures_util::stream::unfold((body, permit), |(mut body, permit)| async move {
        let chunk = body.recv().await?;
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), (body, permit)))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Bytes per streamed piece of the `/connections` body.
const CONNECTIONS_CHUNK: usize = 64 * 1024;

/// The `/connections` body: the live table through the scan's pipeline, as of now, sent in
/// pieces; stops early when the client has gone.
fn live_connections(
    state: &HttpState,
    filter: ConnectionFilter,
    chunks: &tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    let mut views = ViewsWriter::new(filter).with_policy(state.pipeline.policy());
    let now = clock::monotonic_now_ns();
    let mut client_open = true;
    state.pipeline.read(state.source.as_ref(), now, &mut |c| {
        if !client_open {
            return;
        }
        views.push(c);
        if let Some(chunk) = views.take_at_least(CONNECTIONS_CHUNK) {
            client_open = chunks.blocking_send(chunk).is_ok();
        }
    });
    if client_open {
        let _ = chunks.blocking_send(views.finish());
    }
}

/// Addresses, pids and process names of every connection on the host are more than a metrics
/// scraper needs; remote access is opt-in.
fn refuse_remote(state: &HttpState, peer: SocketAddr, path: &str) -> Option<Response> {
    if state.allow_remote_connections || is_loopback(peer.ip()) {
        return None;
    }
    let msg = format!(
        "{path} is only served to loopback clients ({} is not one); start the agent with --allow-remote-connections to serve it remotely\n",
        peer.ip()
    );
    Some(text(StatusCode::FORBIDDEN, msg))
}

/// Samples carry addresses, so the same rule as `/connections`.
async fn alerts(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(refused) = refuse_remote(&state, peer, "/alerts") {
        return refused;
    }
    let published = state.store.latest();
    Json(AlertsView {
        alerts: alerting::group(&published.snapshot),
        fd_exhaustion: alerting::exhaustion::predicted(&published.snapshot),
    })
    .into_response()
}

/// 200 while scans keep succeeding; 503 before the first and once none has succeeded for
/// [`stale_after`](super::health::stale_after) the scan interval.
async fn healthz(State(state): State<HttpState>) -> Response {
    let health = state
        .store
        .health(clock::monotonic_now_ns(), state.stale_after);
    let status = match health {
        Health::Healthy => StatusCode::OK,
        Health::Starting | Health::Stale { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    text(status, health.message(state.stale_after))
}

#[cfg(test)]
mod tests;
