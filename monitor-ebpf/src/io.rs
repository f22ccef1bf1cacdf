//! `sock_send_length` / `sock_recv_length`: the end of `sock_sendmsg` / `sock_recvmsg`, in the
//! calling process. The hot path: one cookie, one hash lookup, a few stores. The owner's `comm` is
//! re-read only when a different process uses the socket, the socket options only on the first
//! I/O after a quiet second.
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
use monitor_common::{SockActivity, tcp_state};

use crate::{maps, socket};

const OPTIONS_REFRESH_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Send,
    Recv,
}

// TP_PROTO(struct sock *sk, int ret, int flags)
#[btf_tracepoint(function = "sock_send_length")]
fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    on_io(&ctx, ctx.arg(0), ctx.arg(1), Direction::Send);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    on_io(&ctx, ctx.arg(0), ctx.arg(1), Direction::Recv);
    0
}

#[inline(always)]
fn on_io(ctx: &BtfTracePointContext, sk: *mut c_void, ret: i32, dir: Direction) {
    let cookie = socket::cookie(sk);
    let entry = if let Some(entry) = maps::entry(cookie) {
        entry
    } else {
        // Not tracked yet: a TCP socket whose transitions we missed (it predates the agent and
        // seeding has not reached it, or its insert failed on a full table). Everything else
        // (UDP, UNIX, ...) stops here.
        let off = socket::offsets();
        if !socket::is_tcp(sk, off) {
            return;
        }
        let state: u8 = socket::read(sk, off.skc_state);
        if state == tcp_state::CLOSE {
            // Already closed: the last read (EOF) or write (EPIPE) after the CLOSE transition
            // deleted the entry. Tracking it again would only cost an insert and a delete.
            return;
        }
        let fresh = socket::identity(sk, off, state);
        match maps::insert_new(ctx, cookie, &fresh, sk) {
            Some(entry) => entry,
            None => return,
        }
    };
    record_owner(entry);
    if ret <= 0 {
        // Errors (EAGAIN from a polling loop) and EOF are not data.
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // Socket options change rarely (usually right after connect/accept): re-read them on the
    // first I/O after a quiet second, which keeps the per-packet path at one hash lookup.
    let last_io = if entry.last_send_ns > entry.last_recv_ns {
        entry.last_send_ns
    } else {
        entry.last_recv_ns
    };
    if now.wrapping_sub(last_io) > OPTIONS_REFRESH_NS {
        socket::read_options(sk, socket::offsets(), entry);
    }
    match dir {
        Direction::Send => {
            entry.last_send_ns = now;
            entry.bytes_sent += u64::from(ret.cast_unsigned());
        }
        Direction::Recv => {
            entry.last_recv_ns = now;
            entry.bytes_received += u64::from(ret.cast_unsigned());
        }
    }
}

#[inline(always)]
fn record_owner(entry: &mut SockActivity) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if entry.tgid != tgid {
        entry.tgid = tgid;
        entry.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
}
