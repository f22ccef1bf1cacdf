//! `[probe]`'s journal on the real kernel: an agent killed (SIGKILL) mid-probe leaves the probe's
//! keepalive options on the application's socket and its entry in the journal; the next agent,
//! probing off, puts the application's options back at start — unless the application changed
//! them meanwhile, when they are left alone. The owning process's own `getsockopt`
//! (`tcp_peer.py idle-report`) is the oracle. Run as root; under CI=true a missing privilege
//! fails instead of skipping.

use std::{fs, os::unix::process::ExitStatusExt as _, path::Path, time::Duration};

use harness::{
    agent::{Agent, Launch},
    peer::Peer,
    privilege::Need,
    scenario::Scenario,
    wait::{wait_for, wait_for_optional},
};
use serde_json::Value;

use crate::{
    common::{SCANS_TO_SHOW, agent_only, scenario},
    probe::{DeadPeerProbe, client_conn, options, probe_a_dead_peer},
};

/// The agent's journal file in its `--runtime-dir`.
const JOURNAL: &str = "probe-journal.json";
/// Between probes: a probe of the dropped peer runs 14 × 30 s, surely still running at the kill.
const LONG_INTERVAL_S: u32 = 30;
/// Only the client's connection is probed: the agent is killed mid-probe, and nothing else on
/// the machine should be left to the next agent.
const CLIENT_ONLY: &str =
    "[probe]\nenabled = false\n[[override]]\nremote_port = 7000\nprobe = true\n";
/// `TCP_KEEPCNT` while probing.
const PROBE_KEEPCNT: u32 = 127;

/// The state a prober killed with SIGKILL leaves: its journal's directory, the application, what
/// its `getsockopt` said before the probe and since, and the probed socket's cookie.
struct Killed {
    runtime: tempfile::TempDir,
    _server: Peer,
    client: Peer,
    original: [u32; 5],
    seen: Vec<[u32; 5]>,
    cookie: u64,
}

/// An agent probing the client's quiet connection (its peer's input dropped, so the probe runs
/// for minutes), killed with SIGKILL once the application's `getsockopt` shows the probe's
/// options; the journal names the socket.
fn probe_then_kill(sc: &Scenario) -> Killed {
    let net = sc.net();
    let server = sc.server(&["echo"]);
    let runtime = tempfile::tempdir().expect("runtime dir");
    let interval = format!("{LONG_INTERVAL_S}s");
    let runtime_dir = runtime.path().to_str().unwrap();
    let args = ["--probe-interval", &interval, "--runtime-dir", runtime_dir];
    let DeadPeerProbe {
        mut agent,
        client,
        original,
        mut seen,
    } = probe_a_dead_peer(sc, CLIENT_ONLY, &args);
    assert_eq!(original[0], 0, "keepalive off: {original:?}");
    let cookie = client_conn(&agent, net, 7000).expect("connection")["cookie"]
        .as_u64()
        .expect("cookie");
    kill(&mut agent);
    let entry = entry_of(runtime.path(), cookie).expect("the probed socket journalled");
    assert_eq!(entry["netns"].as_u64(), Some(net.client.inode()), "{entry}");
    assert_eq!(values(&entry["original"]), original, "{entry}");
    let probe = values(&entry["probe"]);
    assert_eq!(
        (probe[0], probe[2], probe[3]),
        (1, LONG_INTERVAL_S, PROBE_KEEPCNT)
    );
    options(&client, &mut seen);
    assert_eq!(
        seen.last().map(|o| o[3]),
        Some(PROBE_KEEPCNT),
        "nobody restored: {seen:?}"
    );
    Killed {
        runtime,
        _server: server,
        client,
        original,
        seen,
        cookie,
    }
}

impl Killed {
    /// The next agent: probing off, the same `--runtime-dir`.
    fn next_agent(&self, sc: &Scenario) -> Launch {
        sc.launch()
            .args(&["--runtime-dir", self.runtime.path().to_str().unwrap()])
    }
}

/// SIGKILL, as the OOM killer sends: no handler, no clean-up.
fn kill(agent: &mut Agent) {
    let pid = libc::pid_t::try_from(agent.pid()).expect("pid");
    // SAFETY: kill(2) on the agent we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = agent.stop().expect("exit status");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
}

/// The journal's entries (none when there is no file).
fn entries(runtime: &Path) -> Vec<Value> {
    let Ok(text) = fs::read_to_string(runtime.join(JOURNAL)) else {
        return Vec::new();
    };
    let journal: Value = serde_json::from_str(&text).expect("journal is JSON");
    journal["entries"].as_array().expect("entries").clone()
}

fn entry_of(runtime: &Path, cookie: u64) -> Option<Value> {
    entries(runtime)
        .into_iter()
        .find(|e| e["cookie"].as_u64() == Some(cookie))
}

/// The agent's log at `path`, and its one line containing `needle` (panics unless exactly one).
fn only_line(path: &Path, needle: &str) -> (String, String) {
    let text = fs::read_to_string(path).expect("agent log");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one line with {needle:?}: {text}");
    let line = lines[0].to_owned();
    (text, line)
}

/// A journalled options object as the peer's `options` line orders them.
fn values(options: &Value) -> [u32; 5] {
    [
        "keepalive",
        "keepidle_s",
        "keepintvl_s",
        "keepcnt",
        "user_timeout_ms",
    ]
    .map(|key| u32::try_from(options[key].as_u64().expect(key)).expect("u32"))
}

/// The next agent, probing off, finds the journal and puts the application's options back
/// before it serves: one `probe_recover` line naming the socket, and the journal empty.
#[test]
fn a_killed_probers_options_are_put_back_by_the_next_agent() {
    let Some(sc) = scenario("probe_journal_restore", Need::RootAndKernelBtf) else {
        return;
    };
    let mut k = probe_then_kill(&sc);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = k
        .next_agent(&sc)
        .rust_log(Some("info"))
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent, probing off");
    // Settled before the agent served; the peer reports its options every 20 ms.
    let restored = wait_for_optional(agent.scans(SCANS_TO_SHOW), || {
        options(&k.client, &mut k.seen);
        k.seen.last().filter(|o| **o == k.original).copied()
    });
    assert_eq!(
        restored,
        Some(k.original),
        "put back at start: {:?}",
        k.seen
    );
    assert!(entries(k.runtime.path()).is_empty(), "journal settled");
    let (text, recovered) = only_line(log.path(), "probe_recover");
    assert!(
        recovered.contains(&format!("cookie={}", k.cookie)),
        "{text}"
    );
    assert!(text.contains("restored=1"), "the summary: {text}");
}

/// The application set its own `TCP_KEEPCNT` after the kill: its options are its own, and the
/// next agent leaves them alone (and drops the entry).
#[test]
fn options_the_application_changed_after_the_kill_are_left_alone() {
    let Some(sc) = scenario("probe_journal_changed", Need::RootAndKernelBtf) else {
        return;
    };
    let mut k = probe_then_kill(&sc);
    k.client.signal_usr1().expect("SIGUSR1");
    let changed = wait_for(
        "the application's own TCP_KEEPCNT",
        Duration::from_secs(5),
        || {
            options(&k.client, &mut k.seen);
            k.seen.last().filter(|o| o[3] == 5).copied()
        },
    );
    let agent = k.next_agent(&sc).start().expect("agent, probing off");
    assert!(entries(k.runtime.path()).is_empty(), "journal settled");
    // The journal is read before the agent serves; a few scans later nothing has moved.
    agent.wait_scans(2);
    options(&k.client, &mut k.seen);
    assert_eq!(k.seen.last(), Some(&changed), "left alone: {:?}", k.seen);
}

/// Probing needs its journal: with a `--runtime-dir` that cannot be created, the agent warns
/// once, monitors as usual, and probes nothing (its probe counter is not even registered).
#[test]
fn no_writable_journal_no_probing() {
    let Some(sc) = agent_only("probe_journal_unwritable", Need::RootAndKernelBtf) else {
        return;
    };
    // Below a regular file: no directory can be made there, not even by root.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let below_a_file = file.path().join("tcp-liveness");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let agent = sc
        .launch()
        .args(&["--probe", "--runtime-dir", below_a_file.to_str().unwrap()])
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("the agent runs without probing");
    agent.wait_scans(2);
    assert_eq!(
        agent.metric("tcp_liveness_probes_total{result=\"answered\"}"),
        None
    );
    let (text, warning) = only_line(log.path(), "keepalive probes stay off");
    let named = below_a_file.display().to_string();
    assert!(warning.contains(&named), "names the directory: {text}");
}
