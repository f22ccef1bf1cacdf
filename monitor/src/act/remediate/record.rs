//! What remediation did, as the agent reports it: the result of each action, the counter, and
//! the audit line.

use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use super::policy::RemediatePolicy;
use crate::model::{Connection, RemediationAction, RemediationResult};

/// `tcp_liveness_remediations_total{reason,result}`.
#[derive(Clone, Debug)]
pub struct RemediationCounters(IntCounterVec);

impl RemediationCounters {
    /// The counter, every result of every reason of `policies` present at 0.
    ///
    /// # Panics
    /// Never: the name and labels are constants.
    #[must_use]
    pub fn new(policies: &[RemediatePolicy]) -> Self {
        use crate::model::metric_families::REMEDIATIONS;
        let opts = Opts::new(REMEDIATIONS.name, REMEDIATIONS.help);
        let vec = IntCounterVec::new(opts, REMEDIATIONS.labels).expect("valid metric");
        for p in policies {
            for result in RemediationResult::ALL {
                vec.with_label_values(&[p.reason.as_str(), result.as_str()]);
            }
        }
        Self(vec)
    }

    /// Adds the counter to `registry`.
    ///
    /// # Errors
    /// Registered already (a programming error).
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.0.clone()))
    }

    pub(super) fn count(&self, action: &RemediationAction) {
        self.0
            .with_label_values(&[action.reason.as_str(), action.result.as_str()])
            .inc();
    }
}

/// The audit line: who (pid, comm, cgroup), what (cookie, addresses, namespace, state), why
/// (reason, policy, the verdict's evidence: `since_peer_seconds`, `retransmits`,
/// `unacked_bytes`), the result, and what changed or failed (`detail`) when it says more.
pub(super) fn audit(
    c: &Connection,
    policy: &RemediatePolicy,
    result: RemediationResult,
    detail: &str,
) {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    // Omitted from the line when there is nothing to add.
    let detail = (!detail.is_empty()).then_some(detail);
    let state = &*crate::model::labels::state_label(c.state);
    macro_rules! line {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                result = result.as_str(),
                policy = %policy.name(),
                reason = policy.reason.as_str(),
                dry_run = policy.dry_run,
                pid = c.pid,
                comm = c.comm.as_deref(),
                cgroup = c.cgroup.as_deref(),
                cookie = c.cookie,
                local = %c.local,
                remote = %c.remote,
                netns = c.netns,
                state,
                since_peer_seconds = secs(c.since_peer),
                retransmits = c.retransmits,
                unacked_bytes = c.unacked_bytes,
                detail,
                $message
            )
        };
    }
    match result {
        RemediationResult::Destroyed => line!(warn, "remediation: connection destroyed"),
        RemediationResult::DryRun => {
            line!(info, "remediation (dry run): would destroy the connection");
        }
        RemediationResult::Failed => line!(error, "remediation: destroying the connection failed"),
        _ => line!(info, "remediation: connection left alone"),
    }
}
