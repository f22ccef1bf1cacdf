//! The real binary on bad settings: exit code 2 and one stderr line naming the flag or key.
//! No root needed: settings are validated before any kernel program is loaded.

use std::{io::Write as _, process::Command};

/// Runs `tcp-liveness run ARGS`; returns the exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tcp-liveness"))
        .arg("run")
        .args(args)
        .env_remove("TCP_LIVENESS_LISTEN")
        .output()
        .expect("run tcp-liveness");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

fn assert_usage_error(args: &[&str], expected: &str) {
    let (code, stderr) = run(args);
    assert_eq!(code, Some(2), "exit code for {args:?}; stderr: {stderr}");
    assert_eq!(
        stderr,
        format!("tcp-liveness: {expected}\n"),
        "for {args:?}"
    );
}

#[test]
fn bad_flag_value() {
    assert_usage_error(
        &["--close-wait-after", "soon"],
        r#"--close-wait-after: invalid duration "soon" (examples: 30s, 15m)"#,
    );
}

#[test]
fn unknown_key_in_config_file() {
    let file = config_file("close_wait = \"5m\"\n");
    let path = file.path().to_str().unwrap();
    assert_usage_error(
        &["--config", path],
        &format!(r#"config {path}: unknown key "close_wait" (did you mean close_wait_after?)"#),
    );
}

#[test]
fn bad_value_in_config_file() {
    let file = config_file("[[override]]\nprocess = \"nginx\"\nidle_after = 7200\n");
    let path = file.path().to_str().unwrap();
    assert_usage_error(
        &["--config", path],
        &format!(
            r#"config {path}: [[override]] #1: idle_after: expected a duration string such as "30s", got integer 7200"#
        ),
    );
}

#[test]
fn missing_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let path = path.to_str().unwrap();
    assert_usage_error(
        &["--config", path],
        &format!("config {path}: cannot read: No such file or directory (os error 2)"),
    );
}

/// clap's own errors keep clap's format (several lines), but the same exit code.
#[test]
fn unknown_flag() {
    let (code, stderr) = run(&["--close-wait", "5m"]);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--close-wait"), "{stderr}");
}

/// An https Alertmanager's CA file is read before anything is loaded: a missing one is a usage
/// error naming the setting and the file.
#[test]
fn missing_alertmanager_ca_file() {
    assert_usage_error(
        &[
            "--alertmanager-url",
            "https://127.0.0.1:9093",
            "--alertmanager-ca-file",
            "/nonexistent/ca.pem",
        ],
        "alertmanager_ca_file /nonexistent/ca.pem: cannot read: No such file or directory (os error 2)",
    );
}
