//! A probe's round trip from the kernel's jiffies: when its first keepalive probe left, and
//! whether the peer's ACK the finish read answers that one.

use std::time::Duration;

use monitor_common::sockopt::SockoptRequest;

use super::super::jiffies_to_duration;

/// The first probe's round trip, in jiffies from its departure ([`probe_departure`]) to
/// `rcv_tstamp`, the peer's last ACK as the finish read it. None when that ACK came before the
/// probe left (a wrap, or an ACK in the same tick), or a whole `TCP_KEEPIDLE` or more after it:
/// the kernel sends its next probe `TCP_KEEPIDLE` after an answer, so that ACK may answer a
/// later probe, and the wait between them is not the peer's.
pub(super) fn first_round_trip(
    start: &SockoptRequest,
    rcv_tstamp: u32,
    hz: u32,
) -> Option<Duration> {
    let jiffies = rcv_tstamp.wrapping_sub(probe_departure(start, hz));
    let keepidle = start.want.keepidle_s.saturating_mul(hz);
    (i32::try_from(jiffies).is_ok() && jiffies < keepidle).then(|| jiffies_to_duration(jiffies, hz))
}

/// When the first keepalive probe of a start left, in jiffies (low 32 bits): the kernel arms
/// the keepalive timer for what is left of the probe's `TCP_KEEPIDLE` after the idle time it
/// already counts (`keepalive_time_elapsed`: since the later of the last data, `lrcvtime`, and
/// the last ACK, `rcv_tstamp`), and fires it at once when none is left. The wait from the start
/// (`now_jiffies`) to that moment is not the peer's: it is left out of the round trip.
pub(super) fn probe_departure(start: &SockoptRequest, hz: u32) -> u32 {
    let now = start.now_jiffies;
    let elapsed = now
        .wrapping_sub(start.lrcvtime)
        .min(now.wrapping_sub(start.rcv_tstamp));
    let idle = start.want.keepidle_s.saturating_mul(hz);
    now.wrapping_add(idle.saturating_sub(elapsed))
}
