//! The HTTP server's own metrics: open connections, refused ones, accept errors, and
//! connections dropped by a timeout or a failed TLS handshake.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use crate::{
    export::metrics::FamilyExt as _,
    model::metric_families::{HTTP_ACCEPT_ERRORS, HTTP_DROPPED, HTTP_OPEN, HTTP_REFUSED},
};

/// Which limit refused a connection (the `limit` label of
/// `tcp_liveness_http_connections_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    MaxConnections,
    MaxConnectionsPerClient,
}

impl Refused {
    pub(crate) const ALL: [Self; 2] = [Self::MaxConnections, Self::MaxConnectionsPerClient];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerClient => "max_connections_per_client",
        }
    }
}

/// Why the server dropped a connection (the `reason` label of
/// `tcp_liveness_http_connections_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// A request head begun and not finished within the header timeout (a slowloris).
    HeaderTimeout,
    /// No byte read or written within the idle timeout (a client that stopped reading).
    IdleTimeout,
    /// The TLS handshake failed or did not finish within the header timeout.
    TlsHandshake,
}

impl Dropped {
    const ALL: [Self; 3] = [Self::HeaderTimeout, Self::IdleTimeout, Self::TlsHandshake];

    fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::TlsHandshake => "tls_handshake",
        }
    }
}

/// Cheap to clone: the metrics are shared handles.
#[derive(Clone, Debug)]
pub(crate) struct ServerMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    accept_errors: IntCounter,
    dropped: IntCounterVec,
}

impl ServerMetrics {
    /// The metrics, registered in `registry` (the agent's, served on `/metrics`).
    ///
    /// # Errors
    /// When a name is already registered there.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.accept_errors.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        Ok(metrics)
    }

    /// The metrics, not exported anywhere (tests).
    ///
    /// # Panics
    /// Never: the names and labels are constants, valid (the tests build them).
    pub(crate) fn unregistered() -> Self {
        let open = IntGauge::with_opts(HTTP_OPEN.opts()).expect("valid open connections gauge");
        let refused = IntCounterVec::new(HTTP_REFUSED.opts(), HTTP_REFUSED.labels)
            .expect("valid refused connections counter");
        let accept_errors =
            IntCounter::with_opts(HTTP_ACCEPT_ERRORS.opts()).expect("valid accept errors counter");
        let dropped = IntCounterVec::new(HTTP_DROPPED.opts(), HTTP_DROPPED.labels)
            .expect("valid dropped connections counter");
        // Every label from the start, so rate() and increase() see the first one.
        for limit in Refused::ALL {
            refused.with_label_values(&[limit.as_str()]);
        }
        for reason in Dropped::ALL {
            dropped.with_label_values(&[reason.as_str()]);
        }
        Self {
            open,
            refused,
            accept_errors,
            dropped,
        }
    }

    pub(crate) fn set_open(&self, connections: usize) {
        self.open
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
    }

    pub(crate) fn refused(&self, limit: Refused) {
        self.refused.with_label_values(&[limit.as_str()]).inc();
    }

    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }

    pub(crate) fn dropped(&self, reason: Dropped) {
        self.dropped.with_label_values(&[reason.as_str()]).inc();
    }
}
