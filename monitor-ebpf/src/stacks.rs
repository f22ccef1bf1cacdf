//! The user-space call stack that opened each connection (`[forensics] stacks`, attached only
//! when it is on): `connect()`'s at the `CLOSE → SYN_SENT` transition (process context), by
//! socket cookie; `accept4()`'s and `accept()`'s at the syscall's exit, by (tgid, new fd), which
//! the `iter/task_file` pass joins to the socket ([`join_accepted`]). One `bpf_get_stackid` per
//! connection, never per packet; identical stacks share one id. A connection's entry is deleted
//! at its `CLOSE` transition.
#![expect(
    clippy::needless_pass_by_value,
    reason = "the tracepoint macros hand each entry point its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    bindings::pt_regs,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{HashMap, StackTrace},
    programs::{BtfTracePointContext, TracePointContext, tracing::StackIdContext},
};
use monitor_common::{
    stacks::{BPF_F_USER_STACK, NEAR_SP_WORDS, StackOrigin, accepted_key},
    tcp_state,
};

use crate::socket;

/// Set by the agent before load when stacks are recorded; read-only, so with 0 the verifier
/// removes [`join_accepted`]'s work from the descriptor pass.
#[unsafe(no_mangle)]
static STACKS_ON: u32 = 0;

/// Stack id → user-space return addresses. One entry until the agent sizes it (option on).
#[map(name = "CALL_STACKS")]
static CALL_STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// Socket cookie → where its stack is. Plain hash with explicit deletes (the agent removes the
/// entries of connections that are gone): an LRU would drop the oldest, idle connections first.
#[map(name = "STACK_OF_SOCKET")]
static STACK_OF_SOCKET: HashMap<u64, StackOrigin> = HashMap::with_max_entries(1, 0);

/// (tgid, fd) of an accepted descriptor → its stack, until the descriptor pass moves it.
#[map(name = "STACK_OF_ACCEPTED")]
static STACK_OF_ACCEPTED: HashMap<u64, StackOrigin> = HashMap::with_max_entries(1, 0);

// TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
#[btf_tracepoint(function = "inet_sock_set_state")]
fn stack_at_connect(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let opening = old == i32::from(tcp_state::CLOSE) && new == i32::from(tcp_state::SYN_SENT);
    let closing = new == i32::from(tcp_state::CLOSE);
    if !(opening || closing) || !socket::is_tcp(sk, socket::offsets()) {
        return 0;
    }
    if closing {
        // The connection's end (whichever way it opened): its entry goes with it, so the
        // agent's pruning only finds what a lost event left.
        let _ = STACK_OF_SOCKET.remove(socket::cookie(sk));
        return 0;
    }
    if let Some(origin) = origin(&ctx) {
        // BPF_ANY: a cookie is never reused, so an entry under it is this socket's.
        let _ = STACK_OF_SOCKET.insert(socket::cookie(sk), origin, 0);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
fn stack_at_accept4(ctx: TracePointContext) -> i32 {
    on_accept_exit(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
fn stack_at_accept(ctx: TracePointContext) -> i32 {
    on_accept_exit(&ctx);
    0
}

/// Offset of `long ret` in the `sys_exit_*` tracepoints' records (their format files).
const SYSCALL_RET_OFFSET: usize = 16;

#[inline(always)]
fn on_accept_exit(ctx: &TracePointContext) {
    // SAFETY: in bounds of every `sys_exit_*` record.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(SYSCALL_RET_OFFSET) }) else {
        return;
    };
    let Ok(fd) = u32::try_from(ret) else {
        // A failed accept (-errno): no connection.
        return;
    };
    if let Some(origin) = origin(ctx) {
        // BPF_ANY: a descriptor number reused by a later accept() is that connection's.
        let _ = STACK_OF_ACCEPTED.insert(accepted_key(origin.tgid, fd), origin, 0);
    }
}

/// The calling process's user stack, as an id in [`CALL_STACKS`]; None when it cannot be
/// recorded (map full, a hash collision with another stack, no user stack).
#[inline(always)]
fn origin<C: EbpfContext + StackIdContext>(ctx: &C) -> Option<StackOrigin> {
    let id = ctx.get_stackid(&CALL_STACKS, BPF_F_USER_STACK).ok()?;
    Some(StackOrigin {
        stack_id: u32::try_from(id).ok()?,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        near_sp: near_user_sp(),
    })
}

/// The first words of the calling thread's user stack (zeros where unreadable): the user
/// registers saved at the system call give the stack pointer.
#[inline(always)]
fn near_user_sp() -> [u64; NEAR_SP_WORDS] {
    // SAFETY: helpers of tracing programs; the task is the current one, its saved user
    // registers are read with a probe read (0 on a fault), and the user stack with a user
    // probe read (an error on a fault).
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs;
        let sp = bpf_probe_read_kernel(&raw const (*regs).rsp).unwrap_or(0);
        if sp == 0 {
            return [0; NEAR_SP_WORDS];
        }
        bpf_probe_read_user(sp as *const [u64; NEAR_SP_WORDS]).unwrap_or([0; NEAR_SP_WORDS])
    }
}

/// In the descriptor pass: moves the stack recorded at the `accept()` that returned descriptor
/// `fd` of process `tgid` to the socket `cookie` it refers to. A stack already under the cookie
/// (its `connect()`'s) is kept. Does nothing unless stacks are recorded.
#[inline(always)]
pub(crate) fn join_accepted(tgid: u32, fd: u32, cookie: u64) {
    const BPF_NOEXIST: u64 = 1;
    // SAFETY: a read of a read-only global (see `socket::offsets`).
    let on = unsafe { core::ptr::read_volatile(&raw const STACKS_ON) };
    if on == 0 || cookie == 0 {
        return;
    }
    let key = accepted_key(tgid, fd);
    // SAFETY: the value is copied out at once; a concurrent delete cannot free it under us
    // (hash map values live until an RCU grace period ends).
    let Some(origin) = (unsafe { STACK_OF_ACCEPTED.get(key) }).copied() else {
        return;
    };
    let _ = STACK_OF_SOCKET.insert(cookie, origin, BPF_NOEXIST);
    let _ = STACK_OF_ACCEPTED.remove(key);
}
