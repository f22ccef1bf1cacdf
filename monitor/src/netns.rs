//! Finding the host's network namespaces and running code inside one: the toolkit of every
//! room that works per namespace (`sock_diag` dumps and queries, the kernel-state iterator
//! reads, the namespace sysctls, the socket-option iterator of `[probe]` and `[[enforce]]`).

use std::{
    collections::HashSet,
    fs::{self, File},
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    thread,
};

use nix::sched::CloneFlags;

/// Why a namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    OpenNamespace { path: PathBuf, source: io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    EnterNamespace { path: PathBuf, source: nix::Error },
    #[error("cannot start the thread that enters a namespace: {0}")]
    Thread(io::Error),
    #[error("the thread dumping namespace {0} panicked")]
    ThreadPanicked(PathBuf),
}

impl NetnsError {
    /// The namespace went away between listing and entering (its last process exited):
    /// expected churn, not worth a warning.
    #[must_use]
    pub fn is_vanished_namespace(&self) -> bool {
        matches!(self, Self::OpenNamespace { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)))
    }

    /// The error of the namespace whose inode is `netns` when no process and no bind mount
    /// holds it any more (what opening its file would have said).
    #[must_use]
    pub fn vanished(netns: u32) -> Self {
        Self::OpenNamespace {
            path: format!("net:[{netns}]").into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        }
    }
}

/// The name of the short-lived threads that enter a namespace (`ps -T` shows it; the
/// privilege tests look for it among the threads that keep capabilities).
const THREAD_NAME: &str = "seed-netns";

/// A network namespace the agent can enter: its inode and a path to open it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    /// Inode of the nsfs file: the id the kernel programs read from `net->ns.inum`.
    pub inode: u32,
    pub path: PathBuf,
}

const SELF_NETNS: &str = "/proc/self/ns/net";
/// The calling thread's namespace (a thread that called setns differs from `/proc/self`).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";
/// Where `ip netns add` bind-mounts named namespaces (they may have no process in them).
const NAMED_NETNS_DIR: &str = "/run/netns";

/// Every distinct network namespace: `/proc/self/ns/net` first, then `/proc/*/ns/net` (in pid
/// order) and `/run/netns/*`, deduplicated by inode. Unreadable entries are skipped silently:
/// processes exit while we look, and an unprivileged agent cannot read others' namespaces.
#[must_use]
pub fn find_namespaces() -> Vec<Netns> {
    let mut candidates = vec![PathBuf::from(SELF_NETNS)];
    candidates.extend(
        pids()
            .into_iter()
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/net"))),
    );
    candidates.extend(sorted_entries(Path::new(NAMED_NETNS_DIR)));

    let mut seen = HashSet::new();
    candidates
        .into_iter()
        .filter_map(|path| {
            let inode = ns_inode(&path)?;
            seen.insert(inode).then_some(Netns { inode, path })
        })
        .collect()
}

/// Inode of a namespace file, `None` when it cannot be read. nsfs inodes are 32-bit
/// (`proc_inum`), the same width the kernel table stores.
#[must_use]
pub fn ns_inode(path: &Path) -> Option<u32> {
    let meta = fs::metadata(path).ok()?;
    u32::try_from(meta.ino()).ok()
}

/// Runs `f` inside `ns` and returns its result (`T` may be a `Result` of `f`'s own errors). `setns()`
/// moves only the calling thread, so a foreign namespace is entered on a short-lived thread that
/// dies with it; the caller's thread never changes namespace, and when it is already in `ns`, `f`
/// runs on it. For work that depends on the caller's namespace: a netlink socket answers for the
/// namespace it was made in, a BPF iterator walks the namespace of the thread that creates it.
///
/// # Errors
/// The namespace cannot be opened ([`NetnsError::OpenNamespace`]) or entered
/// ([`NetnsError::EnterNamespace`]), or its thread cannot start or panicked.
pub fn in_namespace<T, F>(ns: &Netns, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if ns_inode(Path::new(THREAD_NETNS)) == Some(ns.inode) {
        return Ok(f());
    }
    // Opened here so a vanished namespace is reported before a thread is spawned.
    let file = File::open(&ns.path).map_err(|source| NetnsError::OpenNamespace {
        path: ns.path.clone(),
        source,
    })?;
    let path = ns.path.clone();
    let handle = thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|source| NetnsError::EnterNamespace { path, source })?;
            Ok(f())
        })
        .map_err(NetnsError::Thread)?;
    handle
        .join()
        .map_err(|_| NetnsError::ThreadPanicked(ns.path.clone()))?
}

/// [`in_namespace`] for the namespace whose inode is `inode`, looked up in `/proc`.
///
/// # Errors
/// No process is in that namespace any more ([`NetnsError::vanished`]), or as [`in_namespace`].
pub fn in_namespace_of<T, F>(inode: u32, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = find_namespaces()
        .into_iter()
        .find(|ns| ns.inode == inode)
        .ok_or_else(|| NetnsError::vanished(inode))?;
    in_namespace(&ns, f)
}

/// Numeric entries of `/proc`, ascending.
pub(crate) fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_comes_first() {
        let found = find_namespaces();
        let first = found.first().expect("at least the agent's own namespace");
        assert_eq!(first.path, Path::new(SELF_NETNS));
        assert_eq!(Some(first.inode), ns_inode(Path::new(SELF_NETNS)));
        let mut inodes: Vec<u32> = found.iter().map(|ns| ns.inode).collect();
        inodes.sort_unstable();
        inodes.dedup();
        assert_eq!(inodes.len(), found.len(), "namespaces are deduplicated");
    }

    #[test]
    fn own_namespace_stays_on_the_caller_thread() {
        let own = Netns {
            inode: ns_inode(Path::new(SELF_NETNS)).expect("own namespace readable"),
            path: PathBuf::from(SELF_NETNS),
        };
        let caller = thread::current().id();
        let ran_on = in_namespace(&own, move || thread::current().id()).expect("runs");
        assert_eq!(ran_on, caller);
    }

    #[test]
    fn in_namespace_hands_back_the_closures_own_result() {
        let own = Netns {
            inode: ns_inode(Path::new(SELF_NETNS)).expect("own namespace readable"),
            path: PathBuf::from(SELF_NETNS),
        };
        let inner: Result<u32, &str> = in_namespace(&own, || Err("its own error")).expect("ran");
        assert_eq!(inner, Err("its own error"));
        let gone = Netns {
            inode: 1,
            path: PathBuf::from("/proc/0/ns/net"),
        };
        let err = in_namespace(&gone, || 7).expect_err("no such namespace");
        assert!(err.is_vanished_namespace(), "{err}");
    }

    #[test]
    fn a_namespace_nobody_holds_reads_as_vanished() {
        let err = NetnsError::vanished(1);
        assert!(err.is_vanished_namespace(), "{err}");
        assert_eq!(
            err.to_string(),
            "cannot open network namespace net:[1]: No such file or directory (os error 2)"
        );
    }
}
