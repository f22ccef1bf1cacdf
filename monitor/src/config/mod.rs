//! Agent settings: flags ([`RunArgs`]) over a TOML file ([`FileConfig`]) over built-in defaults,
//! validated into one [`RunConfig`] before anything touches the kernel.
//!
//! Every problem is a [`ConfigError`]: one line naming the flag or the file and key. The binary
//! exits 2 on it, as clap does for a bad command line. deploy/tcp-liveness.toml documents keys.

mod args;
mod enforce;
mod file;
mod probe;
mod reload;
mod remediate;
mod values;

#[cfg(test)]
mod tests;

use std::{
    fmt::Display,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub(crate) use args::RunArgs;
pub(crate) use file::FileConfig;
use values::Raw;

use crate::{
    act::{enforce::Enforce, probe::ProbeSettings, remediate::policy::RemediatePolicy},
    alerting::{BasicAuth, HttpConfig},
    export::http::web_config::WebConfig,
    model::Grouping,
    verdict::{Policy, Thresholds},
};

/// Every top-level setting with its default, written as a flag value and parsed as one.
/// This list is also the set of keys the file accepts (besides `[[override]]`, `[[ignore]]` and
/// `[[enforce]]`).
const SETTINGS: &[(&str, &str)] = &[
    ("listen", "0.0.0.0:9977"),
    ("scan_interval", "5s"),
    ("table_capacity", "262144"),
    ("allow_remote_connections", "false"),
    ("log_format", "text"),
    ("close_wait_after", "60s"),
    ("fin_wait2_after", "120s"),
    ("unresponsive_after", "10s"),
    ("idle_after", "15m"),
    ("top_n", "20"),
    ("top_ports", "10"),
    ("max_alert_groups", "200"),
    ("group_by", "process"),
    ("alertmanager_url", ""),
    ("alertmanager_ca_file", ""),
    ("alertmanager_cert_file", ""),
    ("alertmanager_key_file", ""),
    ("alertmanager_insecure_skip_verify", "false"),
    ("alertmanager_username", ""),
    ("alertmanager_password_file", ""),
    ("alert_log_limit", "20"),
    ("web_config_file", ""),
    ("web_max_connections", "512"),
    ("web_max_connections_per_client", "32"),
];

/// Flags spelled otherwise than their key with `-` for `_`: the `--web.*` names of `node_exporter`.
const FLAG_NAMES: &[(&str, &str)] = &[
    ("web_config_file", "web.config.file"),
    ("web_max_connections", "web.max-connections"),
    (
        "web_max_connections_per_client",
        "web.max-connections-per-client",
    ),
];

/// The flag (without `--`) that sets config key `key`.
pub(crate) fn flag_name(key: &str) -> String {
    FLAG_NAMES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or_else(|| key.replace('_', "-"), |(_, flag)| (*flag).to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How connection owners are grouped for the `CLOSE_WAIT` top-N and for alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Process,
    /// cgroup v2 path: one group per container or systemd unit.
    Cgroup,
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
    pub log_format: LogFormat,
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
}

/// A setting that cannot be used. Its `Display` (with the cause, for [`ConfigError::Read`]) is
/// one line naming the flag, or the file and key: `--flag: problem`, `config FILE: key: problem`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value (`key` in its config-file spelling).
    #[error("--{flag}: {problem}", flag = flag_name(key))]
    Flag { key: String, problem: String },
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
    fn flag(key: &str, problem: impl Display) -> Self {
        Self::Flag {
            key: key.to_owned(),
            problem: problem.to_string(),
        }
    }

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
        let get = Resolver { file };
        let defaults = Thresholds {
            close_wait_after: get.value(
                "close_wait_after",
                args.close_wait_after.as_deref(),
                values::threshold,
            )?,
            fin_wait2_after: get.value(
                "fin_wait2_after",
                args.fin_wait2_after.as_deref(),
                values::threshold,
            )?,
            unresponsive_after: get.value(
                "unresponsive_after",
                args.unresponsive_after.as_deref(),
                values::threshold,
            )?,
            idle_after: get.value("idle_after", args.idle_after.as_deref(), values::threshold)?,
        };
        Ok(Self {
            listen: get.value("listen", args.listen.as_deref(), values::listen)?,
            scan_interval: get.value(
                "scan_interval",
                args.scan_interval.as_deref(),
                values::scan_interval,
            )?,
            table_capacity: get.value(
                "table_capacity",
                args.table_capacity.as_deref(),
                values::table_capacity,
            )?,
            allow_remote_connections: get.value(
                "allow_remote_connections",
                args.allow_remote_connections.as_deref(),
                values::boolean,
            )?,
            log_format: get.value("log_format", args.log_format.as_deref(), values::log_format)?,
            top_n: get.value("top_n", args.top_n.as_deref(), |raw| {
                values::count(raw, 1000)
            })?,
            top_ports: get.value("top_ports", args.top_ports.as_deref(), |raw| {
                values::count(raw, 1000)
            })?,
            max_alert_groups: get.value(
                "max_alert_groups",
                args.max_alert_groups.as_deref(),
                values::max_alert_groups,
            )?,
            group_by: get.value("group_by", args.group_by.as_deref(), values::group_by)?,
            alertmanager_url: get.value(
                "alertmanager_url",
                args.alertmanager_url.as_deref(),
                values::alertmanager_url,
            )?,
            alertmanager_http: alertmanager_http(&get, args)?,
            alert_log_limit: get.value(
                "alert_log_limit",
                args.alert_log_limit.as_deref(),
                |raw| values::count(raw, 10_000),
            )?,
            web_config_file: get.value(
                "web_config_file",
                args.web_config_file.as_deref(),
                values::optional_path,
            )?,
            web: WebConfig::default(),
            max_connections: get.value(
                "web_max_connections",
                args.web_max_connections.as_deref(),
                values::max_connections,
            )?,
            max_connections_per_client: get.value(
                "web_max_connections_per_client",
                args.web_max_connections_per_client.as_deref(),
                values::max_connections,
            )?,
            policy: Policy {
                defaults,
                overrides: file.overrides.clone(),
                ignore: file.ignore.clone(),
            },
            probe: probe::resolve(args, file)?,
            remediate: file.remediate.clone(),
            enforce: file.enforce.clone(),
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
            by_cgroup: self.group_by == GroupBy::Cgroup,
        }
    }
}

/// The `alertmanager_*` settings of Prometheus's `http_config`, checked to go together: a client
/// certificate needs its key, a password file needs a username and the other way round.
fn alertmanager_http(get: &Resolver<'_>, args: &RunArgs) -> Result<HttpConfig, ConfigError> {
    let path = |key, flag: &Option<String>| get.value(key, flag.as_deref(), values::optional_path);
    let config = HttpConfig {
        ca_file: path("alertmanager_ca_file", &args.alertmanager_ca_file)?,
        cert_file: path("alertmanager_cert_file", &args.alertmanager_cert_file)?,
        key_file: path("alertmanager_key_file", &args.alertmanager_key_file)?,
        insecure_skip_verify: get.value(
            "alertmanager_insecure_skip_verify",
            args.alertmanager_insecure_skip_verify.as_deref(),
            values::boolean,
        )?,
        basic_auth: None,
    };
    let username = get.value(
        "alertmanager_username",
        args.alertmanager_username.as_deref(),
        values::optional_text,
    )?;
    let password_file = path(
        "alertmanager_password_file",
        &args.alertmanager_password_file,
    )?;
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

struct Resolver<'a> {
    file: &'a FileConfig,
}

impl Resolver<'_> {
    /// The flag if given, else the file's value, else the default. A bad file value is an error
    /// even when a flag replaces it: the file is what gets deployed, it should not hide mistakes.
    fn value<T>(
        &self,
        key: &str,
        flag: Option<&str>,
        parse: impl Fn(Raw<'_>) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let from_file = match self.file.get(key) {
            Some(value) => Some(parse(Raw::Toml(value)).map_err(|p| self.file.error(key, &p))?),
            None => None,
        };
        if let Some(text) = flag {
            return parse(Raw::Text(text)).map_err(|p| ConfigError::flag(key, p));
        }
        if let Some(value) = from_file {
            return Ok(value);
        }
        let default = SETTINGS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, d)| d);
        parse(Raw::Text(default)).map_err(|problem| ConfigError::Default {
            key: key.to_owned(),
            problem,
        })
    }
}
