//! A process's descriptors as `/proc` tells them: the entries of `/proc/PID/fd` and the soft
//! limit in `/proc/PID/limits`. Read only for the processes holding the most suspects, once
//! per scan.

use std::path::Path;

use super::Descriptors;

/// `pid`'s descriptors in use and soft limit; None when the process is gone or its `/proc`
/// entries cannot be read (another user's process without `CAP_SYS_PTRACE`).
#[must_use]
pub fn read(pid: u32) -> Option<Descriptors> {
    let dir = Path::new("/proc").join(pid.to_string());
    let open = std::fs::read_dir(dir.join("fd")).ok()?.count() as u64;
    let limits = std::fs::read_to_string(dir.join("limits")).ok()?;
    Some(Descriptors {
        open,
        max: soft_open_files(&limits)?,
    })
}

/// The soft limit on the "Max open files" line of a `/proc/PID/limits` text: Some(None) when
/// unlimited, None when the line is missing or malformed.
#[must_use]
pub fn soft_open_files(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}
