//! `[[enforce]]` in the scans (a pipeline [`Feature`]): which policy each connection got (for `/connections` and the
//! `tcp_liveness_enforced_connections{policy}` gauge), and the policies the kernel program cannot
//! apply by itself, applied by the agent once per socket through the socket-option iterator
//! (`SockoptControl`):
//! - connections that existed before the agent started (its first pass, at start-up);
//! - connections whose first matching policy depends on the process name (the kernel program
//!   leaves them alone: the owner is not known at handshake time).
//!
//! Each socket is decided once (its cookie is remembered while it lives): an application's own
//! later `setsockopt` wins. Audit: one log line per batch and policy, one debug line per socket.
//! Each pass also follows the policies' cgroups (`cgroups`): one created, or created again with
//! a new id, is what the kernel program compares from then on; a missing one makes its policy
//! wait.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use monitor_common::{
    enforce::EnforcedSocket,
    sockopt::{OUTCOME_DONE, SOCKOPT_REQUESTS_CAPACITY, SockoptRequest},
    tcp_state,
};

pub use self::cgroups::{CgroupChange, CgroupLookup, PolicyCgroups, WAITING_CGROUP_ID};
use self::policy::first_match;
pub use self::policy::{Enforce, EnforceMode, KeepaliveTimers};
use crate::{
    model::Connection,
    scan::{
        Annotator, Feature, ScanPass, Summary,
        kernel_state::{FastMap, FastSet},
    },
    verdict::Policy,
};

/// Applies socket option requests to the sockets of one network namespace (by inode; None: the
/// agent's own). The agent's is [`IteratorApplier`]; tests record calls.
pub trait Applier: Send + Sync {
    /// The outcome of each request, as `SockoptControl::apply` returns it.
    ///
    /// # Errors
    /// The namespace cannot be entered or the iterator read: one line.
    fn apply(
        &self,
        netns: Option<u32>,
        requests: &[(u64, SockoptRequest)],
    ) -> Result<Vec<(u64, SockoptRequest)>, String>;
}

/// The attached kernel program (`EnforceRecords`; a fixed list in tests): the sockets it
/// enforced, and the cgroup each policy slot compares.
pub trait KernelProgram: Send + Sync {
    /// Every socket the program enforced and that has not closed: (cookie, record).
    fn all(&self) -> Vec<(u64, EnforcedSocket)>;
    /// Whether the program enforced socket `cookie` (one lookup).
    fn contains(&self, cookie: u64) -> bool;
    /// Makes policy `slot` compare cgroup id `cgroup_id` from the next connection on.
    ///
    /// # Errors
    /// The kernel refuses the update: one line.
    fn set_cgroup_id(&self, slot: usize, cgroup_id: u64) -> Result<(), String>;
}

impl KernelProgram for crate::bpf::EnforceRecords {
    fn all(&self) -> Vec<(u64, EnforcedSocket)> {
        crate::bpf::EnforceRecords::all(self)
    }

    fn contains(&self, cookie: u64) -> bool {
        crate::bpf::EnforceRecords::contains(self, cookie)
    }

    fn set_cgroup_id(&self, slot: usize, cgroup_id: u64) -> Result<(), String> {
        crate::bpf::EnforceRecords::set_cgroup_id(self, slot, cgroup_id)
            .map_err(|e| crate::model::format::error_chain(&e))
    }
}

/// The policies, the kernel program and what the agent applied itself.
pub struct Enforcement {
    policies: Arc<[Enforce]>,
    kernel: Box<dyn KernelProgram>,
    applier: Box<dyn Applier>,
    /// cookie → the policy applied, for every enforced socket as of the last pass start.
    names: RwLock<Arc<FastMap<u64, EnforcedAs>>>,
    state: Mutex<State>,
}

/// The policy applied to one socket, and what it set there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnforcedAs {
    /// The policy's index in config order (its slot in the kernel program).
    pub slot: usize,
    /// The options it set (`SET_*` bits): a `fill` sets only what the application left.
    pub applied: u32,
}

struct State {
    /// Sockets the agent decided itself: the policy it applied and what it set (None: none
    /// matched, it set nothing, or the socket was gone). Forgotten when the socket is.
    decided: FastMap<u64, Option<EnforcedAs>>,
    /// Sockets the kernel program enforced, as of the last pass start: slot, options set.
    kernel: FastMap<u64, EnforcedAs>,
    /// The policies' cgroups as last seen, followed at every pass start.
    cgroups: PolicyCgroups,
}

/// One pass over the live connections (a scan, or the start-up pass).
pub struct Pass<'a> {
    enforcement: &'a Enforcement,
    state: MutexGuard<'a, State>,
    seen: FastSet<u64>,
    /// (namespace, cookie, policy index) to apply at [`Pass::finish`].
    pending: Vec<(Option<u32>, u64, usize)>,
}

impl Enforcement {
    /// `policies` in config order, the program `kernel` whose slots hold them (their cgroup ids
    /// as `cgroups` last saw them), and what applies the rest.
    #[must_use]
    pub fn new(
        policies: Vec<Enforce>,
        kernel: Box<dyn KernelProgram>,
        cgroups: PolicyCgroups,
        applier: Box<dyn Applier>,
    ) -> Self {
        Self {
            policies: policies.into(),
            kernel,
            applier,
            names: RwLock::default(),
            state: Mutex::new(State {
                decided: FastMap::default(),
                kernel: FastMap::default(),
                cgroups,
            }),
        }
    }

    /// The policy names, in config order (every `policy` label, 0 included).
    pub fn policy_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.policies.iter().map(|p| &p.name)
    }

    /// cookie → policy name of every socket known enforced (as of the last pass start).
    #[must_use]
    pub fn names(&self) -> Arc<FastMap<u64, EnforcedAs>> {
        Arc::clone(&crate::locks::read(&self.names))
    }

    /// Starts a pass: follows the policies' cgroups (a cgroup created, again or for the first
    /// time, is what its policy's slot compares from now on; a removed one makes it wait), reads
    /// the kernel program's records (logging the sockets it enforced since the last pass) and
    /// publishes every enforced socket's policy name.
    pub fn start_pass(&self) -> Pass<'_> {
        let mut state = crate::locks::lock(&self.state);
        self.follow_cgroups(&mut state.cgroups);
        let kernel: FastMap<u64, EnforcedAs> = self
            .kernel
            .all()
            .into_iter()
            // A `fill` that found every value set by the application set nothing.
            .filter(|(_, r)| r.applied != 0)
            .filter_map(|(cookie, r)| {
                let slot = usize::try_from(r.slot)
                    .ok()
                    .filter(|&s| s < self.policies.len())?;
                let applied = r.applied;
                Some((cookie, EnforcedAs { slot, applied }))
            })
            .collect();
        let mut new_by_policy: BTreeMap<usize, usize> = BTreeMap::new();
        for (cookie, &EnforcedAs { slot, .. }) in &kernel {
            if !state.kernel.contains_key(cookie) {
                *new_by_policy.entry(slot).or_default() += 1;
                tracing::debug!(
                    cookie,
                    policy = &*self.policies[slot].name,
                    "enforced at establishment (sock_ops)"
                );
            }
        }
        for (slot, count) in new_by_policy {
            tracing::info!(
                policy = &*self.policies[slot].name,
                count,
                "enforce: new connections given the policy at establishment (sock_ops)"
            );
        }
        state.kernel = kernel;
        self.publish(&state);
        Pass {
            enforcement: self,
            state,
            seen: FastSet::default(),
            pending: Vec::new(),
        }
    }
}

impl Enforcement {
    /// Updates the slot of each policy whose cgroup changed, and says so once.
    fn follow_cgroups(&self, cgroups: &mut PolicyCgroups) {
        cgroups.look_again(|slot, path, change| {
            let policy = &*self.policies[slot].name;
            if let Err(error) = self.kernel.set_cgroup_id(slot, change.slot_id()) {
                tracing::warn!(policy, %error, "enforce: cannot update the policy's cgroup in the kernel program");
                return false;
            }
            let line = change.describe(path);
            if matches!(change, CgroupChange::Removed { .. }) {
                tracing::warn!(policy, "{line}");
            } else {
                tracing::info!(policy, "{line}");
            }
            true
        });
    }

    /// Publishes every enforced socket's policy and what it set, for [`names`](Self::names).
    fn publish(&self, state: &State) {
        let names: FastMap<u64, EnforcedAs> = state
            .kernel
            .iter()
            .map(|(&c, &applied)| (c, applied))
            .chain(state.decided.iter().filter_map(|(&c, a)| Some((c, (*a)?))))
            .collect();
        *crate::locks::write(&self.names) = Arc::new(names);
    }
}

impl Pass<'_> {
    /// Looks at one live connection: an established one that neither the kernel program nor
    /// the agent has decided yet, whose owner is known, gets its first matching policy at
    /// [`finish`](Self::finish).
    pub fn observe(&mut self, c: &Connection) {
        self.seen.insert(c.cookie);
        if c.state != tcp_state::ESTABLISHED
            || self.state.kernel.contains_key(&c.cookie)
            || self.state.decided.contains_key(&c.cookie)
        {
            return;
        }
        // Without the owner neither `process` nor `cgroup` can be decided: wait for it.
        if c.comm.is_none() {
            return;
        }
        let policy = first_match(&self.enforcement.policies, c).map(|(i, _)| i);
        self.state.decided.insert(c.cookie, None);
        if let Some(i) = policy {
            self.pending.push((c.netns, c.cookie, i));
        }
    }

    /// Applies what the pass found, one iterator read per namespace (batches of at most
    /// `SOCKOPT_REQUESTS_CAPACITY`), and forgets sockets the pass did not see. Returns how many
    /// sockets got a policy.
    #[must_use = "the count is for the audit log"]
    pub fn finish(mut self) -> usize {
        let policies = Arc::clone(&self.enforcement.policies);
        // A connection established after the pass read the kernel's records, and reached by the
        // pass, is the kernel program's: it has it by now (it runs right after the state change
        // that put the socket in the table), so it is not applied twice.
        let kernel = &self.enforcement.kernel;
        self.pending
            .retain(|&(_, cookie, _)| !kernel.contains(cookie));
        let mut by_netns: BTreeMap<Option<u32>, Vec<(u64, usize)>> = BTreeMap::new();
        for (netns, cookie, policy) in std::mem::take(&mut self.pending) {
            by_netns.entry(netns).or_default().push((cookie, policy));
        }
        let mut enforced = 0;
        for (netns, sockets) in by_netns {
            for chunk in sockets.chunks(SOCKOPT_REQUESTS_CAPACITY as usize) {
                enforced += self.apply(netns, chunk, &policies);
            }
        }
        let seen = std::mem::take(&mut self.seen);
        self.state.decided.retain(|cookie, _| seen.contains(cookie));
        if enforced > 0 {
            self.enforcement.publish(&self.state);
        }
        enforced
    }

    fn apply(&mut self, netns: Option<u32>, chunk: &[(u64, usize)], policies: &[Enforce]) -> usize {
        let requests: Vec<(u64, SockoptRequest)> = chunk
            .iter()
            .map(|&(cookie, i)| (cookie, policies[i].request()))
            .collect();
        let outcomes = match self.enforcement.applier.apply(netns, &requests) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(netns, %error, sockets = chunk.len(), "enforce: cannot apply policies in this namespace");
                return 0;
            }
        };
        let mut by_policy: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        let mut enforced = 0;
        for (&(cookie, i), (_, outcome)) in chunk.iter().zip(&outcomes) {
            let counts = by_policy.entry(i).or_default();
            if outcome.outcome != OUTCOME_DONE {
                counts.1 += 1;
                continue;
            }
            counts.0 += 1;
            // A fill that found the application's own values set nothing: not enforced.
            let set_something = outcome.applied != 0;
            enforced += usize::from(set_something);
            self.state.decided.insert(
                cookie,
                set_something.then_some(EnforcedAs {
                    slot: i,
                    applied: outcome.applied,
                }),
            );
            tracing::debug!(
                cookie,
                netns,
                policy = &*policies[i].name,
                applied = outcome.applied,
                explicit_before = outcome.explicit,
                error = outcome.error,
                "enforce: policy applied to an existing connection"
            );
        }
        for (i, (count, gone)) in by_policy {
            tracing::info!(
                policy = &*policies[i].name,
                mode = policies[i].mode.as_str(),
                netns,
                count,
                gone,
                "enforce: policy applied to connections through the socket iterator"
            );
        }
        enforced
    }
}

/// Each scan starts a [`Pass`] (publishing the names its connections are annotated with),
/// every connection shows its policy name, and the `policy` label of every policy exists from
/// the first scan.
impl Feature for Enforcement {
    fn start_scan(&self) -> Option<Box<dyn ScanPass + '_>> {
        Some(Box::new(self.start_pass()))
    }

    fn annotator(&self) -> Option<Box<dyn Annotator + '_>> {
        Some(Box::new(EnforcedNames {
            names: self.names(),
            policies: &self.policies,
        }))
    }

    fn summarize(&self, summary: &mut Summary) {
        for name in self.policy_names() {
            summary.enforced.entry(Arc::clone(name)).or_default();
        }
    }
}

impl ScanPass for Pass<'_> {
    fn observe(&mut self, c: &Connection, _policy: &Policy) {
        Pass::observe(self, c);
    }

    fn finish(self: Box<Self>) {
        let _enforced = Pass::finish(*self);
    }
}

/// The policy applied to every socket, as of the pass's start, and the policies: a connection
/// shows the policy only while its options are still what the policy set.
struct EnforcedNames<'a> {
    names: Arc<FastMap<u64, EnforcedAs>>,
    policies: &'a [Enforce],
}

impl Annotator for EnforcedNames<'_> {
    fn annotate(&self, c: &mut Connection, _now_ns: u64, _policy: &Policy) {
        let Some(applied) = self.names.get(&c.cookie) else {
            c.enforced = None;
            return;
        };
        let policy = &self.policies[applied.slot];
        // Options not known yet (no pass has read the socket): the record stands.
        let carried = policy.carried_by(c, applied.applied) != Some(false);
        c.enforced = carried.then(|| Arc::clone(&policy.name));
    }
}

mod cgroups;
mod iterator;
pub mod policy;

pub use iterator::IteratorApplier;

#[cfg(test)]
mod tests;
