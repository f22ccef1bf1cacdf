//! Container attribution: the cgroup v2 path of each owning process, cached per pid.
//!
//! One `Arc<str>` per pid, shared by every connection of that process: attribution costs a
//! reference count per socket, not a string.

use std::{collections::HashMap, sync::Arc};

#[derive(Default)]
pub(crate) struct CgroupCache {
    /// Pids looked up since the current scan started.
    current: HashMap<u32, Option<Arc<str>>>,
    /// Pids of the previous scan not looked up again yet; dropped at the end of the scan.
    previous: HashMap<u32, Option<Arc<str>>>,
}

impl CgroupCache {
    /// Starts a full pass over the table: pids not looked up again before [`end_scan`] are
    /// forgotten (pids get reused).
    ///
    /// [`end_scan`]: Self::end_scan
    pub(crate) fn start_scan(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    pub(crate) fn end_scan(&mut self) {
        self.previous = HashMap::new();
    }

    /// The cgroup of `pid`. Reads /proc only for pids not seen in the previous scan.
    pub(crate) fn cgroup_of(&mut self, pid: u32) -> Option<Arc<str>> {
        if let Some(cgroup) = self.current.get(&pid) {
            return cgroup.clone();
        }
        let cgroup = self.previous.remove(&pid).unwrap_or_else(|| read(pid));
        self.current.insert(pid, cgroup.clone());
        cgroup
    }
}

fn read(pid: u32) -> Option<Arc<str>> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?).map(Arc::from)
}

/// The unified (v2) hierarchy line is `0::/path`; hybrid hosts list v1 controllers too.
fn parse(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_unified_hierarchy() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/system.slice/redis.service\n";
        assert_eq!(parse(hybrid), Some("/system.slice/redis.service"));
        assert_eq!(parse("3:cpu:/\n"), None);
    }

    #[test]
    fn attributes_our_own_process_and_shares_the_string() {
        let pid = std::process::id();
        let mut cache = CgroupCache::default();
        cache.start_scan();
        let first = cache.cgroup_of(pid);
        assert_eq!(first, read(pid));
        assert!(first.is_some(), "this host has a cgroup v2 hierarchy");
        let again = cache.cgroup_of(pid);
        assert!(Arc::ptr_eq(
            first.as_ref().unwrap(),
            again.as_ref().unwrap()
        ));
        cache.end_scan();
        // Kept across one scan boundary, forgotten after a scan that did not see the pid.
        cache.start_scan();
        assert!(Arc::ptr_eq(
            first.as_ref().unwrap(),
            &cache.cgroup_of(pid).unwrap()
        ));
        cache.end_scan();
        cache.start_scan();
        cache.end_scan();
        assert!(cache.current.is_empty() && cache.previous.is_empty());
    }
}
