//! Running the system tools the harness drives (`ip`, `iptables`, `apt-get`, …), and a guard
//! for child processes.

use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

/// Runs `program args` with stdio inherited (its own error messages reach the terminal).
///
/// # Errors
/// When it cannot be started or does not exit 0; the error names the command and its status.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    check(Command::new(program).args(args))
}

/// Runs `cmd` to completion.
///
/// # Errors
/// When it cannot be started or does not exit 0; the error names the command and its status.
pub fn check(cmd: &mut Command) -> anyhow::Result<()> {
    let what = describe(cmd);
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `program arg arg…`, for messages.
fn describe(cmd: &Command) -> String {
    let words = std::iter::once(cmd.get_program()).chain(cmd.get_args());
    let words: Vec<_> = words.map(|w| w.to_string_lossy()).collect();
    words.join(" ")
}

/// Runs `program args` with its output discarded, ignoring how it ends: for clean-up that may
/// find nothing to remove (a leftover namespace from an earlier run, for example).
pub fn run_quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A child process that is killed (SIGKILL) and reaped when the guard is dropped, so nothing a
/// test or tool starts outlives it, even when it panics.
#[derive(Debug)]
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Takes ownership of a spawned child.
    #[must_use]
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    /// The child's pid.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The child itself, e.g. to take its stdio or poll `try_wait`.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.0
    }

    /// Kills and reaps the child now; nothing happens if it already exited.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
