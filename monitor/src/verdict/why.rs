//! Why a connection is suspect, in words: for each reason, the connection's own values and the
//! threshold they crossed ("`CLOSE_WAIT` 1m17s > `close_wait_after` 1m00s"), so an operator reading
//! `/connections` or the CLI needs neither the rules nor the config file to see why.

use std::{fmt::Write as _, time::Duration};

use super::{
    Policy, Thresholds,
    conntrack::CONNTRACK_PATH,
    rules::{bounded, retransmitting_for, time_in_state},
};
use crate::model::{
    Connection, Reason,
    format::{human_age, human_age_bound, human_duration, seconds},
};

/// One sentence per reason of `c.suspect`, in the same order, with the thresholds `policy`
/// applies to `c` (its overrides included).
#[must_use]
pub fn explain(c: &Connection, policy: &Policy) -> Vec<String> {
    if c.suspect.is_empty() {
        return Vec::new();
    }
    let t = policy.thresholds_for(c);
    c.suspect
        .iter()
        .map(|&reason| match reason {
            Reason::IdleBeyondPathTimeout => beyond_path(c, policy),
            _ => why(c, reason, &t),
        })
        .collect()
}

/// Why `c` is `idle_beyond_path_timeout`: the path by name and range (or the host's conntrack
/// entry), its timeout, the connection's idle time and keepalive, and when the middlebox
/// forgets the flow (for conntrack: when the kernel's entry expires).
fn beyond_path(c: &Connection, policy: &Policy) -> String {
    let idle = c.idle.unwrap_or_default();
    let (name, timeout, drops_at) = match (policy.path_of(c), c.conntrack) {
        (Some(path), _) => (
            format!("{} ({})", path.name, path.remote),
            path.idle_timeout,
            path.idle_timeout,
        ),
        (None, Some(found)) => (
            format!("{CONNTRACK_PATH} (this host's entry for the flow)"),
            found.timeout,
            found.drops_at_idle,
        ),
        (None, None) => return "no [[path]] matches it any more".into(),
    };
    let keepalive = match c.keepalive {
        Some(ka) if ka.enabled => format!("keepalive idle {} ≥ the timeout", age(ka.idle)),
        _ => "keepalive off".into(),
    };
    let when = match drops_at.checked_sub(idle) {
        Some(left) if !left.is_zero() => format!("forgets the flow in {}", human_duration(left)),
        _ => format!(
            "forgot the flow {} ago: the next packet gets no answer or a reset",
            human_duration(idle.saturating_sub(drops_at))
        ),
    };
    format!(
        "path {name} drops flows idle {}: idle {} > {} of it, {keepalive}; {when}",
        human_duration(timeout),
        human_duration(idle),
        policy.path_timeout_share,
    )
}

/// Why `c` is suspect for `reason` under thresholds `t`: the values the rule compared, the
/// threshold by its config name, and for an unresponsive peer when the kernel gives up. Ages are
/// written as the CLI writes them; a socket that predates the agent shows its lower bound (`≥`).
#[must_use]
pub fn why(c: &Connection, reason: Reason, t: &Thresholds) -> String {
    match reason {
        Reason::CloseWaitStuck => stuck(
            c,
            "CLOSE_WAIT",
            (c.since_send, "nothing sent"),
            ("close_wait_after", t.close_wait_after),
        ),
        Reason::FinWait2Stuck => stuck(
            c,
            "FIN_WAIT2",
            (c.since_recv, "nothing received"),
            ("fin_wait2_after", t.fin_wait2_after),
        ),
        Reason::PeerUnresponsive => {
            let silent = bounded(c.since_peer, retransmitting_for(c));
            let mut text = format!(
                "{} B unacked, {} retransmits, nothing from the peer for {} > unresponsive_after {}",
                c.unacked_bytes.unwrap_or(0),
                c.retransmits,
                age(silent),
                human_duration(t.unresponsive_after),
            );
            if let Some(gives_up_in) = c.gives_up_in {
                // Writing into a String cannot fail.
                let _ = write!(
                    text,
                    "; the kernel gives up in {}",
                    human_duration(gives_up_in)
                );
            }
            text
        }
        Reason::KeepaliveUnanswered => {
            let (idle, interval, count) = c
                .keepalive
                .map_or((None, None, None), |ka| (ka.idle, ka.interval, ka.count));
            format!(
                "keepalive on, nothing from the peer for {} > first probe {} + interval {}; reset after {} unanswered",
                age(c.since_peer),
                age(idle),
                age(interval),
                count.map_or_else(|| "its probes".to_owned(), |n| n.to_string()),
            )
        }
        Reason::IdleNoKeepalive => {
            let heard = c.since_peer.or(c.since_recv);
            let silent = match heard {
                Some(heard) => human_duration(heard),
                // Never heard from: silent for as long as it has been established.
                None => state_age(c),
            };
            format!(
                "keepalive off, nothing from the peer for {silent} > idle_after {}",
                human_duration(t.idle_after)
            )
        }
        Reason::IdleBeyondPathTimeout => {
            format!("idle {}, beyond its path's idle timeout", age(c.idle))
        }
        Reason::PeerDead => format!(
            "{} keepalive probes of ours unanswered, nothing from the peer for {}",
            c.probe.map_or(0, |p| p.unanswered),
            age(c.since_peer),
        ),
    }
}

/// A stuck half-close: the time in `state`, and when the application's own activity (`quiet`:
/// the time since it last sent or received, named by the words given) is more recent, that
/// silence, which is the clock the rule compared with `threshold`.
fn stuck(
    c: &Connection,
    state: &str,
    (activity, quiet): (Option<Duration>, &str),
    (name, threshold): (&str, Duration),
) -> String {
    let in_state = time_in_state(c);
    let compared = bounded(in_state, activity);
    let limit = format!("{name} {}", human_duration(threshold));
    if compared < in_state {
        format!(
            "{state} {}, {quiet} for {} > {limit}",
            state_age(c),
            age(compared)
        )
    } else {
        format!("{state} {} > {limit}", state_age(c))
    }
}

/// The time in the current state, `≥` its lower bound for a socket that predates the agent.
fn state_age(c: &Connection) -> String {
    human_age_bound(seconds(c.state_age), seconds(c.state_age_at_least))
}

fn age(d: Option<Duration>) -> String {
    human_age(seconds(d))
}

#[cfg(test)]
mod tests;
