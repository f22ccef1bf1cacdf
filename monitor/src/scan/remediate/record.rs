//! What remediation did, as the agent reports it: the result of each action, the counter, and
//! the audit line.

use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use crate::{
    model::{Connection, Reason},
    verdict::remediation::RemediatePolicy,
};

/// What was done about one socket (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionResult {
    /// `SOCK_DESTROY` succeeded.
    Destroyed,
    /// A `dry_run` policy: it would have been destroyed.
    DryRun,
    /// The verdict no longer holds on the kernel's state, or the socket showed life since it.
    SkippedChanged,
    /// The kernel no longer has the socket.
    Gone,
    /// The policy's `max_per_minute` was reached.
    RateLimited,
    /// The kernel could not be asked, or refused the destroy.
    Failed,
}

impl ActionResult {
    /// Every result, in label order.
    pub const ALL: [ActionResult; 6] = [
        Self::Destroyed,
        Self::DryRun,
        Self::SkippedChanged,
        Self::Gone,
        Self::RateLimited,
        Self::Failed,
    ];

    /// The `result` label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Destroyed => "destroyed",
            Self::DryRun => "dry_run",
            Self::SkippedChanged => "skipped_changed",
            Self::Gone => "gone",
            Self::RateLimited => "rate_limited",
            Self::Failed => "failed",
        }
    }
}

/// One action on one socket at one scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub cookie: u64,
    /// The policy's reason (the verdict acted on).
    pub reason: Reason,
    /// The policy's 1-based number in the file.
    pub policy: usize,
    pub result: ActionResult,
}

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
            for result in ActionResult::ALL {
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

    pub(super) fn count(&self, action: &Action) {
        self.0
            .with_label_values(&[action.reason.as_str(), action.result.as_str()])
            .inc();
    }
}

/// The audit line: who (pid, comm, cgroup), what (cookie, addresses, namespace, state), why
/// (reason, policy, the verdict's evidence: `since_peer_seconds`, `retransmits`,
/// `unacked_bytes`), the result, and what changed or failed (`detail`) when it says more.
pub(super) fn audit(c: &Connection, policy: &RemediatePolicy, result: ActionResult, detail: &str) {
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
        ActionResult::Destroyed => line!(warn, "remediation: connection destroyed"),
        ActionResult::DryRun => line!(info, "remediation (dry run): would destroy the connection"),
        ActionResult::Failed => line!(error, "remediation: destroying the connection failed"),
        _ => line!(info, "remediation: connection left alone"),
    }
}
