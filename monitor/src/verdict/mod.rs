//! Verdicts: which connections look dead or leaking, and why. Pure: a [`Connection`] and the
//! [`Policy`] in, [`Reason`]s out; re-evaluated on every scan.

pub mod conntrack;
mod path;
mod policy;
mod rules;
mod why;

use std::time::Duration;

pub use self::{
    path::{Cidr, PathTimeout, Share},
    policy::{Matcher, Override, Policy, Thresholds, in_cgroup},
    rules::evaluate,
    why::{explain, why},
};
#[cfg(doc)]
use crate::model::{Connection, Reason};

/// How long until the kernel gives up on an unresponsive peer (retransmission timeout), when known.
#[must_use]
pub fn retransmission_limit(user_timeout: Option<Duration>, tcp_retries2: u32) -> Duration {
    user_timeout.unwrap_or_else(|| model_timeout(tcp_retries2))
}

/// The kernel's own model (`tcp_model_timeout)`: exponential backoff from `TCP_RTO_MIN` (200 ms),
/// capped at `TCP_RTO_MAX` (120 s), for `retries` retransmissions. 15 retries → 924.6 s.
#[must_use]
pub fn model_timeout(retries: u32) -> Duration {
    const RTO_MIN_MS: u64 = 200;
    const RTO_MAX_MS: u64 = 120_000;
    let thresh = (RTO_MAX_MS / RTO_MIN_MS).ilog2(); // backoffs before the cap
    let ms = if retries <= thresh {
        ((2u64 << retries) - 1) * RTO_MIN_MS
    } else {
        ((2u64 << thresh) - 1) * RTO_MIN_MS + u64::from(retries - thresh) * RTO_MAX_MS
    };
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retries_give_the_well_known_15_minutes() {
        assert_eq!(model_timeout(15), Duration::from_millis(924_600));
        assert_eq!(model_timeout(3), Duration::from_secs(3));
        assert_eq!(
            retransmission_limit(Some(Duration::from_secs(30)), 15),
            Duration::from_secs(30)
        );
    }
}
