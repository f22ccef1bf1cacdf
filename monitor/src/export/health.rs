//! `/healthz`'s rule: healthy while scans keep succeeding. A stalled scan (a stuck thread, a
//! kernel read that never returns, every scan failing) leaves `/metrics` serving old numbers;
//! this is what tells a supervisor (a Kubernetes liveness probe, a load balancer) to act.

use std::time::Duration;

/// Scan intervals without a successful scan before the agent is unhealthy.
pub(crate) const STALE_AFTER_INTERVALS: u32 = 3;

/// The least time without a successful scan before the agent is unhealthy, whatever the
/// interval: a scan of a full table takes seconds, and a short interval must not make
/// `/healthz` flap.
pub(crate) const STALE_AFTER_AT_LEAST: Duration = Duration::from_secs(10);

/// How long after the last successful scan the agent turns unhealthy: the larger of
/// [`STALE_AFTER_INTERVALS`] scan intervals and [`STALE_AFTER_AT_LEAST`].
pub(crate) fn stale_after(scan_interval: Duration) -> Duration {
    (scan_interval * STALE_AFTER_INTERVALS).max(STALE_AFTER_AT_LEAST)
}

/// What `/healthz` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    /// No scan published yet (503).
    Starting,
    /// The last successful scan is recent (200).
    Healthy,
    /// Scans have been published, but none succeeded for longer than allowed (503); `since`
    /// is the time since the last success, None when none has succeeded.
    Stale { since: Option<Duration> },
}

impl Health {
    /// The rule. `published`: a scan was published; `last_success_ns` and `now_ns` are
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub(crate) fn of(
        published: bool,
        last_success_ns: Option<u64>,
        now_ns: u64,
        stale_after: Duration,
    ) -> Self {
        if !published {
            return Self::Starting;
        }
        let since = last_success_ns.map(|at| Duration::from_nanos(now_ns.saturating_sub(at)));
        match since {
            Some(since) if since <= stale_after => Self::Healthy,
            since => Self::Stale { since },
        }
    }

    /// The one-line body of the answer.
    pub(crate) fn message(self, stale_after: Duration) -> String {
        match self {
            Self::Starting => "starting".into(),
            Self::Healthy => "ok".into(),
            Self::Stale { since: None } => "stale: no scan has succeeded".into(),
            Self::Stale { since: Some(since) } => format!(
                "stale: the last successful scan was {:.1}s ago (limit {}s)",
                since.as_secs_f64(),
                stale_after.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn stale_after_is_three_intervals_but_never_under_ten_seconds() {
        assert_eq!(stale_after(Duration::from_secs(5)), Duration::from_secs(15));
        assert_eq!(stale_after(Duration::from_mins(1)), Duration::from_mins(3));
        assert_eq!(
            stale_after(Duration::from_millis(250)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn healthy_while_the_last_success_is_recent() {
        let limit = Duration::from_secs(15);
        let now = 1000 * SEC;
        assert_eq!(Health::of(false, None, now, limit), Health::Starting);
        assert_eq!(
            Health::of(false, Some(now), now, limit),
            Health::Starting,
            "nothing published yet"
        );
        assert_eq!(Health::of(true, Some(now), now, limit), Health::Healthy);
        assert_eq!(
            Health::of(true, Some(now - 15 * SEC), now, limit),
            Health::Healthy,
            "at the limit"
        );
        assert_eq!(
            Health::of(true, Some(now - 16 * SEC), now, limit),
            Health::Stale {
                since: Some(Duration::from_secs(16))
            }
        );
        assert_eq!(
            Health::of(true, None, now, limit),
            Health::Stale { since: None },
            "published, but every scan failed"
        );
        // A success stamped after `now` was read (another thread): healthy, not an underflow.
        assert_eq!(
            Health::of(true, Some(now + SEC), now, limit),
            Health::Healthy
        );
    }

    #[test]
    fn messages_are_one_line() {
        let limit = Duration::from_secs(15);
        assert_eq!(Health::Healthy.message(limit), "ok");
        assert_eq!(Health::Starting.message(limit), "starting");
        assert_eq!(
            Health::Stale {
                since: Some(Duration::from_millis(16_300))
            }
            .message(limit),
            "stale: the last successful scan was 16.3s ago (limit 15s)"
        );
    }
}
