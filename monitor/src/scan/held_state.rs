//! A connection's values from its socket's own state as the last pass over the held sockets read
//! it ([`super::holders::HeldSockets`]): the kernel's times, counters and options, the same
//! fields `tcp_get_info` reports (so they agree with `ss -ti`). Pure.
//!
//! Where the per-packet hooks run too (`--per-packet-hooks`), each age is the more recent of the
//! hooks' and the kernel's: the pass may be older than the hooks' last event.

use std::time::Duration;

use monitor_common::{
    SockActivity,
    holders::{HS_DEAD, HS_KEEPOPEN, HS_NO_SOCKET, HS_TIMERS_READ, HeldSocket},
    tcp_state,
};

use super::convert::{self, SocketDefaults};
use super::holders::HeldView;
use crate::{
    bpf::{
        kernel_state::convert::clamp_queue,
        task_file::holders::{
            since_last_ack, since_last_recv, since_last_send, since_retrans_start, unacked_bytes,
        },
    },
    model::{Connection, Keepalive},
};

/// Overlays `c` (converted from `entry`) with `held`, its socket as a pass read it; ages are
/// counted to `now_ns`, jiffies converted with `defaults.hz` (unknown: the ages are left as
/// they are). Sets:
/// - `orphan` when the walk found `SOCK_DEAD` ([`HS_DEAD`]);
/// - state: the kernel's, when the hooks saw no transition since the pass (a lost event); its
///   age is then a lower bound from the pass;
/// - `since_send` (`lsndtime`, the last data segment sent), `since_recv` (`icsk_ack.lrcvtime`,
///   the last data segment received), `since_peer` (`rcv_tstamp`, the peer's last ACK, keepalive
///   answers included, or the pass that saw a segment no kernel time records, such as the
///   peer's keepalive probe: [`HeldView::heard_ns`]) and `idle` (the most recent of the three);
/// - `unacked_bytes` (`snd_nxt - snd_una`), `srtt` (`srtt_us >> 3`), `bytes_sent` and
///   `bytes_received` (`tcp_sock`'s, as `ss -i` shows them), `send_queue_bytes`
///   (`write_seq - snd_una`) and `recv_queue_bytes` (`rcv_nxt - copied_seq`, `ss`'s `Recv-Q`);
/// - `keepalive` and `user_timeout` (the socket's options, the namespace's sysctls where unset;
///   when the pass did not read the timers, [`HS_TIMERS_READ`], only whether keepalive is on);
/// - `since_retrans_start`: since the first transmission of the oldest data being retransmitted
///   (`retrans_stamp`) while the retransmission timer has fired (`icsk_retransmits` > 0: the
///   peer answers nothing, the clock the kernel's give-up runs on), else None. A stamp outside
///   such an episode (fast retransmits the peer's duplicate ACKs asked for, or one left from an
///   episode the peer ended) is no silence.
pub(crate) fn apply(
    c: &mut Connection,
    entry: &SockActivity,
    held: HeldView,
    now_ns: u64,
    defaults: &SocketDefaults,
) {
    let (s, read_ns) = (&held.sample, held.read_ns);
    let since_read = Duration::from_nanos(now_ns.saturating_sub(read_ns));
    if s.state != 0 && s.state != entry.state && entry.state_since_ns < read_ns {
        c.state = s.state;
        c.state_age = None;
        c.state_age_at_least = Some(since_read);
    }
    // The walk reads `SOCK_DEAD` at every walk; the `iter/tcp` read's flag (in `entry`) may
    // be minutes old. A socket never leaves that state: only set.
    c.orphan |= s.flags & HS_DEAD != 0;
    let keepalive_on = s.flags & HS_KEEPOPEN != 0;
    c.keepalive = match c.keepalive {
        // Keepalive off and the timers not read: the socket's own timers as the slot has
        // them (the last read of the kernel's socket state), which nothing judges while off.
        Some(known) if s.flags & HS_TIMERS_READ == 0 => Some(Keepalive {
            enabled: keepalive_on,
            ..known
        }),
        _ => Some(convert::keepalive_of(
            keepalive_on,
            (s.keepalive_time, s.keepalive_intvl, s.keepalive_probes),
            defaults,
        )),
    };
    c.user_timeout =
        (s.user_timeout_ms != 0).then(|| Duration::from_millis(s.user_timeout_ms.into()));
    if c.state == tcp_state::LISTEN {
        // A listener has no peer and carries no data: its stamps are not ages of anything.
        return;
    }
    c.unacked_bytes = Some(unacked_bytes(s));
    c.send_queue_bytes = Some(s.write_seq.wrapping_sub(s.snd_una));
    c.recv_queue_bytes = Some(clamp_queue(s.recv_queue));
    c.since_retrans_start = (s.retransmits > 0)
        .then(|| since_retrans_start(s))
        .flatten()
        .map(|since| since + since_read);
    c.srtt = (s.srtt_us_x8 != 0).then(|| Duration::from_micros((s.srtt_us_x8 >> 3).into()));
    c.bytes_sent = c.bytes_sent.max(s.bytes_sent);
    c.bytes_received = c.bytes_received.max(s.bytes_received);
    let Some(hz) = defaults.hz else { return };
    let kernel = |since: Option<Duration>| since.map(|since| since + since_read);
    c.since_send = more_recent(c.since_send, kernel(since_last_send(s, hz)));
    c.since_recv = more_recent(c.since_recv, kernel(since_last_recv(s, hz)));
    c.since_peer = more_recent(c.since_peer, kernel(since_last_ack(s, hz)));
    let heard = held.heard_ns.and_then(|at| convert::age(now_ns, at));
    c.since_peer = more_recent(c.since_peer, heard);
    most_recent_idle(c);
}

/// Whether `s` waits in its listener's accept queue: a full socket without a `struct socket`
/// (`HS_NO_SOCKET`, which only the walk reads; a descriptor pass reaches held sockets) that is
/// not an orphan and not a listener. What a current view says is what the socket is now: it
/// comes before the `iter/tcp` read's ([`super::kernel_state::in_accept_queue`]).
pub(crate) fn in_accept_queue(s: &HeldSocket) -> bool {
    s.flags & HS_NO_SOCKET != 0 && s.flags & HS_DEAD == 0 && s.state != tcp_state::LISTEN
}

/// Sets `c.idle` to the most recent of its last send, receive and ACK from the peer; left as
/// it is when none is known.
pub(crate) fn most_recent_idle(c: &mut Connection) {
    c.idle = [c.since_send, c.since_recv, c.since_peer]
        .into_iter()
        .flatten()
        .min()
        .or(c.idle);
}

/// The shorter of two ages of the same event, either unknown.
pub(crate) fn more_recent(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
