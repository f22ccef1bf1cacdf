//! `inet_sock_set_state`, emitted by `tcp_set_state` and by `listen()` (CLOSE→LISTEN, measured on
//! Linux 6.18): creates the entry on the first transition (into any state but CLOSE), records the
//! state and when it was entered, deletes the entry when the socket reaches CLOSE.
#![expect(
    clippy::needless_pass_by_value,
    reason = "the `#[btf_tracepoint]` macro hands each entry point its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use monitor_common::tcp_state;

use crate::{maps, socket};

// TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
#[btf_tracepoint(function = "inet_sock_set_state")]
fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    on_state_change(&ctx, sk, old.cast_unsigned(), new.cast_unsigned());
    0
}

#[inline(always)]
fn on_state_change(ctx: &BtfTracePointContext, sk: *mut c_void, old: u32, new: u32) {
    let off = socket::offsets();
    if !socket::is_tcp(sk, off) {
        return;
    }
    maps::count_transition(old, new);
    let cookie = socket::cookie(sk);
    if new == u32::from(tcp_state::CLOSE) {
        // CLOSE is the end (TIME_WAIT is handled by a separate mini-socket that the kernel does
        // not report here): delete now so nothing leaks.
        maps::remove_closed(cookie);
        return;
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "kernel TCP states are 1..=13; the entry keeps them in a u8"
    )]
    let state = new as u8;
    let now = unsafe { bpf_ktime_get_ns() };
    // The first transition of a new socket: connect() or listen() (from CLOSE), or a child
    // cloned from its listener (from LISTEN). It has no entry yet, so the index is not asked
    // first: the insert says so if one appeared meanwhile (the agent's seeding).
    let first = old == u32::from(tcp_state::CLOSE) || old == u32::from(tcp_state::LISTEN);
    if !first && let Some(entry) = maps::entry(cookie) {
        if entry.sport == 0 {
            // connect() enters SYN_SENT before the kernel picks the local port (and a bound
            // address may change): complete the identity at the next transition.
            let id = socket::identity(sk, off, state);
            entry.sport = id.sport;
            entry.saddr = id.saddr;
        }
        enter(entry, state, now);
        // Only the flags: the timers are read when the entry is made (a child inherits its
        // listener's, a client sets them before connect()), and the held pass and the table
        // refresh read them again; here they would cost a helper call and two cold cache lines
        // at each of the nine or so transitions of every connection.
        socket::read_socket_flags(sk, off, entry);
        return;
    }
    let mut fresh = socket::identity(sk, off, state);
    fresh.state_since_ns = now;
    socket::read_options(sk, off, &mut fresh);
    if old == u32::from(tcp_state::CLOSE)
        && (new == u32::from(tcp_state::SYN_SENT) || new == u32::from(tcp_state::LISTEN))
    {
        // connect() and listen() run in the calling process: the transitions where `current` is
        // the owner. Passive opens and FIN/ACK processing run in softirq, where it is unrelated.
        fresh.tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        fresh.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    if let Some(entry) = maps::insert_new(ctx, cookie, &fresh, sk) {
        // Someone else's entry when the insert lost a race: it enters the new state all the same.
        enter(entry, state, now);
    }
}

/// Records that the socket of `entry` entered `state` at `now` (ns, `bpf_ktime_get_ns`).
/// `close()` on a `FIN_WAIT2` socket "moves" it to `FIN_WAIT2` again: not a new state.
#[inline(always)]
fn enter(entry: &mut monitor_common::SockActivity, state: u8, now: u64) {
    if entry.state != state {
        entry.state = state;
        entry.state_since_ns = now;
        entry.flags &= !monitor_common::FLAG_STATE_SINCE_LOWER_BOUND;
    }
}
