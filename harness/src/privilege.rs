//! The one gate for tests that need more than a build: root, the kernel's BTF, or a tool on the
//! machine. Without it a test skips with a message, except under `CI=true`, where a skip would
//! hide a broken set-up: there a missing privilege or tool is a failure.
//!
//! Tasks a human asks for (`cargo xtask bench`, `demo`) never skip: [`require_root`] is an error.

use std::path::Path;

use anyhow::bail;

/// Where the kernel publishes its own BTF: needed to compute struct offsets and to load BTF
/// tracepoints. Readable without root.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What a test needs from the machine beyond a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0: `ip netns`, iptables, setns and `sock_diag` in other namespaces.
    Root,
    /// The kernel's BTF at [`KERNEL_BTF`].
    KernelBtf,
    /// Both: loading and attaching the agent's BPF programs.
    RootAndKernelBtf,
}

/// True when `CI=true` is set: the CI run (`.ci/run`) must not pass by skipping.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when the effective uid is 0.
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when [`KERNEL_BTF`] exists.
#[must_use]
pub fn has_kernel_btf() -> bool {
    Path::new(KERNEL_BTF).exists()
}

/// True when `test` may run because the machine has what `need` names; otherwise [`skip`]s it
/// (false). Root is checked before BTF, so the message names the first thing missing.
///
/// # Panics
/// Under `CI=true` when something is missing.
#[must_use]
pub fn may_run(test: &str, need: Need) -> bool {
    let wants_root = matches!(need, Need::Root | Need::RootAndKernelBtf);
    let wants_btf = matches!(need, Need::KernelBtf | Need::RootAndKernelBtf);
    let missing = if wants_root && !is_root() {
        "not root"
    } else if wants_btf && !has_kernel_btf() {
        "no kernel BTF at /sys/kernel/btf/vmlinux"
    } else {
        return true;
    };
    let needs = match need {
        Need::Root => "root",
        Need::KernelBtf => "the kernel's BTF",
        Need::RootAndKernelBtf => "root and BPF",
    };
    skip(test, &format!("needs {needs} ({missing})"))
}

/// Skips `test` because of `why` (a message on stderr) and returns false, so a test can
/// `return privilege::skip(…)` or use it in a condition.
///
/// # Panics
/// Under `CI=true`: there a skip is a failure.
#[must_use]
pub fn skip(test: &str, why: &str) -> bool {
    assert!(
        !in_ci(),
        "{test}: {why}; CI=true makes this a failure, not a skip"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// For tasks a human started (`cargo xtask bench`, `demo`): Ok when the effective uid is 0.
///
/// # Errors
/// When it is not: the error says that `task` needs root, and `why`.
pub fn require_root(task: &str, why: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!("{task} needs root: {why}");
    }
    Ok(())
}
