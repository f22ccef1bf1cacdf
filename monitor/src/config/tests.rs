use std::{path::Path, time::Duration};

use clap::{Args as _, Command, FromArgMatches as _};
use monitor_common::DEFAULT_TABLE_CAPACITY;

use super::*;

const PATH: &str = "/etc/x.toml";

fn file(text: &str) -> Result<FileConfig, ConfigError> {
    FileConfig::parse(Path::new(PATH), text)
}

pub(super) fn resolve(args: &RunArgs, text: &str) -> Result<RunConfig, ConfigError> {
    RunConfig::resolve(args, &file(text)?)
}

pub(super) fn defaults() -> RunConfig {
    RunConfig::resolve(&RunArgs::default(), &FileConfig::default()).expect("defaults are valid")
}

/// The message for a file (with no flags), checked to be one line.
pub(super) fn file_error(text: &str) -> String {
    let message = resolve(&RunArgs::default(), text)
        .expect_err("should be rejected")
        .to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_without_flags_or_file() {
    let c = defaults();
    assert_eq!(c.listen, "0.0.0.0:9977".parse().unwrap());
    assert_eq!(c.scan_interval, secs(5));
    assert_eq!(c.table_capacity, DEFAULT_TABLE_CAPACITY);
    assert!(!c.allow_remote_connections);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.top_n, 20);
    assert_eq!(c.group_by, GroupBy::Process);
    assert_eq!(c.alertmanager_url, None);
    assert_eq!(c.alert_log_limit, 20);
    // The verdict module's own defaults, so tests built on Policy::default() agree with the agent.
    assert_eq!(c.policy.defaults, Thresholds::default());
    assert!(c.policy.overrides.is_empty() && c.policy.ignore.is_empty());
}

#[test]
fn file_values_replace_defaults() {
    let c = resolve(
        &RunArgs::default(),
        r#"
        listen = "127.0.0.1:9000"
        scan_interval = "250ms"
        table_capacity = 4096
        allow_remote_connections = true
        log_format = "json"
        close_wait_after = "30s"
        fin_wait2_after = "1m"
        unresponsive_after = "5s"
        idle_after = "1h"
        top_n = 5
        group_by = "cgroup"
        alertmanager_url = "http://am.example:9093"
        alert_log_limit = 0
        "#,
    )
    .unwrap();
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.scan_interval, Duration::from_millis(250));
    assert_eq!(c.table_capacity, 4096);
    assert!(c.allow_remote_connections);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(
        c.policy.defaults,
        Thresholds {
            close_wait_after: secs(30),
            fin_wait2_after: secs(60),
            unresponsive_after: secs(5),
            idle_after: secs(3600),
        }
    );
    assert_eq!((c.top_n, c.group_by), (5, GroupBy::Cgroup));
    assert_eq!(
        c.alertmanager_url.as_deref(),
        Some("http://am.example:9093")
    );
    assert_eq!(c.alert_log_limit, 0);
}

#[test]
fn flags_override_the_file() {
    let args = RunArgs {
        scan_interval: Some("2s".into()),
        allow_remote_connections: Some("false".into()),
        alertmanager_url: Some(String::new()),
        ..RunArgs::default()
    };
    let text = r#"
        scan_interval = "10s"
        idle_after = "2h"
        allow_remote_connections = true
        alertmanager_url = "http://am:9093"
    "#;
    let c = resolve(&args, text).unwrap();
    assert_eq!(c.scan_interval, secs(2));
    assert_eq!(
        c.policy.defaults.idle_after,
        secs(7200),
        "no flag: the file's value"
    );
    assert!(!c.allow_remote_connections);
    assert_eq!(
        c.alertmanager_url, None,
        "an empty flag turns off the file's URL"
    );
}

#[test]
fn bad_flags_name_the_flag() {
    let bad = |args: RunArgs| {
        RunConfig::resolve(&args, &FileConfig::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        bad(RunArgs {
            close_wait_after: Some("5".into()),
            ..Default::default()
        }),
        r#"--close-wait-after: invalid duration "5" (examples: 30s, 15m)"#
    );
    assert_eq!(
        bad(RunArgs {
            table_capacity: Some("lots".into()),
            ..Default::default()
        }),
        r#"--table-capacity: not a number: "lots""#
    );
    assert_eq!(
        bad(RunArgs {
            allow_remote_connections: Some("maybe".into()),
            ..Default::default()
        }),
        r#"--allow-remote-connections: expected true or false, got "maybe""#
    );
    assert_eq!(
        bad(RunArgs {
            listen: Some("9977".into()),
            ..Default::default()
        }),
        r#"--listen: invalid address "9977" (expected IP:PORT, e.g. 0.0.0.0:9977)"#
    );
    assert_eq!(
        bad(RunArgs {
            scan_interval: Some("-5s".into()),
            ..Default::default()
        }),
        r#"--scan-interval: negative duration "-5s": must be between 100ms and 1h"#
    );
}

/// `-5s` and `-5` as separate words reach our parsers (which name the flag) instead of clap
/// taking them for an unknown flag `-5`.
#[test]
fn negative_values_are_values_not_flags() {
    let parse = |args: &[&str]| {
        let command = RunArgs::augment_args(Command::new("run"));
        let matches = command
            .try_get_matches_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        RunArgs::from_arg_matches(&matches).map_err(|e| e.to_string())
    };
    for flag in [
        "--scan-interval",
        "--close-wait-after",
        "--fin-wait2-after",
        "--unresponsive-after",
        "--idle-after",
    ] {
        let args = parse(&[flag, "-5s"]).unwrap_or_else(|e| panic!("{flag} -5s: {e}"));
        let err = RunConfig::resolve(&args, &FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                r#"{flag}: negative duration "-5s": must be between"#
            )),
            "{err}"
        );
    }
    for (flag, range) in [
        ("--top-n", "0 and 1000"),
        ("--alert-log-limit", "0 and 10000"),
        ("--table-capacity", "1024 and 16777216"),
    ] {
        let args = parse(&[flag, "-5"]).unwrap_or_else(|e| panic!("{flag} -5: {e}"));
        let err = RunConfig::resolve(&args, &FileConfig::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("{flag}: -5 is out of range: must be between {range}")
        );
    }
}

#[test]
fn bad_file_values_name_the_file_and_key() {
    let cases = [
        (
            r#"close_wait_after = "5""#,
            r#"close_wait_after: invalid duration "5" (examples: 30s, 15m)"#,
        ),
        (
            "scan_interval = 5",
            r#"scan_interval: expected a duration string such as "30s", got integer 5"#,
        ),
        (
            r#"scan_interval = "2h""#,
            r#"scan_interval: "2h" is out of range: must be between 100ms and 1h"#,
        ),
        (
            r#"idle_after = "31days""#,
            r#"idle_after: "31days" is out of range: must be between 100ms and 30 days"#,
        ),
        (
            r#"unresponsive_after = "10ms""#,
            r#"unresponsive_after: "10ms" is out of range: must be between 100ms and 30 days"#,
        ),
        (
            r#"idle_after = "-1m""#,
            r#"idle_after: negative duration "-1m": must be between 100ms and 30 days"#,
        ),
        (
            "table_capacity = 12",
            "table_capacity: 12 is out of range: must be between 1024 and 16777216",
        ),
        (
            r#"table_capacity = "big""#,
            r#"table_capacity: expected an integer, got string "big""#,
        ),
        (
            "top_n = -1",
            "top_n: -1 is out of range: must be between 0 and 1000",
        ),
        (
            r#"allow_remote_connections = "yes""#,
            r#"allow_remote_connections: expected true or false, got string "yes""#,
        ),
        (
            r#"log_format = "xml""#,
            r#"log_format: expected "text" or "json", got "xml""#,
        ),
        (
            r#"group_by = "node""#,
            r#"group_by: expected "process", "cgroup" or "pod", got "node""#,
        ),
        (
            r#"alertmanager_url = "ftp://am:9093""#,
            r#"alertmanager_url: URL "ftp://am:9093" must start with http:// or https://"#,
        ),
        (
            r#"alertmanager_url = "am:9093""#,
            r#"alertmanager_url: URL "am:9093" must start with http:// or https://"#,
        ),
        (
            r#"alertmanager_url = "http://""#,
            r#"alertmanager_url: invalid URL "http://" (expected http://HOST:PORT or https://HOST:PORT)"#,
        ),
        (
            r#"close_wait = "5s""#,
            r#"unknown key "close_wait" (did you mean close_wait_after?)"#,
        ),
        (
            r#"close-wait-after = "5s""#,
            r#"unknown key "close-wait-after" (did you mean close_wait_after?)"#,
        ),
        (r#"colour = "blue""#, r#"unknown key "colour""#),
        (
            "listen = ",
            "line 1: string values must be quoted, expected literal string",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            file_error(text),
            format!("config {PATH}: {expected}"),
            "for {text}"
        );
    }
}

#[test]
fn bad_file_value_is_reported_even_when_a_flag_replaces_it() {
    let args = RunArgs {
        idle_after: Some("1h".into()),
        ..Default::default()
    };
    let err = resolve(&args, r#"idle_after = "forever""#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config /etc/x.toml: idle_after:"),
        "{err}"
    );
}

#[test]
fn bad_sections_name_the_entry() {
    let cases = [
        (
            "[[override]]\nidle_after = \"2h\"",
            "[[override]] #1: override needs local_port, remote_port, process, cgroup, pod_namespace or pod_name_prefix",
        ),
        (
            "[[override]]\nlocal_port = 80\nidle_after = \"2h\"\n[[override]]\nlocal_port = 81",
            "[[override]] #2: override sets nothing (one of close_wait_after, \
             fin_wait2_after, unresponsive_after, idle_after, probe)",
        ),
        (
            "[[override]]\nlocal_port = 80\nidle = \"2h\"",
            r#"[[override]] #1: unknown key "idle" (did you mean idle_after?)"#,
        ),
        (
            "[[override]]\nlocal_port = 70000\nidle_after = \"2h\"",
            "[[override]] #1: local_port: 70000 is out of range: must be between 1 and 65535",
        ),
        (
            "[[override]]\nlocal_port = 80\nidle_after = \"2\"",
            r#"[[override]] #1: idle_after: invalid duration "2" (examples: 30s, 15m)"#,
        ),
        (
            "[override]\nlocal_port = 80\nidle_after = \"2h\"",
            "override: expected [[override]] sections (double brackets)",
        ),
        (
            "[[ignore]]",
            "[[ignore]] #1: ignore needs local_port, remote_port, process, cgroup, pod_namespace or pod_name_prefix",
        ),
        (
            "[[ignore]]\nidle_after = \"2h\"",
            r#"[[ignore]] #1: unknown key "idle_after""#,
        ),
        (
            "[[ignore]]\nprocess = \"kube-controller-manager\"",
            r#"[[ignore]] #1: process: "kube-controller-manager" is longer than the kernel's 15-byte process name (comm) and would never match; write "kube-controller""#,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            file_error(text),
            format!("config {PATH}: {expected}"),
            "for {text}"
        );
    }
}
