//! Agent settings: flags ([`RunArgs`]) over a TOML file ([`FileConfig`]) over built-in defaults,
//! validated into one [`RunConfig`] before anything touches the kernel.
//!
//! Every problem is a [`ConfigError`]: one line naming the flag or the file and key. The binary
//! exits 2 on it, as clap does for a bad command line. deploy/tcp-liveness.toml documents keys.
//!
//! Each setting is one row of `catalogue.rs` (key, flag, default, parser, help); `setting.rs`
//! says what a row is and resolves one, `args.rs` makes the command line from the rows,
//! `file.rs` reads the file with the section helpers of `toml_table.rs`.

mod args;
mod catalogue;
mod enforce;
mod file;
mod path;
mod probe;
mod reload;
mod remediate;
mod setting;
mod toml_table;
mod values;

#[cfg(test)]
mod example_tests;
#[cfg(test)]
mod forensics_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod kubernetes_tests;
#[cfg(test)]
mod override_tests;
#[cfg(test)]
mod tests;

use std::{
    fmt::Display,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use catalogue::Resolver;
pub(crate) use catalogue::RunArgs;
#[cfg(test)]
use catalogue::{SETTINGS, flag_name};
pub(crate) use file::FileConfig;
pub use remediate::{DEFAULT_MIN_AGE, DEFAULT_MIN_RETRANSMITS};

use crate::{
    act::{enforce::Enforce, probe::ProbeSettings, remediate::policy::RemediatePolicy},
    alerting::{BasicAuth, HttpConfig},
    export::http::web_config::WebConfig,
    model::{GroupBy, Grouping},
    verdict::{Policy, Thresholds},
};

/// How log lines are written (`log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The config value: `text` or `json`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// The validated settings of `tcp-liveness run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Address for /metrics, /connections and /healthz.
    pub listen: SocketAddr,
    /// How often the kernel table is read into the snapshot.
    pub scan_interval: Duration,
    /// Maximum number of sockets tracked in the kernel.
    pub table_capacity: u32,
    /// Serve /connections to non-loopback clients too.
    pub allow_remote_connections: bool,
    /// Attach the per-packet and per-send/receive hooks (off: nothing runs on the packet path).
    pub per_packet_hooks: bool,
    pub log_format: LogFormat,
    /// A process predicted to run out of descriptors within it is alerted on.
    pub fd_exhaustion_horizon: Duration,
    /// `CLOSE_WAIT` owners exported as metric series.
    pub top_n: usize,
    /// Service ports per owner kept as their own series and alert groups.
    pub top_ports: usize,
    /// Alert groups listed per scan, the folded ones included.
    pub max_alert_groups: usize,
    pub group_by: GroupBy,
    /// Alertmanager base URL (http or https), when alerts are sent.
    pub alertmanager_url: Option<String>,
    /// How to reach it: CA, client certificate, basic auth (Prometheus's `http_config`).
    pub alertmanager_http: HttpConfig,
    /// Suspect connections logged individually per scan.
    pub alert_log_limit: usize,
    /// The web config file (`--web.config.file`): TLS and basic authentication.
    pub web_config_file: Option<PathBuf>,
    /// What the web config file says, read by [`load`] (default, plain HTTP, from
    /// [`RunConfig::resolve`], which does no I/O).
    pub(crate) web: WebConfig,
    /// HTTP connections open at once, in all.
    pub max_connections: usize,
    /// HTTP connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Thresholds, overrides and ignore list.
    pub policy: Policy,
    /// `[probe]`: keepalive probes of quiet connections (off unless enabled).
    pub probe: ProbeSettings,
    /// `[[remediate]]` policies (file only; applied at start, a reload needs a restart).
    pub remediate: Vec<RemediatePolicy>,
    /// `[[enforce]]` policies in file order (first match wins); empty: nothing is enforced.
    pub enforce: Vec<Enforce>,
    /// The agent's runtime state directory (`runtime_dir`, absolute): the probe journal.
    pub runtime_dir: PathBuf,
    /// `[kubernetes]`: where pod names come from.
    pub kubernetes: KubernetesSettings,
    /// `[forensics] stacks` (`--stacks`): record each connection's opening call stack and show
    /// the suspects' (restart-only: the programs are attached at start).
    pub stacks: bool,
}

/// `[kubernetes]`: where pod names come from (defined with the runtimes it chooses between).
pub use crate::kubernetes::runtime::KubernetesSettings;

/// A setting that cannot be used. Its `Display` (with the cause, for [`ConfigError::Read`]) is
/// one line naming the flag, or the file and key: `--flag: problem`, `config FILE: key: problem`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value (`flag` without `--`).
    #[error("--{flag}: {problem}")]
    Flag { flag: String, problem: String },
    /// The config file cannot be read.
    #[error("config {}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file's syntax, structure, or one of its values (`problem` names the key).
    #[error("config {}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// Settings that are each valid but do not go together (the message names them).
    #[error("{problem}")]
    Combination { problem: String },
    /// A file a setting names cannot be used (the message names the setting and the file).
    #[error("{problem}")]
    Unusable { problem: String },
    /// The web config file (`--web.config.file`) cannot be read, or says something unusable.
    #[error("web config {}: {problem}", path.display())]
    WebConfig { path: PathBuf, problem: String },
    /// A built-in default that does not parse (a programming error, caught by the unit tests).
    #[error("built-in default of {key}: {problem}")]
    Default { key: String, problem: String },
}

impl ConfigError {
    fn in_file(path: &Path, problem: impl Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}

/// Reads the `--config` file if given, then [`RunConfig::resolve`]s, then reads the web config
/// file if one is set (and the certificates it names). Touches nothing else, so it is safe to
/// call before loading any probe.
///
/// # Errors
/// A file cannot be read or parsed, or a flag, key or value is unusable: a [`ConfigError`]
/// naming it.
pub fn load(args: &RunArgs) -> Result<RunConfig, ConfigError> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let mut config = RunConfig::resolve(args, &file)?;
    // The CA, client certificate and password files are read now, so a missing or bad one stops
    // the agent here (exit 2) rather than failing every push.
    if config.alertmanager_url.is_some() {
        config
            .alertmanager_http
            .load()
            .map_err(|error| ConfigError::Unusable {
                problem: crate::model::format::error_chain(&error),
            })?;
    }
    if config.enforce.iter().any(|p| p.matcher.cgroup.is_some()) {
        let root = crate::bpf::cgroup::v2_root().map_err(|error| ConfigError::Unusable {
            problem: format!("[[enforce]] cgroup: no cgroup v2 hierarchy mounted ({error})"),
        })?;
        enforce::check_cgroups(&config.enforce, &root)?;
    }
    if let Some(path) = &config.web_config_file {
        config.web = WebConfig::load(path).map_err(|problem| ConfigError::WebConfig {
            path: path.clone(),
            problem,
        })?;
    }
    Ok(config)
}

impl RunConfig {
    /// Flags over file over defaults. Pure: no I/O.
    ///
    /// # Errors
    /// A flag or file value that does not parse, named in the [`ConfigError`].
    pub fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let get = file.resolver(args);
        let path_timeout_share = get.path_timeout_share()?;
        let defaults = Thresholds {
            close_wait_after: get.close_wait_after()?,
            fin_wait2_after: get.fin_wait2_after()?,
            unresponsive_after: get.unresponsive_after()?,
            idle_after: get.idle_after()?,
        };
        Ok(Self {
            listen: get.listen()?,
            scan_interval: get.scan_interval()?,
            table_capacity: get.table_capacity()?,
            allow_remote_connections: get.allow_remote_connections()?,
            per_packet_hooks: get.per_packet_hooks()?,
            log_format: get.log_format()?,
            fd_exhaustion_horizon: get.fd_exhaustion_horizon()?,
            top_n: get.top_n()?,
            top_ports: get.top_ports()?,
            max_alert_groups: get.max_alert_groups()?,
            group_by: get.group_by()?,
            alertmanager_url: get.alertmanager_url()?,
            alertmanager_http: alertmanager_http(&get)?,
            alert_log_limit: get.alert_log_limit()?,
            web_config_file: get.web_config_file()?,
            web: WebConfig::default(),
            max_connections: get.web_max_connections()?,
            max_connections_per_client: get.web_max_connections_per_client()?,
            policy: Policy {
                defaults,
                overrides: file.overrides.clone(),
                ignore: file.ignore.clone(),
                paths: path::apply_share(&file.paths, path_timeout_share),
                path_timeout_share,
            },
            probe: probe::resolve(args, file)?,
            remediate: file.remediate.clone(),
            enforce: file.enforce.clone(),
            runtime_dir: get.runtime_dir()?,
            kubernetes: KubernetesSettings {
                containerd_socket: get.containerd_socket()?,
                containerd_namespace: get.containerd_namespace()?,
                runtime_endpoint: get.runtime_endpoint()?,
            },
            stacks: get.stacks()?,
        })
    }
}

impl RunConfig {
    /// The owner grouping and caps of the `CLOSE_WAIT` metrics and the alert groups.
    #[must_use]
    pub fn grouping(&self) -> Grouping {
        Grouping {
            top_n: self.top_n,
            top_ports: self.top_ports,
            max_alert_groups: self.max_alert_groups,
            group_by: self.group_by,
        }
    }
}

/// The `alertmanager_*` settings of Prometheus's `http_config`, checked to go together: a client
/// certificate needs its key, a password file needs a username and the other way round.
fn alertmanager_http(get: &Resolver<'_>) -> Result<HttpConfig, ConfigError> {
    let config = HttpConfig {
        ca_file: get.alertmanager_ca_file()?,
        cert_file: get.alertmanager_cert_file()?,
        key_file: get.alertmanager_key_file()?,
        insecure_skip_verify: get.alertmanager_insecure_skip_verify()?,
        basic_auth: None,
    };
    let username = get.alertmanager_username()?;
    let password_file = get.alertmanager_password_file()?;
    let pair = |a: &str, b: &str, why: &str| {
        Err(ConfigError::Combination {
            problem: format!("{a} is set without {b} ({why})"),
        })
    };
    let client_cert = "a client certificate needs its key";
    let basic_auth = "basic auth needs both";
    let basic_auth = match (username, password_file) {
        (Some(username), Some(password_file)) => Some(BasicAuth {
            username,
            password_file,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return pair(
                "alertmanager_username",
                "alertmanager_password_file",
                basic_auth,
            );
        }
        (None, Some(_)) => {
            return pair(
                "alertmanager_password_file",
                "alertmanager_username",
                basic_auth,
            );
        }
    };
    match (&config.cert_file, &config.key_file) {
        (Some(_), None) => pair(
            "alertmanager_cert_file",
            "alertmanager_key_file",
            client_cert,
        ),
        (None, Some(_)) => pair(
            "alertmanager_key_file",
            "alertmanager_cert_file",
            client_cert,
        ),
        _ => Ok(HttpConfig {
            basic_auth,
            ..config
        }),
    }
}
