//! A process's descriptors as `/proc` tells them: how many `/proc/PID/fd` holds and the soft
//! limit in `/proc/PID/limits`. Read only for the processes holding the most suspects, once
//! per scan.

use std::path::Path;

use super::Descriptors;

/// `pid`'s descriptors in use and soft limit; None when the process is gone or its `/proc`
/// entries cannot be read (another user's process without `CAP_SYS_PTRACE`).
#[must_use]
pub fn read(pid: u32) -> Option<Descriptors> {
    let dir = Path::new("/proc").join(pid.to_string());
    let open = open_descriptors(&dir.join("fd"))?;
    let limits = std::fs::read_to_string(dir.join("limits")).ok()?;
    Some(Descriptors {
        open,
        max: soft_open_files(&limits)?,
    })
}

/// Descriptors open in the `/proc/PID/fd` directory `fd`. Since Linux 6.2 its `stat` size is
/// that count (the kernel counts the bits of the process's open-descriptor bitmap): one system
/// call, however many it holds. Listing the directory instead costs a dentry and a formatted
/// name per descriptor, which at tens of thousands of descriptors per process was most of a
/// scan's CPU. Older kernels report size 0 there, and are listed.
fn open_descriptors(fd: &Path) -> Option<u64> {
    let size = std::fs::metadata(fd).ok()?.len();
    if size > 0 {
        return Some(size);
    }
    Some(std::fs::read_dir(fd).ok()?.count() as u64)
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
