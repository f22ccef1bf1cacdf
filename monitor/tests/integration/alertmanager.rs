//! End to end with a real Alertmanager: a leaked `CLOSE_WAIT` socket becomes a firing alert, and
//! the alert resolves once the socket is gone. Also `tcp-liveness check` against the live agent.
//! Run as root (`cargo xtask test`); under CI=true a missing privilege fails instead of skipping.

use std::{path::Path, process::Command, time::Duration};

use harness::{agent::Agent, peer::Peer, privilege::Need, tls::TestPki, wait::wait_for};
use serde_json::Value;

use crate::am::{Alertmanager, PASSWORD, USER, text};
use crate::common::{AGENT, scenario};

const PORT: &str = "7221";
/// The leaking server's port in the HTTPS test.
const TLS_PORT: &str = "7222";

/// Our alert for the test's server socket (other alerts about this host may exist).
fn ours(alert: &Value) -> bool {
    let labels = &alert["labels"];
    labels["reason"] == "close_wait_stuck"
        && labels["owner"] == "python3"
        && labels["local_port"] == PORT
}

/// Firing: state active and an end still in the future (resolved alerts may linger briefly).
fn firing(alert: &Value) -> bool {
    let ends_in_future = alert["endsAt"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .is_some_and(|t| t > std::time::SystemTime::now());
    alert["status"]["state"] == "active" && ends_in_future
}

fn check(agent: &Agent) -> (Option<i32>, String) {
    let out = Command::new(AGENT)
        .args(["check", "--agent", agent.url()])
        .output()
        .expect("run tcp-liveness check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

#[test]
fn close_wait_alert_fires_then_resolves() {
    let Some(sc) = scenario("close_wait_alert", Need::RootAndKernelBtf) else {
        return;
    };
    let am = Alertmanager::start();
    let net = sc.net();
    let mut server =
        Peer::start(&net.server, &["server", &net.server_ip, PORT, "no-close"]).expect("peer");
    let _client =
        Peer::start(&net.client, &["client", &net.server_ip, PORT, "close"]).expect("peer");
    let agent = sc
        .launch()
        .args(&["--alertmanager-url", &am.base, "--close-wait-after", "1s"])
        .start()
        .expect("agent");

    let alert = wait_for(
        "the CLOSE_WAIT alert in Alertmanager",
        Duration::from_secs(30),
        || am.alerts().into_iter().find(|a| ours(a) && firing(a)),
    );
    assert_eq!(
        alert["labels"]["alertname"], "TcpLivenessCloseWaitStuck",
        "{alert}"
    );
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "1 connection of python3 on port {PORT} stuck in CLOSE_WAIT"
        )),
        "{alert}"
    );

    // The agent's own view, and the check built on it.
    let groups: Value = serde_json::from_str(&agent.get("/alerts")).expect("/alerts is JSON");
    let group = groups["alerts"]
        .as_array()
        .and_then(|all| all.iter().find(|g| g["owner"] == "python3"))
        .unwrap_or_else(|| panic!("python3 group in /alerts: {groups}"));
    assert_eq!(group["reason"], "close_wait_stuck");
    assert_eq!(group["pids"][0], server.pid());
    assert_eq!(group["samples"][0]["state"], "close_wait");
    let (code, out) = check(&agent);
    assert_eq!(code, Some(1), "check with an alert present: {out}");
    assert!(
        out.contains("close_wait_stuck") && out.contains("python3"),
        "{out}"
    );

    // The leaking process exits: its CLOSE_WAIT socket is closed, the group disappears, and the
    // agent tells Alertmanager at once (not when endsAt runs out).
    server.stop();
    wait_for("the alert to resolve", Duration::from_secs(15), || {
        (!am.alerts().iter().any(|a| ours(a) && firing(a))).then_some(())
    });
}

/// HTTPS to an Alertmanager that requires a client certificate and basic auth (its own
/// `--web.config.file`): the alert arrives, and no push fails. Then an agent given the wrong CA
/// cannot push: each attempt is counted as a failure and the log says why.
#[test]
fn https_push_with_client_certificate_and_basic_auth() {
    let Some(sc) = scenario("https_alertmanager", Need::RootAndKernelBtf) else {
        return;
    };
    let pki_dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::create(pki_dir.path()).expect("test certificates");
    let am = Alertmanager::start_tls(&pki);
    let password_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(password_file.path(), format!("{PASSWORD}\n")).expect("write password");
    let password = password_file.path().to_str().expect("UTF-8 path");
    let net = sc.net();
    let _server = Peer::start(
        &net.server,
        &["server", &net.server_ip, TLS_PORT, "no-close"],
    )
    .expect("peer");
    let _client =
        Peer::start(&net.client, &["client", &net.server_ip, TLS_PORT, "close"]).expect("peer");
    let launch = |ca: &Path| {
        let (ca, cert, key) = (text(ca), text(&pki.client_cert), text(&pki.client_key));
        let log = tempfile::NamedTempFile::new().expect("log file");
        let agent = sc
            .launch()
            .args(&[
                "--close-wait-after",
                "1s",
                "--alertmanager-url",
                &am.base,
                "--alertmanager-ca-file",
                ca,
                "--alertmanager-cert-file",
                cert,
                "--alertmanager-key-file",
                key,
                "--alertmanager-username",
                USER,
                "--alertmanager-password-file",
                password,
            ])
            .log_to(log.reopen().expect("reopen log"))
            .start()
            .unwrap_or_else(|e| {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("agent: {e:#}\n{text}")
            });
        (agent, log)
    };
    let ours_tls = |a: &Value| {
        a["labels"]["reason"] == "close_wait_stuck" && a["labels"]["local_port"] == TLS_PORT
    };

    let (mut agent, _log) = launch(&pki.server_ca);
    let alert = wait_for(
        "the CLOSE_WAIT alert in the HTTPS Alertmanager",
        Duration::from_secs(30),
        || am.alerts().into_iter().find(|a| ours_tls(a) && firing(a)),
    );
    assert_eq!(alert["labels"]["alertname"], "TcpLivenessCloseWaitStuck");
    let pushes = agent.metric("tcp_liveness_alertmanager_pushes_total");
    assert!(pushes.is_some_and(|n| n >= 1.0), "pushes: {pushes:?}");
    assert_eq!(
        agent.metric("tcp_liveness_alertmanager_push_failures_total"),
        Some(0.0)
    );
    agent.stop().expect("stop agent");

    // The wrong CA (the one that signs clients, not servers): Alertmanager's certificate cannot
    // be verified, nothing is sent.
    let (agent, log) = launch(&pki.client_ca);
    wait_for("two failed pushes", Duration::from_secs(30), || {
        agent
            .metric("tcp_liveness_alertmanager_push_failures_total")
            .filter(|&n| n >= 2.0)
    });
    let text = std::fs::read_to_string(log.path()).expect("read agent log");
    let line = text
        .lines()
        .find(|l| l.contains("cannot push alerts to Alertmanager"))
        .unwrap_or_else(|| panic!("no push failure in the log:\n{text}"));
    assert!(line.contains("UnknownIssuer"), "{line}");
}
