//! Following each `[[enforce]]` policy's cgroup by its path. The kernel program compares a
//! cgroup id, and a service that restarts gets its cgroup created again under the same path with
//! a new id; a stopped service has none. The agent looks at each path again at every pass (one
//! `stat` per policy) and hands each change to its caller, which updates the policy's slot and
//! logs it once. A missing cgroup is not an error: its policy waits, matching no connection in
//! the kernel (its slot compares [`WAITING_CGROUP_ID`]), until the directory exists.

use std::{fmt, io};

use super::Enforce;

/// The cgroup id the slot of a waiting policy compares: no cgroup has it (a kernfs id is a
/// generation over an inode number below 2³¹), so the slot matches no connection.
pub const WAITING_CGROUP_ID: u64 = u64::MAX;

/// The id of the cgroup at a path (as `/proc/PID/cgroup` writes it): the directory's inode
/// number under the cgroup v2 mount. `NotFound` when there is no such directory.
pub type CgroupLookup = Box<dyn Fn(&str) -> io::Result<u64> + Send>;

/// What happened to a policy's cgroup between two looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupChange {
    /// The directory exists where there was none: connections in it match from now on.
    Created { id: u64 },
    /// The directory was removed and created again (same path, new id).
    CreatedAgain { old: u64, new: u64 },
    /// The directory is gone: the policy waits for it.
    Removed { old: u64 },
}

impl CgroupChange {
    /// The change from `old` to `new` (None: missing); None when nothing changed.
    #[must_use]
    pub fn between(old: Option<u64>, new: Option<u64>) -> Option<Self> {
        match (old, new) {
            (None, Some(id)) => Some(Self::Created { id }),
            (Some(old), Some(new)) if old != new => Some(Self::CreatedAgain { old, new }),
            (Some(old), None) => Some(Self::Removed { old }),
            _ => None,
        }
    }

    /// The id the policy's slot compares after the change ([`WAITING_CGROUP_ID`] once removed).
    #[must_use]
    pub const fn slot_id(self) -> u64 {
        match self {
            Self::Created { id } | Self::CreatedAgain { new: id, .. } => id,
            Self::Removed { .. } => WAITING_CGROUP_ID,
        }
    }

    /// The log line for this change to the cgroup at `path`.
    #[must_use]
    pub fn describe(self, path: &str) -> String {
        match self {
            Self::Created { id } => {
                format!("enforce: cgroup {path} created (id {id}): policy matched at connect")
            }
            Self::CreatedAgain { old, new } => format!(
                "enforce: cgroup {path} created again (id {old} → {new}): policy matched again at connect"
            ),
            Self::Removed { old } => {
                format!("enforce: cgroup {path} removed (id {old}): policy waiting for its cgroup")
            }
        }
    }
}

/// One policy's cgroup: its path and the id it had at the last look (None: missing).
struct Followed {
    policy: usize,
    path: String,
    id: Option<u64>,
}

/// The cgroups of the policies that name one, as last seen.
pub struct PolicyCgroups {
    followed: Vec<Followed>,
    lookup: CgroupLookup,
}

impl PolicyCgroups {
    /// Follows the cgroup of each of `policies` that names one, from what `lookup` answers now;
    /// a missing one is a warning naming the policy and the path (the policy waits).
    ///
    /// # Errors
    /// `lookup` fails for another reason than a missing directory: the policy's index and the
    /// error.
    pub fn start(policies: &[Enforce], lookup: CgroupLookup) -> Result<Self, (usize, io::Error)> {
        let mut followed = Vec::new();
        for (policy, p) in policies.iter().enumerate() {
            let Some(path) = &p.matcher.cgroup else {
                continue;
            };
            let id = look(&lookup, path).map_err(|error| (policy, error))?;
            if id.is_none() {
                tracing::warn!(
                    policy = &*p.name,
                    "enforce: cgroup {path} does not exist: policy waiting for its cgroup"
                );
            }
            followed.push(Followed {
                policy,
                path: path.clone(),
                id,
            });
        }
        Ok(Self { followed, lookup })
    }

    /// The id policy `policy`'s cgroup had at the last look: None when the policy names no
    /// cgroup or its cgroup was missing.
    #[must_use]
    pub fn id(&self, policy: usize) -> Option<u64> {
        self.followed
            .iter()
            .find(|f| f.policy == policy)
            .and_then(|f| f.id)
    }

    /// Looks at each cgroup again and hands each change to `apply` (policy index, path, change),
    /// which returns whether it took effect; one it refused is handed again at the next look. A
    /// lookup that fails for another reason than a missing directory changes nothing.
    pub fn look_again(&mut self, mut apply: impl FnMut(usize, &str, CgroupChange) -> bool) {
        for f in &mut self.followed {
            let now = match look(&self.lookup, &f.path) {
                Ok(now) => now,
                Err(error) => {
                    tracing::debug!(cgroup = %f.path, %error, "enforce: cannot look at the cgroup");
                    continue;
                }
            };
            if let Some(change) = CgroupChange::between(f.id, now)
                && apply(f.policy, &f.path, change)
            {
                f.id = now;
            }
        }
    }
}

impl fmt::Debug for PolicyCgroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.followed.iter().map(|c| (&c.path, c.id)))
            .finish()
    }
}

/// `lookup`'s answer with a missing directory as None.
fn look(lookup: &CgroupLookup, path: &str) -> io::Result<Option<u64>> {
    match lookup(path) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;
    use crate::verdict::Matcher;

    /// path → id of the cgroups that exist, changed by the test.
    type Hierarchy = Arc<Mutex<HashMap<String, u64>>>;

    fn lookup(hierarchy: &Hierarchy) -> CgroupLookup {
        let hierarchy = Arc::clone(hierarchy);
        Box::new(move |path| {
            hierarchy
                .lock()
                .unwrap()
                .get(path)
                .copied()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        })
    }

    fn policy(cgroup: Option<&str>) -> Enforce {
        Enforce {
            name: "p".into(),
            matcher: Matcher {
                cgroup: cgroup.map(str::to_owned),
                local_port: Some(80),
                ..Matcher::default()
            },
            keepalive: None,
            user_timeout: Some(Duration::from_secs(5)),
            mode: super::super::EnforceMode::Fill,
        }
    }

    /// Looks again, accepting every change: what was handed over.
    fn changes(cgroups: &mut PolicyCgroups) -> Vec<(usize, String, CgroupChange)> {
        let mut seen = Vec::new();
        cgroups.look_again(|i, path, change| {
            seen.push((i, path.to_owned(), change));
            true
        });
        seen
    }

    #[test]
    fn missing_created_created_again_removed() {
        let hierarchy = Hierarchy::default();
        hierarchy.lock().unwrap().insert("/other".into(), 3);
        let policies = [policy(None), policy(Some("/svc")), policy(Some("/other"))];
        let mut cgroups = PolicyCgroups::start(&policies, lookup(&hierarchy)).expect("starts");
        assert_eq!(
            (cgroups.id(0), cgroups.id(1), cgroups.id(2)),
            (None, None, Some(3))
        );
        assert_eq!(changes(&mut cgroups), [], "nothing changed");

        hierarchy.lock().unwrap().insert("/svc".into(), 11);
        let created = CgroupChange::Created { id: 11 };
        assert_eq!(changes(&mut cgroups), [(1, "/svc".into(), created)]);
        assert_eq!(cgroups.id(1), Some(11));
        assert_eq!(changes(&mut cgroups), [], "said once");

        // Removed and created again between two looks: one change, to the new id.
        hierarchy.lock().unwrap().insert("/svc".into(), 12);
        let again = CgroupChange::CreatedAgain { old: 11, new: 12 };
        assert_eq!(changes(&mut cgroups), [(1, "/svc".into(), again)]);

        hierarchy.lock().unwrap().remove("/svc");
        let removed = CgroupChange::Removed { old: 12 };
        assert_eq!(changes(&mut cgroups), [(1, "/svc".into(), removed)]);
        assert_eq!(cgroups.id(1), None);
        assert_eq!(changes(&mut cgroups), []);
    }

    #[test]
    fn a_refused_change_is_handed_again() {
        let hierarchy = Hierarchy::default();
        let mut cgroups =
            PolicyCgroups::start(&[policy(Some("/svc"))], lookup(&hierarchy)).expect("starts");
        hierarchy.lock().unwrap().insert("/svc".into(), 5);
        cgroups.look_again(|_, _, _| false);
        assert_eq!(cgroups.id(0), None);
        let created = CgroupChange::Created { id: 5 };
        assert_eq!(changes(&mut cgroups), [(0, "/svc".into(), created)]);
    }

    #[test]
    fn another_lookup_error_stops_the_start_and_changes_nothing_later() {
        let denied: CgroupLookup =
            Box::new(|_| Err(io::Error::from(io::ErrorKind::PermissionDenied)));
        let started = PolicyCgroups::start(&[policy(None), policy(Some("/svc"))], denied);
        assert_eq!(
            started.err().map(|(i, e)| (i, e.kind())),
            Some((1, io::ErrorKind::PermissionDenied))
        );

        let hierarchy = Hierarchy::default();
        hierarchy.lock().unwrap().insert("/svc".into(), 5);
        let mut cgroups =
            PolicyCgroups::start(&[policy(Some("/svc"))], lookup(&hierarchy)).expect("starts");
        cgroups.lookup = Box::new(|_| Err(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert_eq!(changes(&mut cgroups), []);
        assert_eq!(cgroups.id(0), Some(5), "kept");
    }

    #[test]
    fn each_change_sets_the_slot_and_says_what_happened() {
        let cases = [
            (
                CgroupChange::Created { id: 7 },
                7,
                "enforce: cgroup /svc created (id 7): policy matched at connect",
            ),
            (
                CgroupChange::CreatedAgain { old: 7, new: 9 },
                9,
                "enforce: cgroup /svc created again (id 7 → 9): policy matched again at connect",
            ),
            (
                CgroupChange::Removed { old: 9 },
                WAITING_CGROUP_ID,
                "enforce: cgroup /svc removed (id 9): policy waiting for its cgroup",
            ),
        ];
        for (change, slot_id, line) in cases {
            assert_eq!(change.slot_id(), slot_id);
            assert_eq!(change.describe("/svc"), line);
        }
        assert_eq!(CgroupChange::between(Some(4), Some(4)), None);
        assert_eq!(CgroupChange::between(None, None), None);
    }
}
