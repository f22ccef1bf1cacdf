//! How long a suspect connection has been in trouble for one reason: the age alerts report and
//! `[[remediate]]`'s `min_age` is compared with.

use std::time::Duration;

use super::{Connection, Reason};

/// How long `c` has been in trouble for `reason`: time in the state for the stuck states (for
/// sockets that predate the agent, the lower bound the verdicts use too), time since the peer
/// was last heard from (`since_peer`) for the dead-peer reasons, idle time for
/// `idle_no_keepalive`. Falls back to the idle time when that clock is unknown.
#[must_use]
pub fn verdict_age(c: &Connection, reason: Reason) -> Option<Duration> {
    let specific = match reason {
        Reason::CloseWaitStuck | Reason::FinWait2Stuck => c.state_age.or(c.state_age_at_least),
        Reason::PeerUnresponsive | Reason::KeepaliveUnanswered | Reason::PeerDead => c.since_peer,
        Reason::IdleNoKeepalive | Reason::IdleBeyondPathTimeout => c.idle,
    };
    specific.or(c.idle)
}
