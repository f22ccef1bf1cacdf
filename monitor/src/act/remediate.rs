//! Remediation: ending connections whose verdict is confirmed dead (`[[remediate]]`), on the
//! scan thread, right after each scan, on the snapshot's confirmed suspects ([`Remediator::act`]).
//!
//! A socket is ended only on looks at its kernel state (exact `sock_diag` queries on the
//! confirmer's per-namespace sockets): the first, at the first scan where a policy selects its
//! confirmed verdict and the verdict is `min_age` old, records the evidence ([`Evidence`]); each
//! later one, at the following scans and immediately before acting, must find the verdict still
//! holding on the kernel's state (judged again) and nothing changed (state, last ACK from the
//! peer, bytes acked or received, retransmits). For a silence the kernel is still asking about
//! (`peer_unresponsive`, `keepalive_unanswered`), the looks must also have seen a segment sent
//! after the first look go unanswered for longer than its RTO ([`Unanswered`]): a peer back
//! from a blip answers that one. A socket that changed gets a new first look; one that is gone
//! is left alone. Then the policy's rate limit (a rolling minute) and `dry_run` decide:
//! `SOCK_DESTROY` ([`SocketQueries::destroy`], the kernel's `tcp_abort`: the application's
//! blocked and next calls fail with `ECONNABORTED`, the peer gets a reset), or a log line only.
//!
//! Every action is one audit log line (who, what, why, result), counted in
//! `tcp_liveness_remediations_total{reason,result}` and listed in the snapshot (the alert of the
//! connection's group is annotated with it). A socket's result is reported once: a dry-run or
//! rate-limited socket is not logged again every scan.

mod evidence;
pub mod policy;
mod record;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

pub(crate) use self::evidence::{Evidence, Unanswered};
pub use self::record::RemediationCounters;
use self::{
    policy::{RemediatePolicy, policy_for},
    record::audit,
};
use crate::{
    model::{Connection, Reason, RemediationAction, RemediationResult, format::error_chain},
    scan::{
        Pipeline,
        confirm::{key_of, overlay},
        kernel_state::{FastMap, FastSet},
    },
    sock_diag::{DiagSocket, SockDiagError, SocketKey, SocketQueries},
};

/// Kernel looks per scan at most (~10–20 µs each): a burst of dead sockets is worked through
/// over the next scans.
pub(crate) const MAX_LOOKS_PER_SCAN: usize = 256;

/// The exact-query sockets, as remediation uses them (tests stand in for the kernel).
pub(crate) trait SocketControl {
    /// [`SocketQueries::query`].
    fn query(&mut self, key: &SocketKey) -> Result<Option<DiagSocket>, SockDiagError>;
    /// [`SocketQueries::destroy`].
    fn destroy(&mut self, key: &SocketKey) -> Result<bool, SockDiagError>;
}

impl SocketControl for SocketQueries {
    fn query(&mut self, key: &SocketKey) -> Result<Option<DiagSocket>, SockDiagError> {
        SocketQueries::query(self, key)
    }

    fn destroy(&mut self, key: &SocketKey) -> Result<bool, SockDiagError> {
        SocketQueries::destroy(self, key)
    }
}

/// The policies and what remediation remembers between scans.
pub struct Remediator {
    policies: Vec<RemediatePolicy>,
    /// Per policy (same index): when its actions within the last minute happened.
    recent: Vec<VecDeque<Instant>>,
    /// The first look at each socket not acted on yet, and what the later looks proved.
    looked: FastMap<u64, (Evidence, Unanswered)>,
    /// The last result reported for each socket (reported again only when it differs).
    reported: FastMap<u64, RemediationResult>,
    counters: RemediationCounters,
}

/// One rolling minute.
const WINDOW: Duration = Duration::from_mins(1);

impl Remediator {
    /// Remediation by `policies` (in file order: the first that selects a connection applies).
    #[must_use]
    pub fn new(policies: Vec<RemediatePolicy>, counters: RemediationCounters) -> Self {
        Self {
            recent: vec![VecDeque::new(); policies.len()],
            policies,
            looked: FastMap::default(),
            reported: FastMap::default(),
            counters,
        }
    }

    /// Acts on a scan's confirmed `suspects` (the snapshot's, right after the scan): through
    /// `pipeline`'s exact-query sockets and with its verdict rules as its current policy applies
    /// them. Returns the actions reported at this scan ([`Snapshot::remediations`]).
    ///
    /// [`Snapshot::remediations`]: crate::scan::Snapshot::remediations
    pub fn act(&mut self, pipeline: &Pipeline, suspects: &[Connection]) -> Vec<RemediationAction> {
        let now_ms = || crate::clock::monotonic_now_ns() / 1_000_000;
        pipeline.with_kernel_queries(|queries, judge| self.run(suspects, queries, judge, &now_ms))
    }

    /// Looks at, and acts on, this scan's confirmed `suspects` (see the module documentation).
    /// `judge` is the verdict rules as the scan applies them; `now_ms` reads
    /// `CLOCK_MONOTONIC` in milliseconds (the clock of [`Evidence`]). Returns the actions
    /// reported at this scan.
    pub(crate) fn run(
        &mut self,
        suspects: &[Connection],
        control: &mut dyn SocketControl,
        judge: &dyn Fn(&Connection) -> Vec<Reason>,
        now_ms: &dyn Fn() -> u64,
    ) -> Vec<RemediationAction> {
        let now = Instant::now();
        for recent in &mut self.recent {
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                recent.pop_front();
            }
        }
        let mut actions = Vec::new();
        let mut looks = 0;
        let mut present = FastSet::default();
        for c in suspects {
            let Some(index) = policy_for(&self.policies, c) else {
                continue;
            };
            present.insert(c.cookie);
            let policy = self.policies[index].clone();
            let done = self.reported.get(&c.cookie) == Some(&RemediationResult::DryRun);
            if done || !policy.old_enough(c) || looks >= MAX_LOOKS_PER_SCAN {
                continue;
            }
            let Some(key) = key_of(c) else { continue };
            let full = self.recent[index].len() >= policy.max_per_minute as usize;
            let (result, detail) = if full && self.looked.contains_key(&c.cookie) {
                // Nothing would be done now: no look needed.
                (RemediationResult::RateLimited, String::new())
            } else {
                looks += 1;
                match self.look(c, &policy, &key, control, judge, now_ms()) {
                    Look::First => {
                        let policy = policy.name();
                        tracing::debug!(cookie = c.cookie, %policy, "remediation: first look recorded");
                        continue;
                    }
                    Look::Waiting(state) => {
                        let policy = policy.name();
                        tracing::debug!(cookie = c.cookie, %policy, ?state, "remediation: waiting for an unanswered transmission");
                        continue;
                    }
                    Look::Act if full => (RemediationResult::RateLimited, String::new()),
                    Look::Act => {
                        self.recent[index].push_back(now);
                        act(policy.dry_run, &key, control)
                    }
                    Look::Stop(result, detail) => (result, detail),
                }
            };
            if self.reported.insert(c.cookie, result) == Some(result) {
                continue;
            }
            let action = RemediationAction {
                cookie: c.cookie,
                reason: policy.reason,
                policy: policy.number,
                result,
            };
            audit(c, &policy, result, &detail);
            self.counters.count(&action);
            actions.push(action);
        }
        // Sockets no longer suspect (or gone): their looks and reports are finished with.
        self.looked.retain(|cookie, _| present.contains(cookie));
        self.reported.retain(|cookie, _| present.contains(cookie));
        actions
    }

    /// Asks the kernel about `c` (selected by `policy`) and compares with the first look, if
    /// there was one.
    fn look(
        &mut self,
        c: &Connection,
        policy: &RemediatePolicy,
        key: &SocketKey,
        control: &mut dyn SocketControl,
        judge: &dyn Fn(&Connection) -> Vec<Reason>,
        at_ms: u64,
    ) -> Look {
        let reason = policy.reason;
        let kernel = match control.query(key) {
            Ok(Some(kernel)) => kernel,
            Ok(None) => return Look::Stop(RemediationResult::Gone, String::new()),
            Err(error) => return Look::Stop(RemediationResult::Failed, error_chain(&error)),
        };
        let mut now = c.clone();
        overlay(&mut now, &kernel);
        if !judge(&now).contains(&reason) {
            self.looked.remove(&c.cookie);
            let why = "the verdict no longer holds on the kernel's state".to_owned();
            return Look::Stop(RemediationResult::SkippedChanged, why);
        }
        let evidence = Evidence::of(&kernel, at_ms);
        let Some((first, proof)) = self.looked.get_mut(&c.cookie) else {
            self.looked
                .insert(c.cookie, (evidence, Unanswered::NotAskedYet));
            return Look::First;
        };
        if let Some(change) = evidence.changed_since(first, reason) {
            // The new look is the next first look: a fresh verdict.
            (*first, *proof) = (evidence, Unanswered::NotAskedYet);
            return Look::Stop(RemediationResult::SkippedChanged, change);
        }
        *proof = evidence.unanswered(first, *proof, reason, policy.min_retransmits);
        match *proof {
            Unanswered::Proven => Look::Act,
            waiting => Look::Waiting(waiting),
        }
    }
}

/// What a look decided.
enum Look {
    /// The first look: recorded, nothing done yet.
    First,
    /// Unchanged, but no transmission since the first look has gone unanswered long enough.
    Waiting(Unanswered),
    /// Unchanged since the first look: act (if the rate limit allows).
    Act,
    /// Not acted on, and why.
    Stop(RemediationResult, String),
}

/// Destroys the socket, or (dry run) does nothing.
fn act(
    dry_run: bool,
    key: &SocketKey,
    control: &mut dyn SocketControl,
) -> (RemediationResult, String) {
    if dry_run {
        return (RemediationResult::DryRun, String::new());
    }
    match control.destroy(key) {
        Ok(true) => (RemediationResult::Destroyed, String::new()),
        Ok(false) => (RemediationResult::Gone, String::new()),
        Err(error) => (RemediationResult::Failed, error_chain(&error)),
    }
}

#[cfg(test)]
mod tests;
