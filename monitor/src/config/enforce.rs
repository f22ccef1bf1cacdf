//! `[[enforce]]` sections: parsed from the file only (a list has no flag), checked
//! for what can be checked without I/O; [`check_cgroups`] checks, at load, that no named cgroup
//! is something else than a cgroup under the cgroup v2 mount. A cgroup that does not exist is
//! not an error: its policy waits for it (`act::enforce::PolicyCgroups`).

use std::{path::Path, sync::Arc, time::Duration};

use monitor_common::enforce::ENFORCE_SLOTS;

use super::{
    ConfigError,
    toml_table::{MATCHER_KEYS, check_keys, field, matcher},
    values::{self, Raw},
};
use crate::{
    act::enforce::{Enforce, EnforceMode, KeepaliveTimers},
    verdict::Matcher,
};

const POLICY_KEYS: [&str; 4] = ["name", "keepalive", "user_timeout", "mode"];
const KEEPALIVE_KEYS: [&str; 3] = ["idle", "interval", "count"];

/// One `[[enforce]]` table.
pub(super) fn entry(table: &toml::Table) -> Result<Enforce, String> {
    check_keys(table, &[&MATCHER_KEYS[..], &POLICY_KEYS[..]].concat())?;
    let name = field(table, "name", name)?
        .ok_or("name is missing (it names the policy in /connections and metrics)")?;
    let matcher = matcher(table)?;
    // Without a matcher it would change every connection of the host: say so with cgroup = "/".
    if matcher == Matcher::default() {
        return Err(format!(
            "{name}: enforce needs cgroup, local_port, remote_port or process (cgroup = \"/\" for every connection)"
        ));
    }
    let keepalive = table
        .get("keepalive")
        .map(keepalive)
        .transpose()
        .map_err(|p| format!("keepalive: {p}"))?;
    let user_timeout = field(table, "user_timeout", user_timeout)?;
    if keepalive.is_none() && user_timeout.is_none() {
        return Err(format!("{name}: sets neither keepalive nor user_timeout"));
    }
    Ok(Enforce {
        name,
        matcher,
        keepalive,
        user_timeout,
        mode: field(table, "mode", mode)?.unwrap_or_default(),
    })
}

/// The list as a whole: names unique (they are label values), at most [`ENFORCE_SLOTS`].
pub(super) fn check_list(policies: Vec<Enforce>) -> Result<Vec<Enforce>, String> {
    if policies.len() > ENFORCE_SLOTS as usize {
        return Err(format!(
            "enforce: {} policies, at most {ENFORCE_SLOTS}",
            policies.len()
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        if policies[..i].iter().any(|q| q.name == p.name) {
            return Err(format!(
                "[[enforce]] #{}: name {:?} is used twice",
                i + 1,
                &*p.name
            ));
        }
    }
    Ok(policies)
}

/// Checks that every `[[enforce]]` cgroup under `root` (the cgroup v2 mount) is a cgroup
/// directory or does not exist yet (a stopped service: its policy waits for it).
///
/// # Errors
/// [`ConfigError::Unusable`] naming the policy and the path: it names a file, or cannot be read.
pub(super) fn check_cgroups(policies: &[Enforce], root: &Path) -> Result<(), ConfigError> {
    for p in policies {
        let Some(cgroup) = &p.matcher.cgroup else {
            continue;
        };
        match crate::bpf::cgroup::id(root, cgroup) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                let dir = root.join(cgroup.trim_start_matches('/'));
                return Err(ConfigError::Unusable {
                    problem: format!(
                        "[[enforce]] {}: cgroup: {cgroup:?} is not a cgroup ({}: {error})",
                        &*p.name,
                        dir.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A policy or path name: a metric label value, so short and plain.
pub(super) fn name(raw: Raw<'_>) -> Result<Arc<str>, String> {
    let name = values::string(raw)?;
    let fits = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !fits {
        return Err(format!(
            "{name:?}: 1 to 64 of A-Z a-z 0-9 - _ . (it is a metric label value)"
        ));
    }
    Ok(name.into())
}

fn mode(raw: Raw<'_>) -> Result<EnforceMode, String> {
    match values::string(raw)? {
        "fill" => Ok(EnforceMode::Fill),
        "override" => Ok(EnforceMode::Override),
        other => Err(format!("expected \"fill\" or \"override\", got {other:?}")),
    }
}

/// `TCP_KEEPIDLE` / `TCP_KEEPINTVL`: whole seconds, 1 s to 32767 s (the kernel's range).
fn keepalive_seconds(raw: Raw<'_>) -> Result<Duration, String> {
    values::whole_seconds(raw, Duration::from_secs(32_767), "1s and 32767s", |d| {
        format!("{d}: the kernel counts keepalive timers in whole seconds")
    })
}

/// `TCP_USER_TIMEOUT`: milliseconds, 1 ms to `i32::MAX` ms (about 24 days).
fn user_timeout(raw: Raw<'_>) -> Result<Duration, String> {
    values::duration_between(
        raw,
        Duration::from_millis(1),
        Duration::from_millis(i32::MAX as u64),
        "1ms and 24 days",
    )
}

fn keepalive(value: &toml::Value) -> Result<KeepaliveTimers, String> {
    let toml::Value::Table(table) = value else {
        return Err(
            "expected a table such as { idle = \"30s\", interval = \"10s\", count = 3 }".into(),
        );
    };
    check_keys(table, &KEEPALIVE_KEYS)?;
    Ok(KeepaliveTimers {
        idle: field(table, "idle", keepalive_seconds)?,
        interval: field(table, "interval", keepalive_seconds)?,
        count: field(table, "count", |raw| {
            values::integer_between(raw, 1, 127).map(|n| u32::try_from(n).unwrap_or(1))
        })?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::FileConfig;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(Path::new("t.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_policy_parses() {
        let file = parse(
            r#"
[[enforce]]
name = "payments-keepalive"
cgroup = "/system.slice/payments.service/"
keepalive = { idle = "30s", interval = "10s", count = 3 }
user_timeout = "60s"
mode = "override"
"#,
        )
        .expect("parses");
        let p = &file.enforce[0];
        assert_eq!(&*p.name, "payments-keepalive");
        assert_eq!(
            p.matcher.cgroup.as_deref(),
            Some("/system.slice/payments.service")
        );
        assert_eq!(p.mode, crate::act::enforce::EnforceMode::Override);
        assert_eq!(p.request().want.keepcnt, 3);
    }

    #[test]
    fn mistakes_are_one_line_naming_the_key() {
        let cases = [
            (
                "[[enforce]]\nname = \"a\"\nlocal_port = 80\nuser_timeout = \"1s\"\nmode = \"always\"",
                "config t.toml: [[enforce]] #1: mode: expected \"fill\" or \"override\", got \"always\"",
            ),
            (
                "[[enforce]]\nname = \"a\"\nlocal_port = 80\nkeepalive = { idle = \"soon\" }",
                "config t.toml: [[enforce]] #1: keepalive: idle: invalid duration \"soon\" (examples: 30s, 15m)",
            ),
            (
                "[[enforce]]\nname = \"a\"\nlocal_port = 80\nkeepalive = { idle = \"1500ms\" }",
                "config t.toml: [[enforce]] #1: keepalive: idle: 1s 500ms: the kernel counts keepalive timers in whole seconds",
            ),
            (
                "[[enforce]]\nname = \"a\"\ncgroup = \"system.slice\"\nuser_timeout = \"1s\"",
                "config t.toml: [[enforce]] #1: cgroup: \"system.slice\" is not a cgroup v2 path (absolute, as in /proc/PID/cgroup: \"/system.slice/x.service\")",
            ),
            (
                "[[enforce]]\nname = \"a\"\nlocal_port = 80",
                "config t.toml: [[enforce]] #1: a: sets neither keepalive nor user_timeout",
            ),
            (
                "[[enforce]]\nname = \"a\"\nuser_timeout = \"1s\"",
                "config t.toml: [[enforce]] #1: a: enforce needs cgroup, local_port, remote_port or process (cgroup = \"/\" for every connection)",
            ),
            (
                "[[enforce]]\nname = \"a\"\nlocal_port = 1\nuser_timeout = \"1s\"\n[[enforce]]\nname = \"a\"\nlocal_port = 2\nuser_timeout = \"1s\"",
                "config t.toml: [[enforce]] #2: name \"a\" is used twice",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).err().as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn override_and_ignore_match_on_cgroup_too() {
        let file = parse(
            "[[override]]\ncgroup = \"/kubepods/\"\nidle_after = \"1h\"\n\
             [[ignore]]\ncgroup = \"/system.slice/sshd.service\"\n",
        )
        .expect("parses");
        assert_eq!(
            file.overrides[0].matcher.cgroup.as_deref(),
            Some("/kubepods")
        );
        assert_eq!(
            file.ignore[0].cgroup.as_deref(),
            Some("/system.slice/sshd.service")
        );
    }

    /// `[[enforce]]` is set in the kernel before the program is attached: a reload that changes
    /// it is reported as needing a restart.
    #[test]
    fn a_changed_enforce_list_needs_a_restart() {
        let config = |text: &str| {
            let file = parse(text).expect("parses");
            crate::config::RunConfig::resolve(&crate::config::RunArgs::default(), &file)
                .expect("resolves")
        };
        let old = config("");
        let new = config("[[enforce]]\nname = \"a\"\nlocal_port = 80\nuser_timeout = \"5s\"\n");
        let changes = old.changes(&new);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].key, "[[enforce]]");
        assert_eq!(
            changes[0].new,
            "[a: local_port=80 mode=fill user_timeout=5s]"
        );
        assert!(!changes[0].is_live());
    }

    #[test]
    fn a_missing_cgroup_waits_and_a_file_is_an_error_naming_the_policy() {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::write(root.path().join("cgroup.procs"), "").expect("file");
        let check = |cgroup: &str| {
            let text =
                format!("[[enforce]]\nname = \"a\"\ncgroup = \"{cgroup}\"\nuser_timeout = \"1s\"");
            let file = parse(&text).expect("parses");
            super::check_cgroups(&file.enforce, root.path()).map_err(|e| e.to_string())
        };
        assert_eq!(check("/no/such"), Ok(()), "a stopped service's cgroup");
        assert_eq!(check("/"), Ok(()));
        let error = check("/cgroup.procs").expect_err("a file");
        assert!(
            error.starts_with("[[enforce]] a: cgroup: \"/cgroup.procs\" is not a cgroup ("),
            "{error}"
        );
    }
}
