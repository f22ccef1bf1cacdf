//! Raw kernel values of a [`KernelSockState`] turned into what they mean: ages, byte counts, the
//! state `sock_diag` reports. Pure functions, computed exactly as the kernel's own `tcp_info` /
//! `inet_diag` code does, so they agree with `ss`.

use std::time::Duration;

use monitor_common::{
    kernel_state::{KIND_REQUEST, KIND_TIME_WAIT, KS_USEC_TS, KernelSockState},
    tcp_state,
};

/// `jiffies` ticks as a duration at `hz` ticks per second; `None` when `hz` is 0 (unknown).
#[must_use]
pub fn jiffies_to_duration(jiffies: u64, hz: u32) -> Option<Duration> {
    if hz == 0 {
        return None;
    }
    let hz = u64::from(hz);
    let nanos = u128::from(jiffies % hz) * 1_000_000_000 / u128::from(hz);
    // < 1e9: fits.
    Some(Duration::new(
        jiffies / hz,
        u32::try_from(nanos).unwrap_or(999_999_999),
    ))
}

/// Time from the 32-bit jiffies stamp `then` to `now`, computed as `tcp_info` does
/// (`now - then` in wrapping `u32` arithmetic, `tcp_jiffies32`), so it agrees with `ss` even
/// across a wrap. The program reads `now` before the socket's fields while holding the socket's
/// lock, so a stamp is never later than `now`.
#[must_use]
pub fn jiffies_since(now: u64, then: u32, hz: u32) -> Option<Duration> {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel compares u32 jiffies: the low 32 bits are the stamp's clock"
    )]
    let now32 = now as u32;
    jiffies_to_duration(u64::from(now32.wrapping_sub(then)), hz)
}

/// Since the last data segment was sent (`lsndtime`; `ss -i` `lastsnd`). Full sockets only.
#[must_use]
pub fn since_last_send(s: &KernelSockState, hz: u32) -> Option<Duration> {
    jiffies_since(s.now_jiffies, s.lsndtime, hz)
}

/// Since the last data segment was received (`icsk_ack.lrcvtime`; `ss -i` `lastrcv`).
#[must_use]
pub fn since_last_recv(s: &KernelSockState, hz: u32) -> Option<Duration> {
    jiffies_since(s.now_jiffies, s.lrcvtime, hz)
}

/// Since the last ACK from the peer (`rcv_tstamp`; `ss -i` `lastack`): how long the peer has been
/// silent.
#[must_use]
pub fn since_last_ack(s: &KernelSockState, hz: u32) -> Option<Duration> {
    jiffies_since(s.now_jiffies, s.rcv_tstamp, hz)
}

/// Since the first retransmission of the current loss episode (`retrans_stamp`, a 32-bit clock in
/// ms — µs with `KS_USEC_TS` — of `CLOCK_MONOTONIC`, compared with `now_ns`); `None` when
/// nothing is being retransmitted (`retrans_stamp == 0`).
#[must_use]
pub fn since_retrans_start(s: &KernelSockState) -> Option<Duration> {
    since_stamp(s.now_ns, s.retrans_stamp, s.flags & KS_USEC_TS != 0)
}

/// Time from `stamp`, a TCP timestamp (the low 32 bits of `CLOCK_MONOTONIC` in ms, or in µs when
/// `usec`), to `now_ns` of the same clock, in wrapping arithmetic as the kernel compares them;
/// `None` for a zero stamp (the kernel's "not set").
#[must_use]
pub fn since_stamp(now_ns: u64, stamp: u32, usec: bool) -> Option<Duration> {
    if stamp == 0 {
        return None;
    }
    let now = if usec {
        now_ns / 1_000
    } else {
        now_ns / 1_000_000
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel keeps the stamp as the low 32 bits of the same clock"
    )]
    let delta = u64::from((now as u32).wrapping_sub(stamp));
    Some(if usec {
        Duration::from_micros(delta)
    } else {
        Duration::from_millis(delta)
    })
}

/// Bytes sent and not yet acknowledged: `snd_nxt - snd_una` (sequence space, wrapping).
#[must_use]
pub fn unacked_bytes(s: &KernelSockState) -> u32 {
    s.snd_nxt.wrapping_sub(s.snd_una)
}

/// Bytes the application has written that the peer has not acknowledged, sent or not:
/// `write_seq - snd_una` (`inet_diag`'s `idiag_wqueue`, `ss` `Send-Q`, for a non-listener).
#[must_use]
pub fn send_queue_bytes(s: &KernelSockState) -> u32 {
    s.write_seq.wrapping_sub(s.snd_una)
}

/// Bytes received that the application has not read: `rcv_nxt - copied_seq`, never negative
/// (`inet_diag`'s `idiag_rqueue`, `ss` `Recv-Q`, for a non-listener).
#[must_use]
pub fn recv_queue_bytes(s: &KernelSockState) -> u32 {
    clamp_queue(s.rcv_nxt.wrapping_sub(s.copied_seq))
}

/// A receive queue computed as `rcv_nxt - copied_seq`, which reads as negative (a huge `u32`)
/// while the kernel moves the two: 0 then, as `inet_diag` reports it.
#[must_use]
pub fn clamp_queue(queued: u32) -> u32 {
    if queued.cast_signed() < 0 { 0 } else { queued }
}

/// The state `sock_diag` (and `ss`) reports: a `TIME_WAIT` mini-socket as its `tw_substate`
/// (`FIN_WAIT2` for an orphan finishing its `FIN_WAIT2` timeout), a request socket as
/// `SYN_RECV`, any other socket as its `skc_state`.
#[must_use]
pub fn diag_state(s: &KernelSockState) -> u8 {
    match s.kind {
        KIND_TIME_WAIT if s.tw_substate != 0 => s.tw_substate,
        KIND_REQUEST => tcp_state::SYN_RECV,
        _ => s.state,
    }
}

/// Ticks per second from the length of one tick (`clock_getres` of a coarse clock: `TICK_NSEC`,
/// the kernel's `(NSEC_PER_SEC + HZ / 2) / HZ`); `None` for a zero, negative or over-a-second tick.
#[must_use]
pub fn hz_from_tick(secs: i64, nanos: i64) -> Option<u32> {
    if secs != 0 || nanos <= 0 {
        return None;
    }
    let nanos = u64::try_from(nanos).ok()?;
    u32::try_from((1_000_000_000 + nanos / 2) / nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::kernel_state::KIND_FULL;

    fn full() -> KernelSockState {
        let mut s = KernelSockState::zeroed();
        s.kind = KIND_FULL;
        s.state = tcp_state::ESTABLISHED;
        s
    }

    #[test]
    fn jiffies_convert_at_the_given_rate() {
        assert_eq!(jiffies_to_duration(250, 250), Some(Duration::from_secs(1)));
        assert_eq!(jiffies_to_duration(1, 250), Some(Duration::from_millis(4)));
        assert_eq!(
            jiffies_to_duration(1, 300),
            Some(Duration::from_nanos(3_333_333))
        );
        assert_eq!(
            jiffies_to_duration(7_200_000, 1000),
            Some(Duration::from_hours(2))
        );
        assert_eq!(jiffies_to_duration(5, 0), None, "unknown HZ");
    }

    #[test]
    fn ages_wrap_like_the_kernels_u32_jiffies() {
        // 64-bit now just past a 32-bit wrap, stamp just before it: 10 ticks.
        let now = (1u64 << 32) + 4;
        assert_eq!(
            jiffies_since(now, u32::MAX - 5, 1000),
            Some(Duration::from_millis(10))
        );
        assert_eq!(jiffies_since(1_000, 750, 250), Some(Duration::from_secs(1)));
        // A stamp of 0 (never set) is as old as the kernel says: now - 0.
        assert_eq!(jiffies_since(1_000, 0, 250), Some(Duration::from_secs(4)));
        let mut s = full();
        s.now_jiffies = 10_000;
        s.lsndtime = 9_000;
        s.lrcvtime = 8_000;
        s.rcv_tstamp = 9_750;
        assert_eq!(since_last_send(&s, 250), Some(Duration::from_secs(4)));
        assert_eq!(since_last_recv(&s, 250), Some(Duration::from_secs(8)));
        assert_eq!(since_last_ack(&s, 250), Some(Duration::from_secs(1)));
    }

    #[test]
    fn retransmission_start_uses_the_monotonic_ms_or_us_clock() {
        let mut s = full();
        assert_eq!(since_retrans_start(&s), None, "nothing retransmitted");
        s.now_ns = 5_000_000_000_000; // 5e6 ms
        s.retrans_stamp = 5_000_000 - 1_500;
        assert_eq!(since_retrans_start(&s), Some(Duration::from_millis(1_500)));
        s.flags |= KS_USEC_TS;
        #[expect(clippy::cast_possible_truncation, reason = "the kernel's u32 stamp")]
        let stamp = (5_000_000_000u64 - 2_500) as u32;
        s.retrans_stamp = stamp;
        assert_eq!(since_retrans_start(&s), Some(Duration::from_micros(2_500)));
    }

    #[test]
    fn queues_follow_inet_diag() {
        let mut s = full();
        s.snd_una = u32::MAX - 99; // wraps
        s.snd_nxt = 100;
        s.write_seq = 1_900;
        assert_eq!(unacked_bytes(&s), 200);
        assert_eq!(send_queue_bytes(&s), 2_000);
        s.rcv_nxt = 5_000;
        s.copied_seq = 1_000;
        assert_eq!(recv_queue_bytes(&s), 4_000);
        // copied_seq may run ahead of rcv_nxt transiently (urgent data): never negative.
        s.copied_seq = 5_010;
        assert_eq!(recv_queue_bytes(&s), 0);
    }

    #[test]
    fn diag_state_matches_what_sock_diag_reports() {
        let mut s = full();
        s.state = tcp_state::CLOSE_WAIT;
        assert_eq!(diag_state(&s), tcp_state::CLOSE_WAIT);
        let mut tw = KernelSockState::zeroed();
        tw.kind = KIND_TIME_WAIT;
        tw.state = tcp_state::TIME_WAIT;
        tw.tw_substate = tcp_state::TIME_WAIT;
        assert_eq!(diag_state(&tw), tcp_state::TIME_WAIT);
        tw.tw_substate = tcp_state::FIN_WAIT2;
        assert_eq!(diag_state(&tw), tcp_state::FIN_WAIT2, "orphan FIN_WAIT2");
        let mut req = KernelSockState::zeroed();
        req.kind = KIND_REQUEST;
        req.state = tcp_state::NEW_SYN_RECV;
        assert_eq!(diag_state(&req), tcp_state::SYN_RECV);
    }

    #[test]
    fn hz_from_the_tick_length() {
        assert_eq!(hz_from_tick(0, 4_000_000), Some(250));
        assert_eq!(hz_from_tick(0, 1_000_000), Some(1000));
        assert_eq!(hz_from_tick(0, 3_333_333), Some(300));
        assert_eq!(hz_from_tick(0, 10_000_000), Some(100));
        assert_eq!(hz_from_tick(0, 0), None);
        assert_eq!(hz_from_tick(1, 0), None);
    }
}
