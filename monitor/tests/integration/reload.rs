//! SIGHUP reloads the config file: a changed threshold takes effect in the verdicts, each change
//! is logged, and a bad file is one log line with the agent running on as before. Root and the
//! real agent (`cargo xtask test`); under CI=true a missing privilege fails instead of skipping.

use std::{fs, path::Path, time::Duration};

use harness::{agent::Agent, privilege::Need, wait::wait_for};
use serde_json::Value;

use crate::common::{SCANS_TO_SHOW, scenario};

pub(crate) fn hangup(agent: &Agent) {
    let pid = libc::pid_t::try_from(agent.pid()).expect("pid");
    // SAFETY: kill() on the pid of the agent, our child, which the guard has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP");
}

/// The server's `CLOSE_WAIT` socket, as `/connections` shows it now.
fn close_wait(agent: &Agent, netns: u64) -> Option<Value> {
    agent
        .connections_in(netns)
        .into_iter()
        .find(|c| c["state"] == "close_wait")
}

fn flagged(c: &Value) -> bool {
    c["suspect"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r == "close_wait_stuck"))
}

/// The lines of the agent's log that contain `text`, once there are `count` of them.
fn log_lines(log: &Path, text: &str, count: usize) -> Vec<String> {
    wait_for(
        &format!("{count} log line(s) with {text:?}"),
        Duration::from_secs(5),
        || {
            let lines: Vec<String> = fs::read_to_string(log)
                .ok()?
                .lines()
                .filter(|l| l.contains(text))
                .map(str::to_owned)
                .collect();
            (lines.len() >= count).then_some(lines)
        },
    )
}

#[test]
fn sighup_reloads_the_policy_and_a_bad_file_keeps_the_running_one() {
    let Some(sc) = scenario("sighup_reloads", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tcp-liveness.toml");
    fs::write(&file, "close_wait_after = \"1h\"\n").expect("write config");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut agent = sc
        .launch()
        .args(&["--config", file.to_str().expect("UTF-8 path")])
        .rust_log(Some("info"))
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent");
    let _server = sc.server(&["no-close"]);
    let _client = sc.client(&["half-close-hold"]);
    let server_ns = net.server.inode();
    let aged = wait_for(
        "a CLOSE_WAIT socket 2 s old",
        agent.scans(SCANS_TO_SHOW),
        || close_wait(&agent, server_ns).filter(|c| c["state_age_seconds"].as_f64() >= Some(2.0)),
    );
    assert!(!flagged(&aged), "flagged under the 1h threshold: {aged}");

    // A lower threshold, and a setting that needs a restart.
    fs::write(&file, "close_wait_after = \"1s\"\ntop_n = 3\n").expect("write config");
    hangup(&agent);
    wait_for(
        "the 1s threshold to apply",
        agent.scans(SCANS_TO_SHOW / 2),
        || close_wait(&agent, server_ns).filter(flagged),
    );
    let reloaded = log_lines(log.path(), "setting reloaded", 1);
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert!(
        reloaded[0].contains("key=close_wait_after old=1h new=1s"),
        "{reloaded:?}"
    );
    let kept = log_lines(log.path(), "only applies at a restart", 1);
    assert!(kept[0].contains("key=top_n old=20 new=3"), "{kept:?}");
    assert_eq!(
        agent.metric("tcp_liveness_config_last_reload_successful"),
        Some(1.0)
    );

    // A bad file: one line, and the agent goes on with the 1s threshold (not the default 60s).
    fs::write(&file, "close_wait_after = \"soon\"\n").expect("write config");
    hangup(&agent);
    let rejected = log_lines(log.path(), "config reload rejected", 1);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].contains(r#"close_wait_after: invalid duration "soon""#),
        "{rejected:?}"
    );
    wait_for(
        "the reload failure metric",
        agent.scans(SCANS_TO_SHOW / 2),
        || (agent.metric("tcp_liveness_config_last_reload_successful") == Some(0.0)).then_some(()),
    );
    let still = close_wait(&agent, server_ns).expect("the CLOSE_WAIT socket");
    assert!(
        flagged(&still),
        "the running 1s threshold was dropped: {still}"
    );
    assert_eq!(agent.get("/healthz"), "ok");

    let status = agent.stop().expect("agent stops after SIGTERM");
    assert!(
        status.success(),
        "exit status after SIGHUPs and SIGTERM: {status}"
    );
}
