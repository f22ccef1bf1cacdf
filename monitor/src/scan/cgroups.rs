//! Container attribution: the cgroup v2 path of each owning process, cached per pid.
//!
//! One `Arc<str>` per pid, shared by every connection of that process: attribution costs a
//! reference count per socket, not a string.

use std::{collections::HashMap, sync::Arc};

pub(crate) struct CgroupCache {
    /// Pids looked up since the current scan started.
    current: HashMap<u32, Option<Arc<str>>>,
    /// Pids of the previous scan not looked up again yet; dropped at the end of the scan.
    previous: HashMap<u32, Option<Arc<str>>>,
    /// Where a pid's cgroup comes from: `/proc/PID/cgroup` (a fixed table in tests).
    lookup: fn(u32) -> Option<Arc<str>>,
}

impl Default for CgroupCache {
    fn default() -> Self {
        Self::with_lookup(read)
    }
}

impl CgroupCache {
    fn with_lookup(lookup: fn(u32) -> Option<Arc<str>>) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            lookup,
        }
    }

    /// Starts a full pass over the table: pids not looked up again before [`end_scan`] are
    /// forgotten (pids get reused).
    ///
    /// [`end_scan`]: Self::end_scan
    pub(crate) fn start_scan(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// Ends the pass: pids of the previous pass not seen in this one are forgotten.
    pub(crate) fn end_scan(&mut self) {
        self.previous = HashMap::new();
    }

    /// The cgroup of `pid`. Reads /proc only for pids not seen in the previous scan.
    pub(crate) fn cgroup_of(&mut self, pid: u32) -> Option<Arc<str>> {
        if let Some(cgroup) = self.current.get(&pid) {
            return cgroup.clone();
        }
        let cgroup = self
            .previous
            .remove(&pid)
            .unwrap_or_else(|| (self.lookup)(pid));
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn picks_the_unified_hierarchy() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/system.slice/redis.service\n";
        assert_eq!(parse(hybrid), Some("/system.slice/redis.service"));
        assert_eq!(parse("3:cpu:/\n"), None);
    }

    /// A fixed lookup: pid 7 is in redis.service, every other pid has no cgroup; counts calls.
    fn fixed(pid: u32) -> Option<Arc<str>> {
        LOOKUPS.fetch_add(1, Ordering::Relaxed);
        (pid == 7).then(|| Arc::from("/system.slice/redis.service"))
    }
    static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn one_lookup_per_pid_shared_string_forgotten_after_an_unseen_scan() {
        let mut cache = CgroupCache::with_lookup(fixed);
        cache.start_scan();
        let first = cache.cgroup_of(7).expect("pid 7 has a cgroup");
        assert_eq!(&*first, "/system.slice/redis.service");
        let again = cache.cgroup_of(7).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one string per pid");
        assert_eq!(cache.cgroup_of(8), None);
        assert_eq!(LOOKUPS.load(Ordering::Relaxed), 2, "pid 7 once, pid 8 once");
        cache.end_scan();
        // Kept across one scan boundary without another lookup...
        cache.start_scan();
        assert!(Arc::ptr_eq(&first, &cache.cgroup_of(7).unwrap()));
        assert_eq!(LOOKUPS.load(Ordering::Relaxed), 2);
        cache.end_scan();
        // ...forgotten after a scan that did not see the pid (pids get reused).
        cache.start_scan();
        cache.end_scan();
        assert!(cache.current.is_empty() && cache.previous.is_empty());
        cache.start_scan();
        cache.cgroup_of(7);
        assert_eq!(LOOKUPS.load(Ordering::Relaxed), 3);
    }
}
