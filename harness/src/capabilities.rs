//! The capability sets of every thread of a process, as the kernel shows them in
//! `/proc/PID/task/TID/status` (`CapEff:\t0000000000280004`: bit n for capability n).

use std::fs;

/// `CAP_DAC_READ_SEARCH`'s bit number.
pub const DAC_READ_SEARCH: u32 = 2;
/// `CAP_NET_ADMIN`'s bit number.
pub const NET_ADMIN: u32 = 12;
/// `CAP_SYS_PTRACE`'s bit number.
pub const SYS_PTRACE: u32 = 19;
/// `CAP_SYS_ADMIN`'s bit number.
pub const SYS_ADMIN: u32 = 21;
/// `CAP_SYS_RESOURCE`'s bit number.
pub const SYS_RESOURCE: u32 = 24;
/// `CAP_PERFMON`'s bit number.
pub const PERFMON: u32 = 38;
/// `CAP_BPF`'s bit number.
pub const BPF: u32 = 39;

/// The mask with bit n set for each capability number n in `caps`.
#[must_use]
pub fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |mask, &bit| mask | 1 << bit)
}

/// One thread's name and capability sets (masks, bit n for capability n).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCaps {
    /// The thread's id (its directory under `/proc/PID/task`).
    pub tid: u32,
    /// `Name:` (the thread's comm, e.g. `tokio-rt-worker`).
    pub name: String,
    /// `CapEff:`, what the thread may do now.
    pub effective: u64,
    /// `CapPrm:`, what it may make effective again.
    pub permitted: u64,
    /// `CapInh:`.
    pub inheritable: u64,
    /// `CapBnd:`, the ceiling an `execve` could reach.
    pub bounding: u64,
    /// `CapAmb:`, kept across an `execve`.
    pub ambient: u64,
    /// `NoNewPrivs:` is 1.
    pub no_new_privs: bool,
}

/// Parses one thread's status text; None when a line it needs is missing or malformed.
#[must_use]
pub fn parse_status(tid: u32, status: &str) -> Option<ThreadCaps> {
    let field = |key: &str| {
        status.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then(|| v.trim())
        })
    };
    let hex = |key: &str| u64::from_str_radix(field(key)?, 16).ok();
    Some(ThreadCaps {
        tid,
        name: field("Name")?.to_owned(),
        effective: hex("CapEff")?,
        permitted: hex("CapPrm")?,
        inheritable: hex("CapInh")?,
        bounding: hex("CapBnd")?,
        ambient: hex("CapAmb")?,
        no_new_privs: field("NoNewPrivs")? == "1",
    })
}

/// Every thread of process `pid` still alive while it is read (a thread that ends meanwhile is
/// left out), in tid order.
#[must_use]
pub fn threads(pid: u32) -> Vec<ThreadCaps> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<ThreadCaps> = dir
        .filter_map(|entry| {
            let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
            parse_status(tid, &status)
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttokio-rt-worker\nUmask:\t0022\nState:\tS (sleeping)\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000280004\nCapEff:\t0000000000280004\n\
        CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";

    #[test]
    fn status_lines_parse_to_masks() {
        let t = parse_status(7, STATUS).expect("parses");
        assert_eq!(t.name, "tokio-rt-worker");
        assert_eq!(t.effective, mask(&[DAC_READ_SEARCH, SYS_PTRACE, SYS_ADMIN]));
        assert_eq!(t.permitted, 0x28_0004);
        assert_eq!(t.inheritable, 0);
        assert_eq!(t.bounding, (1 << 41) - 1);
        assert_eq!(t.ambient, 0);
        assert!(t.no_new_privs);
        assert_ne!(t.bounding & mask(&[BPF]), 0, "CAP_BPF is bit 39");
    }

    #[test]
    fn a_missing_or_bad_line_is_none() {
        assert_eq!(
            parse_status(7, &STATUS.replace("CapEff:\t0000000000280004\n", "")),
            None
        );
        assert_eq!(
            parse_status(7, &STATUS.replace("0000000000280004\nCapB", "zz\nCapB")),
            None
        );
    }

    #[test]
    fn own_threads_are_listed() {
        let own = threads(std::process::id());
        assert!(own.iter().any(|t| t.tid == std::process::id()), "{own:?}");
    }
}
