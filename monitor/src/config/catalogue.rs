//! Every setting of `tcp-liveness run`, one row each: its field (and key, unless it says
//! another), type, parser, flag, default and help. `--help`, the keys the file accepts, the
//! [`RunArgs`] fields and each setting's resolution (flag over file over default) come from
//! here. A row also needs its line in `RunConfig::resolve` (where the value goes) and in
//! `reload.rs` (how a reload prints it). The rooms below config keep `Default`s of their own
//! (`Thresholds`, `Grouping`, `ProbeSettings`, the server's `Limits`); `catalogue/tests.rs`
//! checks that they are these defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{
    ConfigError, LogFormat,
    setting::{FileValues, Flag, Row, Style, Table, settings, value},
    values,
};
use crate::{model::GroupBy, verdict::Share};

settings! {
    flags {
        listen: SocketAddr = values::listen, Row {
            default: "0.0.0.0:9977", value_name: "ADDR", env: Some("TCP_LIVENESS_LISTEN"),
            about: "Address for /metrics, /connections and /healthz.",
            ..Row::TOP
        };
        scan_interval: Duration = values::scan_interval, Row {
            default: "5s", value_name: "DURATION", style: Style::Hyphen,
            about: "How often the kernel table is read, 100ms to 1h.",
            ..Row::TOP
        };
        table_capacity: u32 = values::table_capacity, Row {
            default: "262144", value_name: "N", style: Style::Number,
            about: "Sockets tracked in the kernel (about 280 bytes each); inserts beyond it are counted (`tcp_liveness_table_insert_failures_total`).",
            ..Row::TOP
        };
        allow_remote_connections: bool = values::boolean, Row {
            default: "false", value_name: "BOOL", style: Style::Switch,
            about: "Serve /connections (addresses, processes) to non-loopback clients too.",
            ..Row::TOP
        };
        per_packet_hooks: bool = values::boolean, Row {
            default: "false", value_name: "BOOL", style: Style::Switch,
            about: "Also attach the per-packet and per-send/receive hooks (`sock_send_length`, `sock_recv_length`, `tcp_probe`): ages to the nanosecond between scans, at a cost to every application on the host (BENCHMARKS.md). Off, every value comes from the kernel's own per-socket state, read at each scan.",
            ..Row::TOP
        };
        log_format: LogFormat = values::log_format, Row {
            default: "text", value_name: "FORMAT",
            about: "Log line format: text or json.",
            ..Row::TOP
        };
        close_wait_after: Duration = values::threshold, Row {
            default: "60s", value_name: "DURATION", style: Style::Hyphen,
            about: "Report a socket in `CLOSE_WAIT` this long (the application never closed it).",
            ..Row::TOP
        };
        fin_wait2_after: Duration = values::threshold, Row {
            default: "120s", value_name: "DURATION", style: Style::Hyphen,
            about: "Report a held socket in `FIN_WAIT2` this long (the peer never closed).",
            ..Row::TOP
        };
        unresponsive_after: Duration = values::threshold, Row {
            default: "10s", value_name: "DURATION", style: Style::Hyphen,
            about: "Report a connection retransmitting with no reply from the peer this long.",
            ..Row::TOP
        };
        idle_after: Duration = values::threshold, Row {
            default: "15m", value_name: "DURATION", style: Style::Hyphen,
            about: "Report a connection idle this long with no keepalive or user timeout.",
            ..Row::TOP
        };
        fd_exhaustion_horizon: Duration = values::threshold, Row {
            default: "1h", value_name: "DURATION", style: Style::Hyphen,
            about: "Alert (`TcpLivenessFdExhaustionPredicted`) when a process holding suspect sockets is predicted to reach its open-file limit within this long.",
            ..Row::TOP
        };
        path_timeout_share: Share = super::path::share, Row {
            default: "0.8", value_name: "SHARE",
            about: "Report a connection across a `[[path]]` (or tracked by this host's own conntrack) once idle this share of the path's idle timeout (above 0, at most 1) with nothing to send a packet before it (`idle_beyond_path_timeout`).",
            ..Row::TOP
        };
        top_n: usize = |raw| values::count(raw, 1000), Row {
            default: "20", value_name: "N", style: Style::Number,
            about: "Largest `CLOSE_WAIT` owners exported as metric series, 0 to 1000.",
            ..Row::TOP
        };
        top_ports: usize = |raw| values::count(raw, 1000), Row {
            default: "10", value_name: "N",
            about: "Service ports per owner kept as their own `CLOSE_WAIT` series and alert groups, 0 to 1000; the owner's other ports are summed as `local_port=\"other\"`.",
            ..Row::TOP
        };
        max_alert_groups: usize = values::max_alert_groups, Row {
            default: "200", value_name: "N",
            about: "Alert groups per scan in /alerts and the Alertmanager push, 10 to 10000; past it the smallest fold into one `owner=\"other\"` group per reason.",
            ..Row::TOP
        };
        group_by: GroupBy = values::group_by, Row {
            default: "process", value_name: "WHAT",
            about: "How owners are grouped in the top-N and in alerts: process, cgroup or pod (Kubernetes `namespace/pod`; a connection in no pod by its process).",
            ..Row::TOP
        };
        alertmanager_url: Option<String> = values::alertmanager_url, Row {
            value_name: "URL",
            about: "Alertmanager base URL (http://HOST:PORT or https://HOST:PORT) to send alerts to; empty for none.",
            ..Row::TOP
        };
        alertmanager_ca_file: Option<PathBuf> = values::optional_path, Row {
            value_name: "FILE",
            about: "PEM file of the CA(s) that sign Alertmanager's certificate, instead of the built-in public roots (Prometheus's `tls_config.ca_file`).",
            ..Row::TOP
        };
        alertmanager_cert_file: Option<PathBuf> = values::optional_path, Row {
            value_name: "FILE",
            about: "PEM client certificate (chain) for Alertmanager's TLS client authentication (`tls_config.cert_file`); needs --alertmanager-key-file.",
            ..Row::TOP
        };
        alertmanager_key_file: Option<PathBuf> = values::optional_path, Row {
            value_name: "FILE",
            about: "PEM private key of --alertmanager-cert-file (`tls_config.key_file`).",
            ..Row::TOP
        };
        alertmanager_insecure_skip_verify: bool = values::boolean, Row {
            default: "false", value_name: "BOOL", style: Style::Switch,
            about: "Do not verify Alertmanager's certificate (`tls_config.insecure_skip_verify`; testing only).",
            ..Row::TOP
        };
        alertmanager_username: Option<String> = values::optional_text, Row {
            value_name: "USER",
            about: "Basic auth user for Alertmanager (`basic_auth.username`); needs --alertmanager-password-file.",
            ..Row::TOP
        };
        alertmanager_password_file: Option<PathBuf> = values::optional_path, Row {
            value_name: "FILE",
            about: "File holding the basic auth password, read at start, surrounding whitespace trimmed (`basic_auth.password_file`).",
            ..Row::TOP
        };
        alert_log_limit: usize = |raw| values::count(raw, 10_000), Row {
            default: "20", value_name: "N", style: Style::Number,
            about: "Suspect connections logged one per line per scan, 0 to 10000.",
            ..Row::TOP
        };
        probe: bool = values::boolean, Row {
            key: "enabled", flag: Flag::Named("probe"), default: "false", value_name: "BOOL",
            style: Style::Switch,
            about: "Keepalive probes (`[probe]`): make the kernel send keepalive probes on quiet connections without keepalive to prove their peer alive (`peer_alive`) or dead (`peer_dead`); the options are put back afterwards.",
            ..Row::PROBE
        };
        probe_after: Option<Duration> = values::probe_after, Row {
            key: "after", flag: Flag::Named("probe-after"), empty_default: "`idle_after`",
            value_name: "DURATION", style: Style::Hyphen,
            about: "Idle time (nothing from the peer) before a connection is probed.",
            ..Row::PROBE
        };
        probe_interval: Duration = values::probe_interval, Row {
            key: "interval", flag: Flag::Named("probe-interval"), default: "5s",
            value_name: "DURATION", style: Style::Hyphen,
            about: "Between keepalive probes of one connection, whole seconds, 1s to 1h.",
            ..Row::PROBE
        };
        probe_count: u32 = |raw| values::u32_between(raw, 1, 100), Row {
            key: "count", flag: Flag::Named("probe-count"), default: "14", value_name: "N",
            style: Style::Number,
            about: "Unanswered probes before `peer_dead`, 1 to 100 (the default 14 calls a live peer behind 30% loss each way dead less than once in 10,000 rounds).",
            ..Row::PROBE
        };
        web_config_file: Option<PathBuf> = values::optional_path, Row {
            flag: Flag::Named("web.config.file"), value_name: "FILE",
            about: "Web config file (the format of `node_exporter`): TLS (`tls_server_config`) and basic authentication (`basic_auth_users`, bcrypt hashes).",
            ..Row::TOP
        };
        web_max_connections: usize = values::max_connections, Row {
            flag: Flag::Named("web.max-connections"), default: "512", value_name: "N",
            about: "HTTP connections open at once; more are closed as soon as accepted (counted in `tcp_liveness_http_connections_refused_total`), 1 to 65536.",
            ..Row::TOP
        };
        web_max_connections_per_client: usize = values::max_connections, Row {
            flag: Flag::Named("web.max-connections-per-client"), default: "32", value_name: "N",
            about: "HTTP connections open at once from one client address (an IPv6 client's /64), so one client cannot take them all, 1 to 65536.",
            ..Row::TOP
        };
        runtime_dir: PathBuf = values::directory, Row {
            default: "/run/tcp-liveness", value_name: "DIR",
            about: "Directory of the agent's runtime state: the keepalive probe journal (`[probe]`), read at every start to put back the options of sockets a killed agent was probing. An absolute path; created when needed.",
            ..Row::TOP
        };
        containerd_socket: PathBuf = values::socket_path, Row {
            default: "/run/containerd/containerd.sock", value_name: "PATH",
            about: "containerd's API socket, asked for the pod, namespace and container names of connections in Kubernetes pods (the CRI labels); without it they show their pod UID only (`[kubernetes]`).",
            ..Row::KUBERNETES
        };
        runtime_endpoint: Option<PathBuf> = values::runtime_endpoint, Row {
            value_name: "ENDPOINT",
            about: "A CRI runtime's socket (CRI-O's `/run/crio/crio.sock`; a path or `unix:///path`), asked instead of containerd's API for the same names (`ContainerStatus`). Unset: containerd's socket, or CRI-O's when only CRI-O's exists (`[kubernetes]`).",
            ..Row::KUBERNETES
        };
        stacks: bool = values::boolean, Row {
            flag: Flag::Named("stacks"), default: "false", value_name: "BOOL",
            style: Style::Switch,
            about: "Record the user-space call stack of each connection's `connect()` or `accept()` (one `bpf_get_stackid` per connection, never per packet) and show the suspects' stacks, symbolized, in `/connections` and `check --stack` (`[forensics]`). Off, nothing is attached for it.",
            ..Row::FORENSICS
        };
    }
    file_only {
        probe_max_per_second: u32 = |raw| values::u32_between(raw, 1, 10_000), Row {
            key: "max_per_second", default: "20",
            ..Row::PROBE
        };
        probe_max_per_scan: u32 = |raw| values::u32_between(raw, 1, 4096), Row {
            key: "max_per_scan", default: "100",
            ..Row::PROBE
        };
        containerd_namespace: String = values::containerd_namespace, Row {
            default: "k8s.io",
            ..Row::KUBERNETES
        };
    }
}

/// The row of the setting whose [`RunArgs`] field (or file-only id) is `id`.
fn row(id: &str) -> &'static Row {
    CATALOGUE
        .iter()
        .find(|row| row.id == id)
        .expect("settings! makes a row for each id")
}

/// What [`pairs`] puts beside each key.
#[derive(Clone, Copy)]
enum Second {
    /// The default, for every row of the table.
    Default,
    /// The flag, for the rows with a flag of their own name.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "only the tests list the [probe] flags")
    )]
    NamedFlag,
}

/// `row`'s `(key, default)` or `(key, flag)` if it is a row of `table` that [`Second`] takes.
const fn pair(row: &Row, table: Table, second: Second) -> Option<(&'static str, &'static str)> {
    let in_table = matches!(
        (row.table, table),
        (Table::Top, Table::Top)
            | (Table::Probe, Table::Probe)
            | (Table::Kubernetes, Table::Kubernetes)
            | (Table::Forensics, Table::Forensics)
    );
    match (in_table, second, row.flag) {
        (true, Second::Default, _) => Some((row.key(), row.default)),
        (true, Second::NamedFlag, Flag::Named(flag)) => Some((row.key(), flag)),
        _ => None,
    }
}

/// How many pairs [`pairs`] makes.
const fn count(table: Table, second: Second) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < CATALOGUE.len() {
        if pair(&CATALOGUE[i], table, second).is_some() {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Every [`pair`] of `table`, in catalogue order; `N` is their [`count`].
const fn pairs<const N: usize>(table: Table, second: Second) -> [(&'static str, &'static str); N] {
    let mut out = [("", ""); N];
    let (mut i, mut n) = (0, 0);
    while i < CATALOGUE.len() {
        if let Some(pair) = pair(&CATALOGUE[i], table, second) {
            out[n] = pair;
            n += 1;
        }
        i += 1;
    }
    out
}

/// Every top-level setting with its default: also the top-level keys the file accepts (besides
/// `[probe]` and the `[[section]]`s).
pub(super) const SETTINGS: &[(&str, &str)] =
    &pairs::<{ count(Table::Top, Second::Default) }>(Table::Top, Second::Default);

/// Every `[probe]` key with its default; `after` empty means each connection's `idle_after`.
pub(super) const PROBE_SETTINGS: &[(&str, &str)] =
    &pairs::<{ count(Table::Probe, Second::Default) }>(Table::Probe, Second::Default);

/// Every `[kubernetes]` key with its default.
pub(super) const KUBERNETES_SETTINGS: &[(&str, &str)] =
    &pairs::<{ count(Table::Kubernetes, Second::Default) }>(Table::Kubernetes, Second::Default);

/// Every `[forensics]` key with its default.
pub(super) const FORENSICS_SETTINGS: &[(&str, &str)] =
    &pairs::<{ count(Table::Forensics, Second::Default) }>(Table::Forensics, Second::Default);

/// The `[probe]` keys that are also flags, with their flag: `enabled` is `--probe`, …
#[cfg(test)]
pub(super) const PROBE_FLAGS: &[(&str, &str)] =
    &pairs::<{ count(Table::Probe, Second::NamedFlag) }>(Table::Probe, Second::NamedFlag);

/// The flag (without `--`) that sets top-level config key `key` (error messages name the flag
/// from its row; the tests check the spellings by key).
#[cfg(test)]
pub(super) fn flag_name(key: &str) -> String {
    CATALOGUE
        .iter()
        .find(|row| row.table == Table::Top && row.key() == key)
        .and_then(Row::flag)
        .unwrap_or_else(|| key.replace('_', "-"))
}

#[cfg(test)]
mod tests;
