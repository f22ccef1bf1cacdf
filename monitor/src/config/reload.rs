//! What a config reload (SIGHUP) changes: the running and the reloaded [`RunConfig`] written
//! out key by key as the file spells them, and compared. Only the verdict policy (the four
//! thresholds, `[[override]]`, `[[ignore]]`, `[[path]]`, `path_timeout_share`) applies without a
//! restart; every other setting
//! shapes what was loaded, bound or started (the listen socket, the kernel table, the threads).

use std::{fmt::Write as _, time::Duration};

use super::RunConfig;
use crate::act::enforce::Enforce;
use crate::act::remediate::policy::RemediatePolicy;
use crate::verdict::{Matcher, Override, PathTimeout};

/// Settings a reload applies to the running agent: what the verdicts read.
pub(crate) const LIVE_KEYS: [&str; 8] = [
    "close_wait_after",
    "fin_wait2_after",
    "unresponsive_after",
    "idle_after",
    "path_timeout_share",
    "[[override]]",
    "[[ignore]]",
    "[[path]]",
];

/// One setting whose value differs, both values as text (`1m`, `[local_port=80: idle_after=2h]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The config file's key (`close_wait_after`), or `[[override]]` / `[[ignore]]`.
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

impl Change {
    /// Whether a reload applies it ([`LIVE_KEYS`]); the others need a restart.
    pub(crate) fn is_live(&self) -> bool {
        LIVE_KEYS.contains(&self.key)
    }
}

impl RunConfig {
    /// Every setting whose value differs in `new`, in the order of the file's keys.
    pub(crate) fn changes(&self, new: &Self) -> Vec<Change> {
        settings(self)
            .into_iter()
            .zip(settings(new))
            .filter(|((_, old), (_, new))| old != new)
            .map(|((key, old), (_, new))| Change { key, old, new })
            .collect()
    }
}

/// Every setting of `c`, named as in the file, as text.
fn settings(c: &RunConfig) -> Vec<(&'static str, String)> {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let t = &c.policy.defaults;
    let h = &c.alertmanager_http;
    let path = |p: Option<&std::path::Path>| p.map_or("none".into(), |p| p.display().to_string());
    vec![
        ("listen", c.listen.to_string()),
        ("scan_interval", d(c.scan_interval)),
        ("table_capacity", c.table_capacity.to_string()),
        (
            "allow_remote_connections",
            c.allow_remote_connections.to_string(),
        ),
        ("per_packet_hooks", c.per_packet_hooks.to_string()),
        ("log_format", c.log_format.as_str().into()),
        ("close_wait_after", d(t.close_wait_after)),
        ("fin_wait2_after", d(t.fin_wait2_after)),
        ("unresponsive_after", d(t.unresponsive_after)),
        ("idle_after", d(t.idle_after)),
        ("fd_exhaustion_horizon", d(c.fd_exhaustion_horizon)),
        (
            "path_timeout_share",
            c.policy.path_timeout_share.to_string(),
        ),
        ("top_n", c.top_n.to_string()),
        ("top_ports", c.top_ports.to_string()),
        ("max_alert_groups", c.max_alert_groups.to_string()),
        ("group_by", c.group_by.as_str().into()),
        (
            "alertmanager_url",
            c.alertmanager_url.as_deref().unwrap_or("none").into(),
        ),
        ("alertmanager_ca_file", path(h.ca_file.as_deref())),
        ("alertmanager_cert_file", path(h.cert_file.as_deref())),
        ("alertmanager_key_file", path(h.key_file.as_deref())),
        (
            "alertmanager_insecure_skip_verify",
            h.insecure_skip_verify.to_string(),
        ),
        (
            "alertmanager_username",
            h.basic_auth
                .as_ref()
                .map_or("none".into(), |a| a.username.clone()),
        ),
        (
            "alertmanager_password_file",
            path(h.basic_auth.as_ref().map(|a| a.password_file.as_path())),
        ),
        ("alert_log_limit", c.alert_log_limit.to_string()),
        ("web_config_file", path(c.web_config_file.as_deref())),
        ("web_max_connections", c.max_connections.to_string()),
        (
            "web_max_connections_per_client",
            c.max_connections_per_client.to_string(),
        ),
        ("runtime_dir", c.runtime_dir.display().to_string()),
        // Restart-only: the runtime's client is started with the agent.
        ("[kubernetes]", format!("{:?}", c.kubernetes)),
        // Restart-only: the stack programs are attached with the others.
        ("[forensics]", format!("stacks={}", c.stacks)),
        (
            "[[override]]",
            list(c.policy.overrides.iter().map(override_text)),
        ),
        ("[[ignore]]", list(c.policy.ignore.iter().map(matcher_text))),
        ("[[path]]", list(c.policy.paths.iter().map(path_text))),
        ("[probe]", format!("{:?}", c.probe)),
        (
            "[[remediate]]",
            list(c.remediate.iter().map(remediate_text)),
        ),
        // Restart-only: the kernel program's policies are set before it is attached.
        ("[[enforce]]", list(c.enforce.iter().map(enforce_text))),
    ]
}

/// `reason=peer_dead remote_port=6379 min_age=2m dry_run=true max_per_minute=10`: a restart
/// applies it (a policy that destroys needs `CAP_NET_ADMIN`, kept only when started with one).
fn remediate_text(p: &RemediatePolicy) -> String {
    let matcher = matcher_text(&p.matcher);
    let space = if matcher.is_empty() { "" } else { " " };
    format!(
        "reason={}{space}{matcher} min_age={} dry_run={} max_per_minute={}",
        p.reason.as_str(),
        humantime::format_duration(p.min_age),
        p.dry_run,
        p.max_per_minute
    )
}

/// `[a; b]`, `[]` for none.
fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join("; "))
}

/// `local_port=8080 process="nginx"`.
fn matcher_text(m: &Matcher) -> String {
    let mut text = String::new();
    let mut field = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            let space = if text.is_empty() { "" } else { " " };
            let _ = write!(text, "{space}{key}={value}");
        }
    };
    field("local_port", m.local_port.map(|p| p.to_string()));
    field("remote_port", m.remote_port.map(|p| p.to_string()));
    field("process", m.process.as_ref().map(|p| format!("{p:?}")));
    field("cgroup", m.cgroup.as_ref().map(|p| format!("{p:?}")));
    field(
        "pod_namespace",
        m.pod_namespace.as_ref().map(|p| format!("{p:?}")),
    );
    field(
        "pod_name_prefix",
        m.pod_name_prefix.as_ref().map(|p| format!("{p:?}")),
    );
    text
}

/// `payments: cgroup="/x" mode=fill keepalive=30s/10s/3 user_timeout=1m`.
fn enforce_text(p: &Enforce) -> String {
    let d =
        |d: Option<Duration>| d.map_or("-".into(), |d| humantime::format_duration(d).to_string());
    let mut text = format!(
        "{}: {} mode={}",
        p.name,
        matcher_text(&p.matcher),
        p.mode.as_str()
    );
    if let Some(ka) = p.keepalive {
        let count = ka.count.map_or("-".into(), |c| c.to_string());
        let _ = write!(text, " keepalive={}/{}/{count}", d(ka.idle), d(ka.interval));
    }
    if p.user_timeout.is_some() {
        let _ = write!(text, " user_timeout={}", d(p.user_timeout));
    }
    text
}

/// `aws-nlb=10.0.0.0/8 remote_port=443: idle_timeout=5m 50s`.
fn path_text(p: &PathTimeout) -> String {
    let ports = [("local_port", p.local_port), ("remote_port", p.remote_port)]
        .into_iter()
        .filter_map(|(key, port)| Some(format!(" {key}={}", port?)))
        .collect::<String>();
    format!(
        "{}={}{ports}: idle_timeout={}",
        p.name,
        p.remote,
        humantime::format_duration(p.idle_timeout)
    )
}

/// `local_port=8080: idle_after=2h close_wait_after=5m`.
fn override_text(o: &Override) -> String {
    let thresholds: Vec<String> = [
        ("close_wait_after", o.close_wait_after),
        ("fin_wait2_after", o.fin_wait2_after),
        ("unresponsive_after", o.unresponsive_after),
        ("idle_after", o.idle_after),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some(format!("{key}={}", humantime::format_duration(value?))))
    .chain(o.probe.map(|probe| format!("probe={probe}")))
    .collect();
    format!("{}: {}", matcher_text(&o.matcher), thresholds.join(" "))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{FileConfig, RunArgs, SETTINGS};

    fn config(text: &str) -> RunConfig {
        let file = FileConfig::parse(Path::new("/etc/x.toml"), text).expect("valid file");
        RunConfig::resolve(&RunArgs::default(), &file).expect("valid settings")
    }

    #[test]
    fn every_setting_is_compared() {
        let keys: Vec<&str> = settings(&config("")).iter().map(|(k, _)| *k).collect();
        let expected: Vec<&str> = SETTINGS
            .iter()
            .map(|(k, _)| *k)
            .chain([
                "[kubernetes]",
                "[forensics]",
                "[[override]]",
                "[[ignore]]",
                "[[path]]",
                "[probe]",
                "[[remediate]]",
                "[[enforce]]",
            ])
            .collect();
        assert_eq!(keys, expected);
    }

    /// A new `[[remediate]]` policy is named in full and needs a restart (a destroying one
    /// needs `CAP_NET_ADMIN`, which the running agent kept only if it started with one).
    #[test]
    fn remediation_changes_need_a_restart() {
        let old = config("");
        let new =
            config("[[remediate]]\nreason = \"peer_dead\"\nremote_port = 6379\nmin_age = \"2m\"\n");
        let changes = old.changes(&new);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].key, "[[remediate]]");
        assert_eq!(
            changes[0].new,
            "[reason=peer_dead remote_port=6379 min_age=2m dry_run=true max_per_minute=10]"
        );
        assert!(!changes[0].is_live());
    }

    #[test]
    fn no_change_no_lines() {
        let text = "idle_after = \"1h\"\n[[ignore]]\nprocess = \"sshd\"\n";
        assert_eq!(config(text).changes(&config(text)), []);
    }

    #[test]
    fn changes_name_the_key_and_both_values() {
        let old = config(
            r#"
            close_wait_after = "1h"
            top_n = 5
            [[override]]
            local_port = 8080
            idle_after = "2h"
            "#,
        );
        let new = config(
            r#"
            close_wait_after = "90s"
            top_n = 7
            listen = "127.0.0.1:9000"
            [[override]]
            local_port = 8080
            idle_after = "2h"
            [[override]]
            process = "nginx"
            remote_port = 5432
            close_wait_after = "5m"
            unresponsive_after = "30s"
            [[ignore]]
            process = "sshd"
            "#,
        );
        let change = |key, old: &str, new: &str| Change {
            key,
            old: old.into(),
            new: new.into(),
        };
        assert_eq!(
            old.changes(&new),
            [
                change("listen", "0.0.0.0:9977", "127.0.0.1:9000"),
                change("close_wait_after", "1h", "1m 30s"),
                change("top_n", "5", "7"),
                change(
                    "[[override]]",
                    "[local_port=8080: idle_after=2h]",
                    r#"[local_port=8080: idle_after=2h; remote_port=5432 process="nginx": close_wait_after=5m unresponsive_after=30s]"#
                ),
                change("[[ignore]]", "[]", r#"[process="sshd"]"#),
            ]
        );
        let live: Vec<_> = old
            .changes(&new)
            .into_iter()
            .filter(Change::is_live)
            .map(|c| c.key)
            .collect();
        assert_eq!(live, ["close_wait_after", "[[override]]", "[[ignore]]"]);
    }
}
