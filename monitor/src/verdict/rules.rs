//! The rules: one function per reason, each a plain predicate over one [`Connection`].

use std::time::Duration;

use monitor_common::tcp_state;

use super::{Policy, Thresholds, conntrack::beyond_conntrack, retransmission_limit};
use crate::model::{Connection, PeerVerdict, Reason};

/// The reasons `c` is suspect, and for an unresponsive peer how long until the kernel gives up.
/// `tcp_retries2` is the sysctl of the socket's own network namespace.
#[must_use]
pub fn evaluate(
    c: &Connection,
    policy: &Policy,
    tcp_retries2: u32,
) -> (Vec<Reason>, Option<Duration>) {
    if policy.ignored(c) {
        return (Vec::new(), None);
    }
    let t = policy.thresholds_for(c);
    let mut reasons = Vec::new();
    let mut gives_up_in = None;
    if close_wait_stuck(c, &t) {
        reasons.push(Reason::CloseWaitStuck);
    }
    if fin_wait2_stuck(c, &t) {
        reasons.push(Reason::FinWait2Stuck);
    }
    if peer_unresponsive(c, &t) {
        reasons.push(Reason::PeerUnresponsive);
        let limit = retransmission_limit(c.user_timeout, tcp_retries2);
        gives_up_in = retransmitting_for(c).map(|since| limit.saturating_sub(since));
    }
    if keepalive_unanswered(c) {
        reasons.push(Reason::KeepaliveUnanswered);
    }
    if peer_dead(c) {
        reasons.push(Reason::PeerDead);
    } else if idle_no_keepalive(c, &t) && !peer_alive(c) {
        reasons.push(Reason::IdleNoKeepalive);
    }
    if (!policy.paths.is_empty() || c.conntrack.is_some()) && idle_beyond_path_timeout(c, policy) {
        reasons.push(Reason::IdleBeyondPathTimeout);
    }
    (reasons, gives_up_in)
}

/// How long the socket has been in its state: exact, or at least since the agent first saw it.
pub(super) fn time_in_state(c: &Connection) -> Option<Duration> {
    c.state_age.or(c.state_age_at_least)
}

fn longer(age: Option<Duration>, limit: Duration) -> bool {
    age.is_some_and(|age| age > limit)
}

/// `clock`, bounded by `bound` when that is known: e.g. the time in a state during which
/// nothing was sent is the time in the state, or the time since the last send if shorter.
/// Unknown when `clock` is.
pub(super) fn bounded(clock: Option<Duration>, bound: Option<Duration>) -> Option<Duration> {
    clock.map(|clock| bound.map_or(clock, |bound| clock.min(bound)))
}

/// The peer closed; the local application never did, and has sent nothing for longer than the
/// threshold. A half-close is part of TCP: a server still sending its response after the
/// client's FIN is in `CLOSE_WAIT` for as long as the response takes, and is not stuck while
/// it sends (`since_send` within `close_wait_after`).
fn close_wait_stuck(c: &Connection, t: &Thresholds) -> bool {
    c.state == tcp_state::CLOSE_WAIT
        && longer(bounded(time_in_state(c), c.since_send), t.close_wait_after)
}

/// We closed our side, the peer never closed its side, and the application still holds the
/// socket. (After `close()` the kernel finishes an orphaned `FIN_WAIT2` alone within `tcp_fin_timeout`.)
/// The other end of a half-close: a client reading the response after its `shutdown(SHUT_WR)`
/// is not stuck while data arrives (`since_recv` within `fin_wait2_after`).
fn fin_wait2_stuck(c: &Connection, t: &Thresholds) -> bool {
    c.state == tcp_state::FIN_WAIT2
        && !c.orphan
        && longer(bounded(time_in_state(c), c.since_recv), t.fin_wait2_after)
}

/// How long the kernel has been retransmitting: since the first transmission of the oldest
/// unacknowledged data (`since_retrans_start`, the kernel's `retrans_stamp`), the clock its
/// give-up timer runs on. Not yet dated (the last read came before the retransmission timer
/// fired), a bound from below: the peer cannot have left data unanswered for longer than it has
/// been silent (`since_peer`), nor for longer than data was last sent (`since_send`) — late
/// rather than early.
pub(super) fn retransmitting_for(c: &Connection) -> Option<Duration> {
    c.since_retrans_start
        .or_else(|| bounded(c.since_peer, c.since_send))
}

/// Data outstanding, being retransmitted, and nothing from the peer since the oldest of it was
/// first sent: it is gone while we send. The silence is the peer's (`since_peer`), no longer
/// than the kernel has been retransmitting ([`retransmitting_for`]): a pooled connection idle
/// for minutes before a query to a vanished server has been left unanswered only since the
/// query, however long ago the peer last spoke.
fn peer_unresponsive(c: &Connection, t: &Thresholds) -> bool {
    let sending_states = [
        tcp_state::ESTABLISHED,
        tcp_state::CLOSE_WAIT,
        tcp_state::FIN_WAIT1,
        tcp_state::LAST_ACK,
    ];
    sending_states.contains(&c.state)
        && c.unacked_bytes.is_some_and(|n| n > 0)
        && c.retransmits > 0
        && longer(
            bounded(c.since_peer, retransmitting_for(c)),
            t.unresponsive_after,
        )
}

/// Keepalive is on, nothing is outstanding, and the peer has been silent for longer than the
/// first probe plus one probe interval: at least one probe went unanswered (answers, even pure
/// ACKs, refresh `since_peer`). The kernel resets the connection only after `count` probes.
fn keepalive_unanswered(c: &Connection) -> bool {
    let Some(ka) = c.keepalive.filter(|ka| ka.enabled) else {
        return false;
    };
    let (Some(idle), Some(interval)) = (ka.idle, ka.interval) else {
        return false;
    };
    c.state == tcp_state::ESTABLISHED
        && c.unacked_bytes.is_none_or(|n| n == 0)
        && longer(c.since_peer, idle + interval)
}

/// ESTABLISHED, nothing from the peer for a long time, and nothing that would ever notice a dead
/// peer. Only when keepalive is known to be off, and only with nothing unacknowledged: a socket
/// with unacknowledged data is not idle, its sender retransmits and will notice (that fault is
/// `peer_unresponsive`: one reason per fault). `TCP_USER_TIMEOUT` runs only while something is
/// outstanding (unacknowledged data, or data queued behind a zero window and probed): with
/// nothing to send and no keepalive it never fires, so it protects only a socket with data
/// queued.
fn idle_no_keepalive(c: &Connection, t: &Thresholds) -> bool {
    let keepalive_off = c.keepalive.is_some_and(|ka| !ka.enabled);
    // Any packet from the peer (data or ACK) shows it alive; a socket that never heard from it
    // counts from when it was established.
    let silent_for = c.since_peer.or(c.since_recv).or(time_in_state(c));
    c.state == tcp_state::ESTABLISHED
        && keepalive_off
        && c.unacked_bytes.is_none_or(|n| n == 0)
        && (c.user_timeout.is_none() || c.send_queue_bytes.is_none_or(|n| n == 0))
        && longer(silent_for, t.idle_after)
}

/// ESTABLISHED across a `[[path]]` whose middlebox forgets idle flows, with nothing that keeps
/// the flow alive in time (keepalive off, or its first probe not before the path's timeout),
/// and idle (nothing sent or received, probes and their answers included) past the path's
/// share of that timeout. Without a matching `[[path]]`, the host's own conntrack entry for the
/// flow, when the scan found one, is the path. Traffic clears it; `idle_after` plays no part.
fn idle_beyond_path_timeout(c: &Connection, policy: &Policy) -> bool {
    if c.state != tcp_state::ESTABLISHED {
        return false;
    }
    match policy.path_of(c) {
        Some(path) => longer(c.idle, path.report_after) && outlives_path(c, path.idle_timeout),
        None => beyond_conntrack(c, policy),
    }
}

/// Whether a connection idle from now on stays silent past `timeout`: keepalive known off,
/// or on with a first probe at or after it. Unknown keepalive settings are not guessed at.
pub(super) fn outlives_path(c: &Connection, timeout: Duration) -> bool {
    c.keepalive
        .is_some_and(|ka| !ka.enabled || ka.idle.is_some_and(|idle| idle >= timeout))
}

/// Our own keepalive probes went unanswered `[probe].count` times and the peer has not been
/// heard from since (`act::probe` decides both): the peer is gone. Replaces
/// `idle_no_keepalive`, the risk it proves real (one reason per fault).
fn peer_dead(c: &Connection) -> bool {
    c.probe
        .is_some_and(|p| p.verdict == Some(PeerVerdict::Dead))
}

/// The peer answered our probe and the connection has not been idle for `[probe].after` since:
/// it is idle, not dead, so `idle_no_keepalive` is not raised.
fn peer_alive(c: &Connection) -> bool {
    c.probe
        .is_some_and(|p| p.verdict == Some(PeerVerdict::Alive))
}

#[cfg(test)]
mod path_tests;
#[cfg(test)]
mod tests;
