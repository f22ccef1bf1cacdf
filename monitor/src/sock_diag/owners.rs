//! Which process holds each socket: `/proc/*/fd/*` links of the form `socket:[INODE]`.

use std::{collections::HashMap, fs, path::Path};

use crate::model::{TASK_COMM_LEN, kernel_buffer};
use crate::netns;

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// `/proc/PID/comm` as the kernel's NUL-padded buffer: raw bytes, made text (lossily) only
    /// where every name is, when the table entry is read.
    pub comm: [u8; TASK_COMM_LEN],
}

/// Owner of each socket inode. A socket shared by several processes (fork, fd passing) is given
/// to the lowest pid, so repeated scans agree. Unreadable entries are skipped: processes exit while
/// we look, and without `CAP_SYS_PTRACE` others' fd tables are closed to us.
#[must_use]
pub fn socket_owners() -> HashMap<u32, Owner> {
    let mut comms: HashMap<u32, [u8; TASK_COMM_LEN]> = HashMap::new();
    socket_holders()
        .into_iter()
        .map(|(inode, pid)| {
            // Read once per process, and only for processes that hold a socket.
            let comm = comms
                .entry(pid)
                .or_insert_with(|| read_comm(&Path::new("/proc").join(pid.to_string())));
            (inode, Owner { pid, comm: *comm })
        })
        .collect()
}

/// The pid holding each socket inode (as [`socket_owners`], without the names).
#[must_use]
pub fn socket_holders() -> HashMap<u32, u32> {
    let mut holders = HashMap::new();
    // Ascending pids: the first process seen holding an inode is the lowest.
    for pid in netns::pids() {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = fs::read_link(fd.path())
                .ok()
                .and_then(|target| socket_inode(target.to_str()?))
            {
                holders.entry(inode).or_insert(pid);
            }
        }
    }
    holders
}

/// The inode in a `socket:[N]` fd link.
fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Bytes, not `read_to_string`: a name that is not UTF-8 must not become an empty one.
fn read_comm(proc_dir: &Path) -> [u8; TASK_COMM_LEN] {
    fs::read(proc_dir.join("comm"))
        .map(|comm| kernel_buffer(&comm))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_links() {
        assert_eq!(socket_inode("socket:[123456]"), Some(123_456));
        assert_eq!(socket_inode("socket:[4294967295]"), Some(u32::MAX));
        assert_eq!(socket_inode("pipe:[123]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[12"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }
}
