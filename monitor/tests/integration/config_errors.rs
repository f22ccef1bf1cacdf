//! The real binary on bad settings: exit code 2 and one stderr line naming the flag or key.
//! No root needed: settings are validated before any kernel program is loaded.

use std::{
    io::Write as _,
    process::Command,
    time::{Duration, Instant},
};

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

/// A CRI endpoint that is no unix socket on this host: crictl's other schemes are refused.
#[test]
fn runtime_endpoint_that_is_no_unix_socket() {
    assert_usage_error(
        &["--runtime-endpoint", "tcp://10.0.0.1:10010"],
        r#"--runtime-endpoint: expected a CRI runtime's unix socket (an absolute path or unix:///path), got "tcp://10.0.0.1:10010""#,
    );
    let file = config_file("[kubernetes]\nruntime_endpoint = \"crio.sock\"\n");
    let path = file.path().to_str().unwrap();
    assert_usage_error(
        &["--config", path],
        &format!(
            r#"config {path}: [kubernetes] runtime_endpoint: expected a CRI runtime's unix socket (an absolute path or unix:///path), got "crio.sock""#
        ),
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

/// A typo gets the nearest key, still on one line with exit 2.
#[test]
fn misspelt_key_in_config_file() {
    let file = config_file("scan_intervall = \"5s\"\n");
    let path = file.path().to_str().unwrap();
    assert_usage_error(
        &["--config", path],
        &format!(r#"config {path}: unknown key "scan_intervall" (did you mean scan_interval?)"#),
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

#[test]
fn negative_duration_as_a_separate_word_names_the_flag() {
    assert_usage_error(
        &["--scan-interval", "-5s"],
        r#"--scan-interval: negative duration "-5s": must be between 100ms and 1h"#,
    );
}

#[test]
fn config_file_larger_than_the_limit() {
    // A comment line of 1 MiB: valid TOML, so only the size can refuse it.
    let file = config_file(&format!("#{}\n", "x".repeat(1024 * 1024)));
    let path = file.path().to_str().unwrap();
    assert_usage_error(
        &["--config", path],
        &format!("config {path}: larger than 1024 KiB, the most a config file may be"),
    );
    // Endless: without the limit this reads until memory runs out.
    assert_usage_error(
        &["--config", "/dev/zero"],
        "config /dev/zero: larger than 1024 KiB, the most a config file may be",
    );
}

/// Runs `tcp-liveness run --listen ADDR` logging at info to a pipe; returns the exit code, the
/// time it took, and stderr.
fn run_listening_on(addr: &str) -> (Option<i32>, Duration, String) {
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_tcp-liveness"))
        .args(["run", "--listen", addr])
        .env_remove("TCP_LIVENESS_LISTEN")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .output()
        .expect("run tcp-liveness");
    (
        output.status.code(),
        start.elapsed(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port in use or an address not on this host: bad input, found before any kernel program is
/// loaded (as root, loading and seeding would otherwise take seconds and log "probes loaded").
/// The log goes to a pipe here, so it has no colour codes either.
#[test]
fn unusable_listen_address_exits_2_before_loading_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let taken = taken.local_addr().expect("local address").to_string();
    let cases = [
        (taken.as_str(), "Address already in use (os error 98)"),
        // TEST-NET-1 (RFC 5737): never an address of this host.
        (
            "192.0.2.1:9977",
            "Cannot assign requested address (os error 99)",
        ),
    ];
    for (addr, cause) in cases {
        let (code, took, stderr) = run_listening_on(addr);
        assert_eq!(code, Some(2), "exit code for {addr}; stderr: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            format!("tcp-liveness: --listen {addr}: cannot bind: {cause}")
        );
        assert!(stderr.contains("starting"), "the log was written: {stderr}");
        assert!(!stderr.contains("probes loaded"), "{stderr}");
        assert!(!stderr.contains("hook attached"), "{stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "colour codes in a piped log: {stderr:?}"
        );
        assert!(took < Duration::from_secs(2), "{addr}: took {took:?}");
    }
}

#[test]
fn unknown_key_in_web_config_file() {
    let file = config_file("tls_server_config:\n  cert_fil: server.crt\n");
    let path = file.path().to_str().unwrap();
    let (code, stderr) = run(&["--web.config.file", path]);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "one line: {stderr}");
    assert!(
        line.starts_with(&format!(
            "tcp-liveness: web config {path}: tls_server_config: unknown field `cert_fil`"
        )),
        "{stderr}"
    );
}

#[test]
fn web_config_naming_an_unreadable_certificate() {
    let file = config_file("tls_server_config:\n  cert_file: absent.crt\n  key_file: absent.key\n");
    let path = file.path().to_str().unwrap();
    let cert = file.path().parent().unwrap().join("absent.crt");
    let (code, stderr) = run(&["--web.config.file", path]);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "tcp-liveness: web config {path}: cert_file {}: ",
            cert.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_web_flag_value_names_the_flag() {
    assert_usage_error(
        &["--web.max-connections", "0"],
        "--web.max-connections: 0 is out of range: must be between 1 and 65536",
    );
}

/// `[[remediate]]`: an unknown reason (named with the valid ones), `close_wait_stuck` (the
/// descriptor leak would stay) and a bad `min_age` each stop the agent with one line, exit 2.
#[test]
fn bad_remediate_policies() {
    let cases = [
        (
            "reason = \"dead\"",
            r#"reason: unknown reason "dead" (one of peer_dead, peer_unresponsive, keepalive_unanswered, fin_wait2_stuck)"#,
        ),
        (
            "reason = \"close_wait_stuck\"",
            "reason: close_wait_stuck cannot be remediated: destroying the socket does not make the application call close(), its descriptor leak stays (fix the application)",
        ),
        (
            "reason = \"peer_dead\"\nmin_age = \"2 fortnights\"",
            r#"min_age: invalid duration "2 fortnights" (examples: 30s, 15m)"#,
        ),
    ];
    for (body, problem) in cases {
        let file = config_file(&format!("[[remediate]]\n{body}\n"));
        let path = file.path().to_str().unwrap();
        assert_usage_error(
            &["--config", path],
            &format!("config {path}: [[remediate]] #1: {problem}"),
        );
    }
}
