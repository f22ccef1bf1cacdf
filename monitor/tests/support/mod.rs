//! Shared fixtures for the kernel tests: privilege check, network namespaces joined by a veth pair,
//! peer processes, the agent itself, and the kernel's own view (`ss`) as the oracle.
//! Every fixture cleans up in Drop, so a failing assertion still removes what it created.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod agent;
pub mod net;
pub mod server;
pub mod ss;

use std::time::{Duration, Instant};

/// True when the test can run. Without root/BPF it fails under CI=true and skips elsewhere.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let bpf_ok = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    if root && bpf_ok {
        return true;
    }
    let why = if root { "no kernel BTF" } else { "not root" };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root and BPF ({why}); CI=true makes this a failure, not a skip"
    );
    eprintln!("SKIPPED {test}: needs root and BPF ({why})");
    false
}

/// Polls `check` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_for_optional(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` until it returns Some, or gives None after `timeout`.
pub fn wait_for_optional<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
