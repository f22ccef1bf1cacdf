//! `iter/tcp` program `iter_tcp_sockopt`: applies the agent's [`SockoptRequest`]s (one per
//! socket cookie in `SOCKOPT_REQUESTS`) with `bpf_setsockopt`, recording first the options as
//! they were, and writes the outcome back into the request. It writes nothing to the iterator's
//! file: the agent reads the file only to make the kernel walk the namespace's sockets.
//!
//! The iterator calls the program with each full socket locked (`lock_sock_fast`), which is what
//! `bpf_setsockopt` needs; the change is the one `setsockopt(2)` makes (`sk_setsockopt`,
//! `do_tcp_setsockopt`), so the keepalive timer is re-armed exactly as for the application.
//! Runs only when the agent reads this iterator, never on the packet path.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_getsockopt, bpf_jiffies64, bpf_setsockopt},
    macros::map,
    maps::HashMap,
};
use monitor_common::{
    KernelOffsets,
    sockopt::{
        OUTCOME_DONE, SET_KEEPALIVE, SET_KEEPCNT, SET_KEEPIDLE, SET_KEEPINTVL, SET_USER_TIMEOUT,
        SOCKOPT_REQUESTS_CAPACITY, SockoptRequest, SockoptValues,
    },
};

use crate::{
    iter::IterTcpCtx,
    socket::{self, read},
};

/// Requests by socket cookie, written and deleted by the agent.
#[map(name = "SOCKOPT_REQUESTS")]
static SOCKOPT_REQUESTS: HashMap<u64, SockoptRequest> =
    HashMap::with_max_entries(SOCKOPT_REQUESTS_CAPACITY, 0);

/// `include/uapi/asm-generic/socket.h`, `include/uapi/linux/tcp.h`, `include/uapi/linux/in.h`.
const SOL_SOCKET: i32 = 1;
const SO_KEEPALIVE: i32 = 9;
const SOL_TCP: i32 = 6;
const TCP_KEEPIDLE: i32 = 4;
const TCP_KEEPINTVL: i32 = 5;
const TCP_KEEPCNT: i32 = 6;
const TCP_USER_TIMEOUT: i32 = 18;

/// Every option the program handles, in the order it applies them: `SO_KEEPALIVE` first and
/// `TCP_KEEPIDLE` last. Switching keepalive on arms its timer for a whole idle period from now;
/// setting the idle time on a socket that has keepalive on re-arms the timer with the time left
/// of the new idle period, counted from the last segment received
/// (`tcp_sock_set_keepidle_locked`): a socket already idle that long gets its first probe at
/// once, in the same walk. Switching keepalive off first disarms it before any timer changes.
pub(crate) const OPTIONS: [(u32, i32, i32); 5] = [
    (SET_KEEPALIVE, SOL_SOCKET, SO_KEEPALIVE),
    (SET_USER_TIMEOUT, SOL_TCP, TCP_USER_TIMEOUT),
    (SET_KEEPCNT, SOL_TCP, TCP_KEEPCNT),
    (SET_KEEPINTVL, SOL_TCP, TCP_KEEPINTVL),
    (SET_KEEPIDLE, SOL_TCP, TCP_KEEPIDLE),
];

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
extern "C" fn iter_tcp_sockopt(ctx: *mut IterTcpCtx) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_iter__tcp`; the verifier checks each field access.
    let sk = unsafe { (*ctx).sk_common };
    if sk.is_null() {
        return 0;
    }
    let Some(tp) = socket::tcp_sock(sk) else {
        return 0;
    };
    let Some(request) = SOCKOPT_REQUESTS.get_ptr_mut(socket::cookie(sk)) else {
        return 0;
    };
    // SAFETY: a map value pointer, valid for the program's run; nothing else writes it now
    // (the agent waits for the iterator read to end).
    apply(sk, tp, socket::offsets(), unsafe { &mut *request });
    0
}

/// Records the socket's options and clocks, then applies the requested values.
#[inline(always)]
fn apply(sk: *mut c_void, tp: *const c_void, off: &KernelOffsets, request: &mut SockoptRequest) {
    let mut error = 0i32;
    let mut before = SockoptValues::default();
    for (bit, level, name) in OPTIONS {
        match get(sk, level, name) {
            Ok(value) => *value_of(&mut before, bit) = value,
            Err(e) if error == 0 => error = e,
            Err(_) => {}
        }
    }
    let explicit = explicit_options(sk, tp, off);
    let mut applied = 0u32;
    for (bit, level, name) in OPTIONS {
        if request.set & bit == 0 {
            continue;
        }
        // `fill`: only where the application left the default; keepalive is only switched on.
        if request.fill & bit != 0
            && (explicit & bit != 0 || (bit == SET_KEEPALIVE && request.want.keepalive == 0))
        {
            continue;
        }
        let value = *value_of(&mut request.want, bit);
        match set(sk, level, name, value) {
            Ok(()) => applied |= bit,
            Err(e) if error == 0 => error = e,
            Err(_) => {}
        }
    }
    request.before = before;
    request.explicit = explicit;
    request.applied = applied;
    request.error = error;
    request.probes_out = u32::from(read::<u8>(tp, off.icsk_probes_out));
    request.rcv_tstamp = read(tp, off.tcp_rcv_tstamp);
    request.lrcvtime = read(tp, off.icsk_lrcvtime);
    // SAFETY: a helper without preconditions.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel compares u32 jiffies (tcp_jiffies32): the low 32 bits are its clock"
    )]
    let now = unsafe { bpf_jiffies64() } as u32;
    request.now_jiffies = now;
    request.state = u32::from(read::<u8>(sk, off.skc_state));
    request.outcome = OUTCOME_DONE;
}

/// `SET_*` bits of the options the application (or anyone) set explicitly: the raw fields the
/// kernel leaves 0 until `setsockopt` (0 = "use the namespace's sysctl").
#[inline(always)]
pub(crate) fn explicit_options(sk: *const c_void, tp: *const c_void, off: &KernelOffsets) -> u32 {
    let flags: u64 = read(sk, off.sk_flags);
    let mut explicit = 0;
    if flags & (1 << (off.sock_keepopen_bit & 63)) != 0 {
        explicit |= SET_KEEPALIVE;
    }
    if read::<u32>(tp, off.tcp_keepalive_time) != 0 {
        explicit |= SET_KEEPIDLE;
    }
    if read::<u32>(tp, off.tcp_keepalive_intvl) != 0 {
        explicit |= SET_KEEPINTVL;
    }
    if read::<u8>(tp, off.tcp_keepalive_probes) != 0 {
        explicit |= SET_KEEPCNT;
    }
    if read::<u32>(tp, off.icsk_user_timeout) != 0 {
        explicit |= SET_USER_TIMEOUT;
    }
    explicit
}

/// The field of `values` for one `SET_*` bit.
#[inline(always)]
pub(crate) fn value_of(values: &mut SockoptValues, bit: u32) -> &mut u32 {
    match bit {
        SET_KEEPALIVE => &mut values.keepalive,
        SET_KEEPIDLE => &mut values.keepidle_s,
        SET_KEEPINTVL => &mut values.keepintvl_s,
        SET_KEEPCNT => &mut values.keepcnt,
        _ => &mut values.user_timeout_ms,
    }
}

#[inline(always)]
fn get(sk: *mut c_void, level: i32, name: i32) -> Result<u32, i32> {
    let mut value = 0u32;
    // SAFETY: `sk` is the iterator's locked full socket; `value` is 4 writable bytes.
    let ret = unsafe { bpf_getsockopt(sk, level, name, (&raw mut value).cast::<c_void>(), 4) };
    if ret == 0 { Ok(value) } else { Err(errno(ret)) }
}

#[inline(always)]
fn set(sk: *mut c_void, level: i32, name: i32, value: u32) -> Result<(), i32> {
    let mut value = value;
    // SAFETY: as in `get`; the kernel copies the 4 bytes.
    let ret = unsafe { bpf_setsockopt(sk, level, name, (&raw mut value).cast::<c_void>(), 4) };
    if ret == 0 { Ok(()) } else { Err(errno(ret)) }
}

/// A helper's negative return as an `i32` errno (they are small).
#[inline(always)]
pub(crate) fn errno(ret: i64) -> i32 {
    #[expect(clippy::cast_possible_truncation, reason = "helpers return -errno")]
    let e = ret as i32;
    e
}
