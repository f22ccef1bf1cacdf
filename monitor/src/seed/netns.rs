//! Finding the host's network namespaces and running code inside one.

use std::{
    collections::HashSet,
    fs::{self, File},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    thread,
};

use nix::sched::CloneFlags;

use super::SeedError;

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

/// Runs `f` inside `ns`. `setns()` moves only the calling thread, so a foreign namespace is entered
/// on a short-lived thread that dies with it; the caller's thread never changes namespace.
///
/// # Errors
/// The namespace cannot be opened or entered, the thread cannot start or panics, or `f` fails.
pub(super) fn run_in<T, F>(ns: &Netns, f: F) -> Result<T, SeedError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SeedError> + Send + 'static,
{
    if ns_inode(Path::new(THREAD_NETNS)) == Some(ns.inode) {
        return f();
    }
    // Opened here so a vanished namespace is reported before a thread is spawned.
    let file = File::open(&ns.path).map_err(|source| SeedError::OpenNamespace {
        path: ns.path.clone(),
        source,
    })?;
    let path = ns.path.clone();
    let handle = thread::Builder::new()
        .name("seed-netns".into())
        .spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| {
                SeedError::EnterNamespace {
                    path: path.clone(),
                    source,
                }
            })?;
            f()
        })
        .map_err(SeedError::Thread)?;
    handle
        .join()
        .map_err(|_| SeedError::ThreadPanicked(ns.path.clone()))?
}

/// Runs `f` inside `ns` and returns its result, as [`run_in`] does for the dumps: on the calling
/// thread when it is already in `ns`, else on a short-lived thread that enters `ns` first. For
/// work other than a `sock_diag` dump, whose errors are its own (`T` may be a `Result`): reading a
/// BPF iterator, which walks the namespace of the thread that creates it.
///
/// # Errors
/// The namespace cannot be opened ([`SeedError::OpenNamespace`]) or entered
/// ([`SeedError::EnterNamespace`]), or its thread cannot start or panicked.
pub fn in_namespace<T, F>(ns: &Netns, f: F) -> Result<T, SeedError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_in(ns, move || Ok(f()))
}

/// Numeric entries of `/proc`, ascending.
pub(super) fn pids() -> Vec<u32> {
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
    fn run_in_own_namespace_stays_on_the_caller_thread() {
        let own = Netns {
            inode: ns_inode(Path::new(SELF_NETNS)).expect("own namespace readable"),
            path: PathBuf::from(SELF_NETNS),
        };
        let caller = thread::current().id();
        let ran_on = run_in(&own, move || Ok(thread::current().id())).expect("runs");
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
    fn vanished_namespace_is_an_open_error() {
        let gone = Netns {
            inode: 1,
            path: PathBuf::from("/proc/0/ns/net"),
        };
        let err = run_in(&gone, || Ok(())).expect_err("no such namespace");
        assert!(err.is_vanished_namespace(), "{err}");
    }
}
