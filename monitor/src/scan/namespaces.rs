//! The defaults each socket inherits, per network namespace: `tcp_keepalive_*` and
//! `tcp_retries2` are per-namespace sysctls (a pod sets its own), so a socket is judged by its
//! own namespace's values, never the agent's.
//!
//! Read from a thread inside each namespace ([`netns::in_namespace`]), cached by namespace inode, and
//! read again when a scan meets a namespace it does not know yet (at most every
//! [`RETRY_EVERY`]) and every [`REREAD_EVERY`] (sysctls can change).

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{convert::SocketDefaults, kernel_defaults, kernel_state::FastMap};
use crate::{locks, netns};

/// How soon a namespace met for the first time is read.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(5);
/// How often every namespace is read again.
pub(crate) const REREAD_EVERY: Duration = Duration::from_mins(1);

/// Namespace inode → the defaults of that namespace.
pub(crate) type DefaultsByNetns = Arc<FastMap<u32, SocketDefaults>>;

/// The defaults of every namespace read so far, and the agent's own as the fallback.
pub(crate) struct NamespaceDefaults {
    /// The agent's own namespace's: for sockets whose namespace is unknown or not read yet.
    host: SocketDefaults,
    by_netns: RwLock<DefaultsByNetns>,
    /// A pass met a namespace not read yet: the next refresh reads the namespaces again.
    missing: AtomicBool,
    /// When namespaces were last read (None: never).
    last_read: Mutex<Option<Instant>>,
}

impl NamespaceDefaults {
    /// Only `host` known until the first [`refresh`](Self::refresh).
    pub(crate) fn new(host: SocketDefaults) -> Self {
        Self {
            host,
            by_netns: RwLock::default(),
            missing: AtomicBool::new(false),
            last_read: Mutex::new(None),
        }
    }

    /// The kernel's tick rate (`CONFIG_HZ`; the same in every namespace), None when unknown.
    pub(crate) fn hz(&self) -> Option<u32> {
        self.host.hz
    }

    /// The table as of now, for one pass (one lock per pass, not per socket).
    pub(crate) fn current(&self) -> DefaultsByNetns {
        Arc::clone(&locks::read(&self.by_netns))
    }

    /// The defaults of a socket in `netns`, from `table` ([`current`](Self::current)); the
    /// agent's own when the namespace is unknown or not read yet (noted for the next refresh).
    pub(crate) fn of(&self, table: &DefaultsByNetns, netns: Option<u32>) -> SocketDefaults {
        match netns {
            Some(inode) => table.get(&inode).copied().unwrap_or_else(|| {
                self.missing.store(true, Ordering::Relaxed);
                self.host
            }),
            None => self.host,
        }
    }

    /// Reads every namespace's sysctls if it is time: never read, a namespace was missing and
    /// [`RETRY_EVERY`] has passed, or [`REREAD_EVERY`] has passed. Namespaces that cannot be
    /// entered (gone, or no privilege) are left out and keep the agent's defaults.
    pub(crate) fn refresh_if_due(&self) {
        let mut last_read = locks::lock(&self.last_read);
        let since = last_read.map(|at| at.elapsed());
        let due = match since {
            None => true,
            Some(since) => {
                since >= REREAD_EVERY
                    || (since >= RETRY_EVERY && self.missing.load(Ordering::Relaxed))
            }
        };
        if !due {
            return;
        }
        self.missing.store(false, Ordering::Relaxed);
        *last_read = Some(Instant::now());
        let hz = self.host.hz;
        let table: FastMap<u32, SocketDefaults> = netns::find_namespaces()
            .iter()
            .filter_map(|ns| {
                let read = netns::in_namespace(ns, move || kernel_defaults::namespace_sysctls(hz));
                read.ok().map(|defaults| (ns.inode, defaults))
            })
            .collect();
        *locks::write(&self.by_netns) = Arc::new(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_table(table: FastMap<u32, SocketDefaults>) -> NamespaceDefaults {
        let defaults = NamespaceDefaults::new(SocketDefaults::default());
        *locks::write(&defaults.by_netns) = Arc::new(table);
        defaults
    }

    #[test]
    fn a_socket_gets_its_own_namespaces_defaults() {
        let pod = SocketDefaults {
            keepalive_time: Duration::from_secs(4),
            keepalive_intvl: Duration::from_secs(2),
            keepalive_probes: 4,
            tcp_retries2: 6,
            ..SocketDefaults::default()
        };
        let defaults = with_table(FastMap::from_iter([(42, pod)]));
        let table = defaults.current();
        assert_eq!(defaults.of(&table, Some(42)), pod);
        assert!(!defaults.missing.load(Ordering::Relaxed));
        assert_eq!(defaults.of(&table, None), SocketDefaults::default());
        assert!(
            !defaults.missing.load(Ordering::Relaxed),
            "no namespace: nothing to read"
        );
        assert_eq!(defaults.of(&table, Some(7)), SocketDefaults::default());
        assert!(
            defaults.missing.load(Ordering::Relaxed),
            "namespace 7 is read next"
        );
    }
}
