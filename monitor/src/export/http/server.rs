//! The accept loop under axum's router: connection limits (in all and per client), a deadline
//! for each request head and for a connection that stops moving bytes, TLS, basic
//! authentication, the `Host` check of loopback-only paths, and a bounded graceful shutdown.
//!
//! `axum::serve` has none of these: a few hundred half-sent requests from any host took every
//! descriptor and stopped scrapes, and one stuck client kept the agent from exiting.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, Response, StatusCode, header},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::{
    auth::BasicAuth,
    host::{LOOPBACK_ONLY_PATHS, is_loopback_host},
    limits::{Limits, Slot, Slots},
    progress::{Progress, Tracked},
    server_metrics::{Dropped, ServerMetrics},
};

/// Largest request head read (hyper's buffer): our requests are a line and a few headers, and
/// a slow client sending a huge head must not cost more than this per connection.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// After an accept error, the pause before the next accept: out of descriptors, retrying at
/// once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// At most one log line per this period for repeated accept errors or refusals; the counters
/// have every one.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How the server serves, besides the routes.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub limits: Limits,
    /// HTTPS with this configuration; None: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic authentication of every path but `/healthz`; None: none.
    pub auth: Option<Arc<BasicAuth>>,
    /// Refuse foreign `Host` names on [`LOOPBACK_ONLY_PATHS`] (true unless
    /// `--allow-remote-connections`).
    pub loopback_only: bool,
    pub metrics: ServerMetrics,
}

/// What each connection's requests need.
struct Shared {
    router: Router,
    options: Options,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets requests
/// in flight finish for the shutdown grace period, and drops the connections still open.
///
/// # Errors
/// None so far: accept errors are logged, counted, and retried. The result leaves room for
/// failures that should stop the agent.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Slots::new(&options.limits, options.metrics.clone());
    let grace = options.limits.shutdown_grace;
    let shared = Arc::new(Shared { router, options });
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_log = Throttled::default();
    let mut refusal_log = Throttled::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.admit(peer.ip()) {
                    Ok(slot) => {
                        connections.spawn(connection(
                            stream,
                            peer,
                            slot,
                            Arc::clone(&shared),
                            stopping.clone(),
                        ));
                    }
                    Err(limit) => {
                        shared.options.metrics.refused(limit);
                        if let Some(more) = refusal_log.due() {
                            tracing::warn!(
                                client = %peer.ip(),
                                limit = limit.as_str(),
                                open = slots.open(),
                                refused_since_last_log = more,
                                "refusing HTTP connections: limit reached"
                            );
                        }
                    }
                },
                Err(error) => {
                    shared.options.metrics.accept_error();
                    if let Some(more) = accept_log.due() {
                        tracing::warn!(%error, errors_since_last_log = more, "cannot accept HTTP connections");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace = ?grace,
            "HTTP connections still open after the shutdown grace period: dropped"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One connection, TLS handshake included, until it closes, times out, or is stopped.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let progress = Progress::new();
    let stream = Tracked::new(stream, progress.clone());
    let metrics = shared.options.metrics.clone();
    let Some(tls) = shared.options.tls.clone() else {
        return http(stream, peer, progress, shared, stopping).await;
    };
    let handshake = tokio::time::timeout(
        shared.options.limits.header_timeout,
        TlsAcceptor::from(tls).accept(stream),
    );
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                metrics.dropped(Dropped::TlsHandshake);
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics.dropped(Dropped::TlsHandshake);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stopping.wait_for(|&stop| stop) => return,
    };
    http(stream, peer, progress, shared, stopping).await;
}

/// HTTP/1.1 on an established stream (plain or TLS).
async fn http<S>(
    stream: S,
    peer: SocketAddr,
    progress: Progress,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.options.limits.clone();
    let metrics = shared.options.metrics.clone();
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(request, peer, &shared).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stop_asked = false;
    loop {
        let idle_until = progress.last() + limits.idle_timeout;
        tokio::select! {
            done = conn.as_mut() => {
                match done {
                    // Only a request begun and not finished counts: a connection idle since
                    // its last answer (keep-alive) or since it opened closes the same way.
                    Err(error) if error.is_timeout() && progress.read_since_write() => {
                        metrics.dropped(Dropped::HeaderTimeout);
                        tracing::debug!(%peer, "no complete request head in time: closed");
                    }
                    Err(error) if error.is_timeout() => {
                        tracing::debug!(%peer, "idle connection closed");
                    }
                    Err(error) => tracing::debug!(%peer, %error, "HTTP connection ended"),
                    Ok(()) => {}
                }
                return;
            }
            // Finish the request in flight, if any, then close; the accept loop drops what is
            // left after the grace period.
            _ = stopping.wait_for(|&stop| stop), if !stop_asked => {
                stop_asked = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_until) => {
                if progress.last() + limits.idle_timeout <= tokio::time::Instant::now() {
                    metrics.dropped(Dropped::IdleTimeout);
                    tracing::debug!(%peer, "no byte moved within the idle timeout: closed");
                    return;
                }
            }
        }
    }
}

/// The `Host` check, then authentication, then the route.
async fn respond(request: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response<Body> {
    let options = &shared.options;
    let path = request.uri().path();
    if options.loopback_only && LOOPBACK_ONLY_PATHS.contains(&path) {
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let value = request.headers().get(header::HOST)?;
                Some(value.to_str().unwrap_or("?").to_owned())
            });
        // No Host at all: an HTTP/1.0 client, not a browser (browsers always send one).
        if let Some(host) = host.filter(|h| !is_loopback_host(h)) {
            let message = format!(
                "{path} is only served to loopback clients, by a loopback name (Host {host:?} is not one; use localhost or 127.0.0.1)\n"
            );
            return plain(StatusCode::FORBIDDEN, message);
        }
    }
    if let Some(auth) = &options.auth
        && path != "/healthz"
        && !auth
            .allows(request.headers().get(header::AUTHORIZATION))
            .await
    {
        let mut response = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n".into());
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"tcp-liveness\""),
        );
        return response;
    }
    let mut request = request.map(Body::new);
    request.extensions_mut().insert(ConnectInfo(peer));
    match shared.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Logs a repeated event at most once per [`LOG_EVERY`].
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    /// Events since the last line.
    since: u64,
}

impl Throttled {
    /// Some(events since the last line, this one included) when a line is due now.
    fn due(&mut self) -> Option<u64> {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests;
