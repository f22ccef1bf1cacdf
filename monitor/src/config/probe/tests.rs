use std::path::Path;

use clap::{Args as _, Command};

use super::*;

fn resolve(args: &RunArgs, text: &str) -> Result<ProbeSettings, ConfigError> {
    let file = FileConfig::parse(Path::new("/etc/x.toml"), text)?;
    super::resolve(args, &file)
}

fn error(args: &RunArgs, text: &str) -> String {
    let message = resolve(args, text).expect_err("rejected").to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

#[test]
fn off_by_default_with_the_documented_defaults() {
    let s = resolve(&RunArgs::default(), "").unwrap();
    assert_eq!(s, ProbeSettings::default());
    assert!(!s.enabled);
    assert_eq!(s.after, None, "idle_after");
}

#[test]
fn file_and_flags() {
    let text = "[probe]\nenabled = true\nafter = \"2m\"\ninterval = \"2s\"\ncount = 4\n\
                max_per_second = 5\nmax_per_scan = 7\n";
    let s = resolve(&RunArgs::default(), text).unwrap();
    assert_eq!(
        s,
        ProbeSettings {
            enabled: true,
            after: Some(Duration::from_mins(2)),
            interval: Duration::from_secs(2),
            count: 4,
            max_per_second: 5,
            max_per_scan: 7,
        }
    );
    let args = RunArgs {
        probe: Some("false".into()),
        probe_after: Some("3s".into()),
        probe_interval: Some("1s".into()),
        probe_count: Some("2".into()),
        ..RunArgs::default()
    };
    let s = resolve(&args, text).unwrap();
    assert!(!s.enabled, "flags win");
    assert_eq!(s.after, Some(Duration::from_secs(3)));
    assert_eq!((s.interval, s.count), (Duration::from_secs(1), 2));
}

#[test]
fn bad_values_are_one_line_naming_the_key_or_flag() {
    let none = RunArgs::default();
    assert_eq!(
        error(&none, "[probe]\ninterval = \"1500ms\""),
        "config /etc/x.toml: [probe] interval: 1s 500ms is not a whole number of seconds (the \
         kernel's keepalive timers take seconds)"
    );
    assert_eq!(
        error(&none, "[probe]\ncount = 127"),
        "config /etc/x.toml: [probe] count: 127 is out of range: must be between 1 and 100"
    );
    assert_eq!(
        error(&none, "[probe]\nenable = true"),
        "config /etc/x.toml: [probe]: unknown key \"enable\" (did you mean enabled?)"
    );
    assert_eq!(
        error(&none, "probe = true"),
        "config /etc/x.toml: probe: expected a [probe] table"
    );
    assert_eq!(
        error(&none, "[probe]\nmax_per_second = 0"),
        "config /etc/x.toml: [probe] max_per_second: 0 is out of range: must be between 1 and 10000"
    );
    let args = RunArgs {
        probe_interval: Some("0s".into()),
        ..RunArgs::default()
    };
    assert_eq!(
        error(&args, ""),
        "--probe-interval: \"0s\" is out of range: must be between 1s and 1h"
    );
    let args = RunArgs {
        probe: Some("yes".into()),
        ..RunArgs::default()
    };
    assert_eq!(
        error(&args, ""),
        "--probe: expected true or false, got \"yes\""
    );
}

#[test]
fn override_opts_in_or_out() {
    let file = FileConfig::parse(
        Path::new("/etc/x.toml"),
        "[[override]]\nlocal_port = 6379\nprobe = true\n",
    )
    .unwrap();
    assert_eq!(file.overrides[0].probe, Some(true));
    let bad = FileConfig::parse(
        Path::new("/etc/x.toml"),
        "[[override]]\nlocal_port = 6379\nprobe = \"yes\"\n",
    )
    .expect_err("not a boolean")
    .to_string();
    assert_eq!(
        bad,
        "config /etc/x.toml: [[override]] #1: probe: expected true or false, got string \"yes\""
    );
}

/// Each `[probe]` flag's help states the real default.
#[test]
fn probe_flags_show_their_defaults() {
    let command = RunArgs::augment_args(Command::new("run"));
    for (key, flag) in PROBE_FLAGS {
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .unwrap_or_else(|| panic!("--{flag}"));
        let default = PROBE_SETTINGS.iter().find(|(k, _)| k == key).unwrap().1;
        let shown = if default.is_empty() {
            "`idle_after`"
        } else {
            default
        };
        let help = arg.get_help().unwrap().to_string();
        assert!(
            help.ends_with(&format!("[default: {shown}]")),
            "--{flag}: {help}"
        );
    }
}

/// `runtime_dir` (the probe journal's directory): an absolute path, `/run/tcp-liveness` unless
/// given; anything else is one line naming the key or flag.
#[test]
fn runtime_dir_is_an_absolute_path() {
    let run = |args: &RunArgs, text: &str| {
        let file = FileConfig::parse(Path::new("/etc/x.toml"), text)?;
        crate::config::RunConfig::resolve(args, &file).map(|c| c.runtime_dir)
    };
    let none = RunArgs::default();
    assert_eq!(
        run(&none, "").unwrap(),
        Path::new("/run/tcp-liveness"),
        "the default"
    );
    assert_eq!(
        run(&none, "runtime_dir = \"/var/run/x\"").unwrap(),
        Path::new("/var/run/x")
    );
    let flag = RunArgs {
        runtime_dir: Some("state".into()),
        ..RunArgs::default()
    };
    assert_eq!(
        run(&flag, "").unwrap_err().to_string(),
        "--runtime-dir: expected an absolute directory path, got \"state\""
    );
    assert_eq!(
        run(&none, "runtime_dir = \"\"").unwrap_err().to_string(),
        "config /etc/x.toml: runtime_dir: expected an absolute directory path, got \"\""
    );
    assert_eq!(
        run(&none, "runtime_dir = 5").unwrap_err().to_string(),
        "config /etc/x.toml: runtime_dir: expected a string, got integer 5"
    );
}
