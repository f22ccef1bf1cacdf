//! `[[enforce]]` mistakes on the real binary: exit code 2 and one stderr line naming the policy
//! and key, before anything is loaded (no root needed).

use std::{io::Write as _, process::Command};

/// Runs `tcp-liveness run --config FILE` with `text` as the file; returns exit code, stderr
/// and the file's path.
fn run_with(text: &str) -> (Option<i32>, String, String) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    let path = file.path().to_str().expect("UTF-8 path").to_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_tcp-liveness"))
        .args(["run", "--listen", "127.0.0.1:0", "--config", &path])
        .output()
        .expect("run tcp-liveness");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        path,
    )
}

fn assert_one_line_exit_2(text: &str, expected: &str) {
    let (code, stderr, path) = run_with(text);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    let expected = expected.replace("{path}", &path);
    assert_eq!(stderr, format!("tcp-liveness: {expected}\n"));
}

const POLICY: &str = "[[enforce]]\nname = \"payments\"\n";

/// A file where a cgroup should be (every cgroup v2 directory has `cgroup.procs`) is a mistake;
/// a cgroup that does not exist yet is not (its policy waits: `enforce.rs`).
#[test]
fn a_cgroup_path_that_names_a_file() {
    let (code, stderr, _) = run_with(&format!(
        "{POLICY}cgroup = \"/cgroup.procs\"\nuser_timeout = \"5s\"\n"
    ));
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "tcp-liveness: [[enforce]] payments: cgroup: \"/cgroup.procs\" is not a cgroup ("
        ),
        "{stderr}"
    );
}

#[test]
fn a_relative_cgroup_path() {
    assert_one_line_exit_2(
        &format!("{POLICY}cgroup = \"system.slice\"\nuser_timeout = \"5s\"\n"),
        "config {path}: [[enforce]] #1: cgroup: \"system.slice\" is not a cgroup v2 path (absolute, as in /proc/PID/cgroup: \"/system.slice/x.service\")",
    );
}

#[test]
fn a_bad_mode() {
    assert_one_line_exit_2(
        &format!("{POLICY}local_port = 80\nuser_timeout = \"5s\"\nmode = \"force\"\n"),
        "config {path}: [[enforce]] #1: mode: expected \"fill\" or \"override\", got \"force\"",
    );
}

#[test]
fn a_bad_duration() {
    assert_one_line_exit_2(
        &format!("{POLICY}local_port = 80\nkeepalive = {{ idle = \"30x\" }}\n"),
        "config {path}: [[enforce]] #1: keepalive: idle: invalid duration \"30x\" (examples: 30s, 15m)",
    );
    assert_one_line_exit_2(
        &format!("{POLICY}local_port = 80\nuser_timeout = \"30 days\"\n"),
        "config {path}: [[enforce]] #1: user_timeout: \"30 days\" is out of range: must be between 1ms and 24 days",
    );
}
