//! Container attribution: the cgroup v2 path of each owning process, cached per pid.

use std::collections::HashMap;

use crate::table::Connection;

#[derive(Default)]
pub struct CgroupCache {
    by_pid: HashMap<u32, Option<String>>,
}

impl CgroupCache {
    /// Sets `cgroup` on every connection with a known pid. Reads /proc only for pids not seen in
    /// the previous scan, and forgets pids that own nothing any more (pids get reused).
    pub fn annotate(&mut self, connections: &mut [Connection]) {
        let mut seen = HashMap::with_capacity(self.by_pid.len());
        for c in connections.iter_mut() {
            let Some(pid) = c.pid else { continue };
            let cgroup = seen
                .entry(pid)
                .or_insert_with(|| self.by_pid.remove(&pid).unwrap_or_else(|| read(pid)))
                .clone();
            c.cgroup = cgroup;
        }
        self.by_pid = seen;
    }
}

fn read(pid: u32) -> Option<String> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// The unified (v2) hierarchy line is `0::/path`; hybrid hosts list v1 controllers too.
fn parse(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_unified_hierarchy() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/system.slice/redis.service\n";
        assert_eq!(
            parse(hybrid).as_deref(),
            Some("/system.slice/redis.service")
        );
        assert_eq!(parse("3:cpu:/\n"), None);
    }

    #[test]
    fn annotates_our_own_process() {
        let local = "127.0.0.1:1".parse().unwrap();
        let mut c = Connection::new(1, 1, local, local);
        c.pid = Some(std::process::id());
        let mut cache = CgroupCache::default();
        cache.annotate(std::slice::from_mut(&mut c));
        assert_eq!(c.cgroup, read(std::process::id()));
        assert!(c.cgroup.is_some(), "this host has a cgroup v2 hierarchy");
    }
}
