//! The families kept as live counters and gauges by the room that counts them ([`super::LIVE`]):
//! the scan loop's health, the config reload, the HTTP server, the Alertmanager pushes, the
//! probes and the remediations.

use super::{Family, Kind, family};

// The scan loop's own health and the config reload (`export::metrics`).

pub const SCAN_DURATION: Family = family(
    "tcp_liveness_scan_duration_seconds",
    Kind::Histogram,
    &[],
    "Time taken to read the kernel socket table and build one snapshot.",
);
pub const SCAN_ERRORS: Family = family(
    "tcp_liveness_scan_errors_total",
    Kind::Counter,
    &["stage"],
    "Scan stages that failed since the agent started, by stage (counters: reading the kernel programs' counter maps, whose last good values stay published; scan: the whole scan, whose previous results stay published).",
);
pub const LAST_SCAN_SUCCESS: Family = family(
    "tcp_liveness_last_scan_success_timestamp_seconds",
    Kind::Gauge,
    &[],
    "Unix time at which the last scan completed with every stage succeeding; 0 before the first. Compare with time() and tcp_liveness_scan_interval_seconds to find a stalled agent.",
);
pub const SCAN_INTERVAL: Family = family(
    "tcp_liveness_scan_interval_seconds",
    Kind::Gauge,
    &[],
    "The configured interval between scans (--scan-interval), in seconds.",
);
pub const STALE_ENTRIES_REMOVED: Family = family(
    "tcp_liveness_stale_entries_removed_total",
    Kind::Counter,
    &[],
    "Table entries removed because the kernel's own socket state (iter/tcp) no longer has their socket: closes the kernel programs never saw (a lost event, or a socket that predates the agent).",
);
pub const RELOAD_SUCCESSFUL: Family = family(
    "tcp_liveness_config_last_reload_successful",
    Kind::Gauge,
    &[],
    "Whether the last config reload (SIGHUP) succeeded (1) or was rejected (0, the agent runs on the previous config); 1 from the start.",
);
pub const RELOAD_SUCCESS_TIME: Family = family(
    "tcp_liveness_config_last_reload_success_timestamp_seconds",
    Kind::Gauge,
    &[],
    "Unix time of the last successful config load: the start, or the last accepted reload.",
);
// The HTTP server (`export::http`).

pub const HTTP_OPEN: Family = family(
    "tcp_liveness_http_open_connections",
    Kind::Gauge,
    &[],
    "Connections to the agent's HTTP endpoint open now (at most --web.max-connections).",
);
pub const HTTP_REFUSED: Family = family(
    "tcp_liveness_http_connections_refused_total",
    Kind::Counter,
    &["limit"],
    "Connections to the HTTP endpoint closed as soon as accepted because a limit was reached, by limit (max_connections: --web.max-connections in all; max_connections_per_client: --web.max-connections-per-client from one address).",
);
pub const HTTP_ACCEPT_ERRORS: Family = family(
    "tcp_liveness_http_accept_errors_total",
    Kind::Counter,
    &[],
    "Errors accepting a connection on the HTTP endpoint (e.g. out of file descriptors); each is logged.",
);
pub const HTTP_DROPPED: Family = family(
    "tcp_liveness_http_connections_dropped_total",
    Kind::Counter,
    &["reason"],
    "Connections the HTTP endpoint closed without an answer, by reason (header_timeout: a request begun and not complete within 10 s; idle_timeout: no byte read or written for 60 s; tls_handshake: failed or too slow).",
);
// The Alertmanager push (`alerting`), keepalive probes and remediation (`scan`).

pub const ALERTMANAGER_PUSHES: Family = family(
    "tcp_liveness_alertmanager_pushes_total",
    Kind::Counter,
    &[],
    "POSTs of alerts to Alertmanager attempted since the agent started (at most one per scan; skipped while the previous one is in flight).",
);
pub const ALERTMANAGER_PUSH_FAILURES: Family = family(
    "tcp_liveness_alertmanager_push_failures_total",
    Kind::Counter,
    &[],
    "POSTs of alerts to Alertmanager that failed: no connection, a TLS error (unknown CA, bad client certificate), a timeout, or an answer other than 2xx (e.g. 401 for wrong basic auth credentials). The log says which, at most once a minute.",
);
pub const PROBES: Family = family(
    "tcp_liveness_probes_total",
    Kind::Counter,
    &["result"],
    "Keepalive probes of the [probe] feature that finished, by result: answered (the peer is alive) or unanswered (count probes without an answer: peer_dead).",
);
pub const REMEDIATIONS: Family = family(
    "tcp_liveness_remediations_total",
    Kind::Counter,
    &["reason", "result"],
    "Actions of [[remediate]] policies on confirmed-dead connections, by the policy's reason and the result (destroyed, dry_run, skipped_changed, gone, rate_limited, failed)",
);
