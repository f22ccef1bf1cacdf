//! The cgroup v2 hierarchy: where it is mounted (`/sys/fs/cgroup` on unified hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones) and a cgroup's id and depth, as the kernel program
//! compares them (`monitor_common::enforce`).

use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
///
/// # Errors
/// `mountinfo` cannot be read, or lists no `cgroup2` file system (`NotFound`).
pub fn v2_root() -> io::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    v2_root_in(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 file system in /proc/self/mountinfo",
        )
    })
}

/// The first `cgroup2` mount point of a `mountinfo` text (`man 5 proc`: the mount point is the
/// fifth field; the file system type follows the ` - ` separator).
fn v2_root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// The cgroup id (the directory's inode number, what `kernfs_node.id` holds) of cgroup `path`
/// (as `/proc/PID/cgroup` writes it) under `root`: one `stat`.
///
/// # Errors
/// The directory cannot be read (`NotFound`: there is no such cgroup), or the path names a file
/// (`NotADirectory`).
pub fn id(root: &Path, path: &str) -> io::Result<u64> {
    let meta = std::fs::metadata(root.join(path.trim_start_matches('/')))?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a cgroup directory",
        ));
    }
    Ok(meta.ino())
}

/// The cgroup id of a cgroup v2 hierarchy's root (kernfs numbers its root directory 1).
const HIERARCHY_ROOT_ID: u64 = 1;

/// True when directory `dir` is the root cgroup of the host's cgroup v2 hierarchy, not a
/// cgroup below it: what a container with its own cgroup namespace sees at `/sys/fs/cgroup`
/// unless the host's `/sys/fs/cgroup` is mounted there. One `stat` (its inode is the cgroup id).
///
/// # Errors
/// The directory cannot be read.
pub fn is_hierarchy_root(dir: &Path) -> io::Result<bool> {
    Ok(std::fs::metadata(dir)?.ino() == HIERARCHY_ROOT_ID)
}

/// The depth of cgroup `path` in the hierarchy: the root is 0, `/a` is 1, `/a/b` is 2.
#[must_use]
pub fn level(path: &str) -> u32 {
    let level = path.split('/').filter(|c| !c.is_empty()).count();
    u32::try_from(level).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_on_a_hybrid_host() {
        let text = "30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                    31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
                    32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            v2_root_in(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(v2_root_in("1 0 0:1 / / rw - ext4 /dev/sda rw\n"), None);
    }

    #[test]
    fn a_directory_below_the_root_is_not_the_hierarchy_root() {
        let dir = tempfile::tempdir().expect("a directory");
        assert!(!is_hierarchy_root(dir.path()).expect("stat"));
        assert!(is_hierarchy_root(&dir.path().join("gone")).is_err());
    }

    #[test]
    fn depth_counts_path_components() {
        assert_eq!(level("/"), 0);
        assert_eq!(level("/a/b"), 2);
    }

    #[test]
    fn a_missing_cgroup_is_not_found_and_a_file_is_not_one() {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::write(root.path().join("cgroup.procs"), "").expect("file");
        assert!(id(root.path(), "/").is_ok());
        let kind = |path| id(root.path(), path).map_err(|e| e.kind()).err();
        assert_eq!(kind("/no/such/cgroup"), Some(io::ErrorKind::NotFound));
        assert_eq!(kind("/cgroup.procs"), Some(io::ErrorKind::NotADirectory));
    }
}
