//! `inet_sock_set_state` (emitted by tcp_set_state): creates the entry on the first transition,
//! records the state and when it was entered, deletes the entry when the socket reaches CLOSE.

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
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    on_state_change(&ctx, sk, old as u32, new as u32);
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
    if new == tcp_state::CLOSE as u32 {
        // CLOSE is the end (TIME_WAIT is handled by a separate mini-socket that the kernel does
        // not report here): delete now so nothing leaks.
        maps::remove(cookie);
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = maps::entry(cookie) {
        if entry.sport == 0 {
            // connect() enters SYN_SENT before the kernel picks the local port (and a bound
            // address may change): complete the identity at the next transition.
            let id = socket::identity(sk, off, new as u8);
            entry.sport = id.sport;
            entry.saddr = id.saddr;
        }
        // close() on a FIN_WAIT2 socket "moves" it to FIN_WAIT2 again: not a new state.
        if entry.state != new as u8 {
            entry.state = new as u8;
            entry.state_since_ns = now;
            entry.flags &= !monitor_common::FLAG_STATE_SINCE_LOWER_BOUND;
        }
        socket::read_options(sk, off, entry);
        return;
    }
    let mut entry = socket::identity(sk, off, new as u8);
    entry.state_since_ns = now;
    socket::read_options(sk, off, &mut entry);
    if old == tcp_state::CLOSE as u32
        && (new == tcp_state::SYN_SENT as u32 || new == tcp_state::LISTEN as u32)
    {
        // connect() and listen() run in the calling process: the transitions where `current` is
        // the owner. Passive opens and FIN/ACK processing run in softirq, where it is unrelated.
        entry.tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        entry.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    let _ = maps::insert_new(ctx, cookie, &entry);
}
