//! What every module shares: the agent's binary, the scenario constructors bound to it, the
//! check for a tool on the machine, and the systemd unit's verification.
//!
//! The scenario itself ([`harness::scenario`]) lives in the harness, next to the guards it is
//! made of; only the binary's path is known here (`CARGO_BIN_EXE_*` is set for test crates).

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use harness::{
    privilege::{self, Need},
    scenario::Scenario,
};

pub(crate) use harness::agent::SCANS_TO_SHOW;

/// The `tcp-liveness` binary cargo built for these tests.
pub(crate) const AGENT: &str = env!("CARGO_BIN_EXE_tcp-liveness");

/// The set-up of a test with namespaces: None when the machine lacks `need` (the test returns;
/// under `CI=true` this panics instead). See [`Scenario::with_net`].
pub(crate) fn scenario(test: &str, need: Need) -> Option<Scenario> {
    Scenario::with_net(AGENT, test, need)
}

/// The set-up of a test of the agent alone (no namespaces). See [`Scenario::agent_only`].
pub(crate) fn agent_only(test: &str, need: Need) -> Option<Scenario> {
    Scenario::agent_only(AGENT, test, need)
}

/// True when `tool` is on `PATH`; otherwise false (skip) outside CI, a panic under `CI=true`.
/// `why` says where it comes from (a Debian package).
pub(crate) fn have(tool: &str, why: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found || privilege::skip(tool, &format!("missing ({why})"))
}

/// A command's stdout then stderr, as text: for assertion messages.
pub(crate) fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `systemd-analyze verify UNIT`, which must print nothing (an unknown key or a bad value is
/// only a warning there, exit 0: any output is a failure), and `systemd-analyze security`'s
/// exposure of it at most 3.0 (0 is locked down, 10 unprotected; the unit is at 2.6). Its
/// `ExecStart` binary must exist.
///
/// # Panics
/// When `systemd-analyze` cannot run or either check fails.
pub(crate) fn verify_unit(unit: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("run systemd-analyze verify");
    let text = output_text(&out);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify {}: {text}",
        unit.display()
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30", "--no-pager"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    assert!(
        out.status.success(),
        "exposure of {} above 3.0:\n{}",
        unit.display(),
        output_text(&out)
    );
}
