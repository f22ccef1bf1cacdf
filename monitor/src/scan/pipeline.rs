//! The one per-socket path, shared by the scan and `/connections`: kernel entry → converted
//! [`Connection`] → owner's cgroup → verdicts. Nothing is collected: each connection is handed
//! to the caller and dropped unless the caller keeps it.

use std::sync::{Mutex, MutexGuard};

use monitor_common::{SockActivity, tcp_state};

use super::{
    cgroups::CgroupCache,
    convert::{self, SocketDefaults},
};
use crate::{
    model::Connection,
    probes::SocketSource,
    verdict::{self, Policy},
};

/// What judging a socket needs; fixed for the agent's lifetime except the cgroup cache.
pub struct Pipeline {
    pub defaults: SocketDefaults,
    pub policy: Policy,
    /// Shared by the scan and the HTTP handlers; each pass takes it once, not once per socket.
    cgroups: Mutex<CgroupCache>,
}

impl Pipeline {
    #[must_use]
    pub fn new(defaults: SocketDefaults, policy: Policy) -> Self {
        Self {
            defaults,
            policy,
            cgroups: Mutex::default(),
        }
    }

    /// A scan: every live socket of `source`, judged as of `now_ns`. Also ages the cgroup cache
    /// (pids that own no socket any more are forgotten).
    pub fn scan(&self, source: &dyn SocketSource, now_ns: u64, f: &mut dyn FnMut(Connection)) {
        let mut cgroups = self.cgroups();
        cgroups.start_scan();
        self.pass(&mut cgroups, source, now_ns, f);
        cgroups.end_scan();
    }

    /// Like [`scan`](Self::scan), for readers between scans (`/connections`). The cgroup cache
    /// is locked per socket, not for the pass: `f` may wait on a slow client, and a scan must
    /// not wait behind it.
    pub fn read(&self, source: &dyn SocketSource, now_ns: u64, f: &mut dyn FnMut(Connection)) {
        source.for_each_socket(&mut |cookie, entry| {
            let judged = self.judge(cookie, entry, now_ns, &mut self.cgroups());
            if let Some(c) = judged {
                f(c);
            }
        });
    }

    fn cgroups(&self) -> MutexGuard<'_, CgroupCache> {
        // A panic mid-pass leaves a valid cache (at worst missing entries).
        crate::locks::lock(&self.cgroups)
    }

    fn pass(
        &self,
        cgroups: &mut CgroupCache,
        source: &dyn SocketSource,
        now_ns: u64,
        f: &mut dyn FnMut(Connection),
    ) {
        source.for_each_socket(&mut |cookie, entry| {
            if let Some(c) = self.judge(cookie, entry, now_ns, cgroups) {
                f(c);
            }
        });
    }

    /// One entry; None for CLOSE and `TIME_WAIT`, which are never live entries (a straggler would
    /// make counts differ from what `ss` shows for live sockets).
    fn judge(
        &self,
        cookie: u64,
        entry: &SockActivity,
        now_ns: u64,
        cgroups: &mut CgroupCache,
    ) -> Option<Connection> {
        if entry.state == tcp_state::CLOSE || entry.state == tcp_state::TIME_WAIT {
            return None;
        }
        let mut c = convert::connection(cookie, entry, now_ns, &self.defaults);
        c.cgroup = c.pid.and_then(|pid| cgroups.cgroup_of(pid));
        (c.suspect, c.gives_up_in) = verdict::evaluate(&c, &self.policy);
        Some(c)
    }
}
