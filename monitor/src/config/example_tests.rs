//! The shipped example file (deploy/tcp-liveness.toml) against the settings: its defaults are
//! the agent's, its commented examples are valid, and it documents every key; and every setting
//! has a flag whose `--help` states the real default.

use clap::{Args as _, Command};

use super::{
    tests::{defaults, resolve},
    *,
};

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/tcp-liveness.toml"
));

/// The `#key = value` example lines of the shipped file, enabled.
fn example_with_examples_enabled() -> String {
    EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_file_as_shipped_is_the_defaults() {
    assert_eq!(resolve(&RunArgs::default(), EXAMPLE).unwrap(), defaults());
}

#[test]
fn example_file_examples_are_valid() {
    let c = resolve(&RunArgs::default(), &example_with_examples_enabled()).unwrap();
    assert_eq!(c.policy.overrides.len(), 2);
    assert_eq!(c.policy.ignore.len(), 3);
    assert!(c.alertmanager_url.is_some());
    assert_eq!(c.remediate.len(), 1, "the [[remediate]] example");
    assert!(c.remediate[0].dry_run, "the example stays a dry run");
}

#[test]
fn example_file_documents_every_key() {
    let enabled = example_with_examples_enabled();
    let keys: Vec<&str> = SETTINGS.iter().map(|(key, _)| *key).collect();
    for key in keys.iter().chain(&[
        "[[override]]",
        "[[ignore]]",
        "[[remediate]]",
        "[[path]]",
        "cidr",
        "idle_timeout",
        "reason",
        "min_age",
        "dry_run",
        "max_per_minute",
        "local_port",
        "remote_port",
        "process",
        "pod_namespace",
        "[kubernetes]",
        "containerd_socket",
        "containerd_namespace",
        "runtime_endpoint",
        "[forensics]",
        "stacks",
    ]) {
        assert!(
            enabled.lines().any(|l| l.starts_with(key)),
            "deploy/tcp-liveness.toml does not show {key}"
        );
    }
}

/// Every setting has a flag and every flag is a setting, and `--help` states the real default.
#[test]
fn flags_match_settings_and_help_shows_defaults() {
    let command = RunArgs::augment_args(Command::new("run"));
    let flags: Vec<_> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?, a.get_help()?.to_string())))
        .filter(|(long, _)| *long != "config")
        // `[probe]` keys: checked by `probe::tests`.
        .filter(|(long, _)| !probe::PROBE_FLAGS.iter().any(|(_, f)| f == long))
        // `[kubernetes]` keys: checked by `kubernetes::tests`.
        .filter(|(long, _)| !["containerd-socket", "runtime-endpoint"].contains(long))
        // `[forensics]` keys: checked by `forensics_tests`.
        .filter(|(long, _)| *long != "stacks")
        .collect();
    assert_eq!(flags.len(), SETTINGS.len());
    for (long, help) in flags {
        let (_, default) = SETTINGS
            .iter()
            .find(|(k, _)| flag_name(k) == long)
            .unwrap_or_else(|| panic!("--{long} is not in SETTINGS"));
        let shown = if default.is_empty() { "none" } else { default };
        assert!(
            help.ends_with(&format!("[default: {shown}]")),
            "--{long} help should end with [default: {shown}]: {help}"
        );
    }
}
