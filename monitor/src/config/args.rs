//! `tcp-liveness run` flags. Every setting is also a config file key (`--close-wait-after` is
//! `close_wait_after`). Values stay text here: `resolve` parses flags and file values with the
//! same code, and `None` means "not given", so the file and then the default apply.
//! The "[default: …]" in each help text is checked against `SETTINGS` by a unit test.
//! Durations and counts take a leading `-` as their value, so `--scan-interval -5s` is our
//! "negative duration" error naming the flag, not clap's "unexpected argument '-5'".

use std::path::PathBuf;

use clap::Args;

#[derive(Clone, Debug, Default, Args)]
pub struct RunArgs {
    /// TOML config file (keys as the flags, in `snake_case`); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address for /metrics, /connections and /healthz. [default: 0.0.0.0:9977]
    #[arg(long, value_name = "ADDR", env = "TCP_LIVENESS_LISTEN")]
    pub listen: Option<String>,

    /// How often the kernel table is read, 100ms to 1h. [default: 5s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub scan_interval: Option<String>,

    /// Sockets tracked in the kernel (about 280 bytes each); inserts beyond it are counted
    /// (`tcp_liveness_table_insert_failures_total`). [default: 262144]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub table_capacity: Option<String>,

    /// Serve /connections (addresses, processes) to non-loopback clients too. [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_remote_connections: Option<String>,

    /// Log line format: text or json. [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Report a socket in `CLOSE_WAIT` this long (the application never closed it). [default: 60s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub close_wait_after: Option<String>,

    /// Report a held socket in `FIN_WAIT2` this long (the peer never closed). [default: 120s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub fin_wait2_after: Option<String>,

    /// Report a connection retransmitting with no reply from the peer this long. [default: 10s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub unresponsive_after: Option<String>,

    /// Report a connection idle this long with no keepalive or user timeout. [default: 15m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub idle_after: Option<String>,

    /// Largest `CLOSE_WAIT` owners exported as metric series, 0 to 1000. [default: 20]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub top_n: Option<String>,

    /// Service ports per owner kept as their own `CLOSE_WAIT` series and alert groups, 0 to
    /// 1000; the owner's other ports are summed as `local_port="other"`. [default: 10]
    #[arg(long, value_name = "N")]
    pub top_ports: Option<String>,

    /// Alert groups per scan in /alerts and the Alertmanager push, 10 to 10000; past it the
    /// smallest fold into one `owner="other"` group per reason. [default: 200]
    #[arg(long, value_name = "N")]
    pub max_alert_groups: Option<String>,

    /// How owners are grouped in the top-N and in alerts: process or cgroup. [default: process]
    #[arg(long, value_name = "WHAT")]
    pub group_by: Option<String>,

    /// Alertmanager base URL (http://HOST:PORT or https://HOST:PORT) to send alerts to; empty
    /// for none. [default: none]
    #[arg(long, value_name = "URL")]
    pub alertmanager_url: Option<String>,

    /// PEM file of the CA(s) that sign Alertmanager's certificate, instead of the built-in
    /// public roots (Prometheus's `tls_config.ca_file`). [default: none]
    #[arg(long, value_name = "FILE")]
    pub alertmanager_ca_file: Option<String>,

    /// PEM client certificate (chain) for Alertmanager's TLS client authentication
    /// (`tls_config.cert_file`); needs --alertmanager-key-file. [default: none]
    #[arg(long, value_name = "FILE")]
    pub alertmanager_cert_file: Option<String>,

    /// PEM private key of --alertmanager-cert-file (`tls_config.key_file`). [default: none]
    #[arg(long, value_name = "FILE")]
    pub alertmanager_key_file: Option<String>,

    /// Do not verify Alertmanager's certificate (`tls_config.insecure_skip_verify`; testing
    /// only). [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub alertmanager_insecure_skip_verify: Option<String>,

    /// Basic auth user for Alertmanager (`basic_auth.username`); needs
    /// --alertmanager-password-file. [default: none]
    #[arg(long, value_name = "USER")]
    pub alertmanager_username: Option<String>,

    /// File holding the basic auth password, read at start, surrounding whitespace trimmed
    /// (`basic_auth.password_file`). [default: none]
    #[arg(long, value_name = "FILE")]
    pub alertmanager_password_file: Option<String>,

    /// Suspect connections logged one per line per scan, 0 to 10000. [default: 20]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub alert_log_limit: Option<String>,

    /// Keepalive probes (`[probe]`): make the kernel send keepalive probes on quiet connections
    /// without keepalive to prove their peer alive (`peer_alive`) or dead (`peer_dead`); the
    /// options are put back afterwards. [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub probe: Option<String>,

    /// Idle time (nothing from the peer) before a connection is probed. [default: `idle_after`]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub probe_after: Option<String>,

    /// Between keepalive probes of one connection, whole seconds, 1s to 1h. [default: 5s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub probe_interval: Option<String>,

    /// Unanswered probes before `peer_dead`, 1 to 100. [default: 3]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub probe_count: Option<String>,

    /// Web config file (the format of `node_exporter`): TLS (`tls_server_config`) and basic
    /// authentication (`basic_auth_users`, bcrypt hashes). [default: none]
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<String>,

    /// HTTP connections open at once; more are closed as soon as accepted (counted in
    /// `tcp_liveness_http_connections_refused_total`), 1 to 65536. [default: 512]
    #[arg(long = "web.max-connections", value_name = "N")]
    pub web_max_connections: Option<String>,

    /// HTTP connections open at once from one client address (an IPv6 client's /64), so one
    /// client cannot take them all, 1 to 65536. [default: 32]
    #[arg(long = "web.max-connections-per-client", value_name = "N")]
    pub web_max_connections_per_client: Option<String>,
}
