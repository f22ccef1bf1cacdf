//! What `[[remediate]]` did about one socket at one scan, as the snapshot carries it to the
//! alerts (the `remediation` annotation) and the metrics: pure data, filled by the remediation
//! that runs after each scan.

use super::Reason;

/// What was done about one socket (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemediationResult {
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

impl RemediationResult {
    /// Every result, in label order.
    pub const ALL: [RemediationResult; 6] = [
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
pub struct RemediationAction {
    pub cookie: u64,
    /// The policy's reason (the verdict acted on).
    pub reason: Reason,
    /// The policy's 1-based number in the file.
    pub policy: usize,
    pub result: RemediationResult,
}
