//! `iter/task_file`: every TCP socket descriptor of every process, with its holder, in one pass
//! over every network namespace. The kernel calls the program once per open file of every task
//! (threads that share a file table are visited once), and once more at the end with NULL
//! pointers. A socket file leads to its `struct socket` (`bpf_sock_from_file`, which checks the
//! file's operations), then to `sk`; a stream socket of `AF_INET`/`AF_INET6` with protocol TCP
//! gets one [`HeldSocket`] record (`bpf_seq_write`). It runs when the agent reads the iterator,
//! never on the packet path, and takes no socket lock: fields are single loads of what the kernel
//! keeps. Nothing is converted here; offsets come from the `OFFSETS` global.
//!
//! The verifier marks the `sk` reached this way untrusted: typed loads work within
//! `struct sock` (state, family, namespace, flags, the cookie field), but helpers that take a
//! socket (`bpf_skc_to_tcp_sock`, `bpf_get_socket_cookie`) refuse it, and typed loads past
//! `struct sock` are refused. The `tcp_sock` fields are therefore read through
//! `bpf_rdonly_cast` to `struct tcp_sock` (a load each; see `kfunc`), or, on kernels without
//! it (before 6.2), with one `bpf_probe_read_kernel` per field; either way after the socket type
//! and protocol were checked, so the object is a `tcp_sock`. Measured here at 100,000 sockets,
//! a visit cost about 500 ns with the cast and 890 ns with probe reads. The cookie is the
//! socket's own field, 0 until something made it.
//!
//! aya-ebpf 0.2.1 has no `#[iter]` macro: the entry point is a plain function in an
//! `iter/task_file` section (aya-obj recognises it), and the context is spelled out below.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_jiffies64, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_seq_write,
        generated::bpf_sock_from_file,
    },
    macros::map,
    maps::PerCpuArray,
};
use monitor_common::{
    KernelOffsets,
    holders::{HS_KEEPOPEN, HS_TIMERS_READ, HS_USEC_TS, HeldSocket, NO_SLOT},
};

/// `SOCK_STREAM` (`enum sock_type`).
const SOCK_STREAM: u16 = 1;

use crate::{
    kfunc,
    socket::{self, read},
};

/// `struct bpf_iter__task_file` (`kernel/bpf/task_iter.c`): the verifier types `task` and `file`
/// as nullable `struct task_struct *` and `struct file *` from the kernel's BTF. `fd` is
/// `__aligned(8)` there, which `repr(C)` reproduces (a pointer follows it). `meta` points to a
/// `struct bpf_iter_meta`, of which only the first field, the `seq_file *`, is read.
#[repr(C)]
pub(crate) struct IterTaskFileCtx {
    meta: *const *mut c_void,
    task: *mut c_void,
    fd: u32,
    file: *mut c_void,
}

/// The record size, as `bpf_seq_write` takes it.
#[expect(
    clippy::cast_possible_truncation,
    reason = "112 bytes, asserted where the record is defined"
)]
const RECORD_LEN: u32 = size_of::<HeldSocket>() as u32;

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
extern "C" fn iter_task_file(ctx: *mut IterTaskFileCtx) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_iter__task_file`; the verifier checks each access.
    let (meta, task, fd, file) = unsafe { ((*ctx).meta, (*ctx).task, (*ctx).fd, (*ctx).file) };
    // NULL once, after the last file (the iterator's stop call).
    if task.is_null() || file.is_null() {
        return 0;
    }
    // SAFETY: `file` is the iterator's non-NULL `struct file`; NULL for a file not a socket.
    let sock = unsafe { bpf_sock_from_file(file.cast()) } as *const c_void;
    if sock.is_null() {
        return 0;
    }
    let off = socket::offsets();
    if read::<u16>(sock, off.socket_type) != SOCK_STREAM {
        return 0;
    }
    let sk: *const c_void = read(sock, off.socket_sk);
    if sk.is_null() || !socket::is_tcp(sk, off) {
        return 0;
    }
    let Some(record) = HELD_RECORD.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's element of a one-element array, which the visit has to itself (see
    // `HELD_RECORD`); every field is written below (the padding stays 0 from the map's
    // creation), so nothing of the previous visit's socket is left in it.
    let record = unsafe { &mut *record };
    record.cookie = read(sk, off.skc_cookie);
    // The slot is left to the agent, which resolves it from its table in one sweep: a lookup
    // in the socket index here costs each visit two more cache misses (as much as reading the
    // socket itself).
    record.slot = NO_SLOT;
    record.tgid = read(task, off.task_tgid);
    record.fd = fd;
    crate::stacks::join_accepted(record.tgid, fd, record.cookie);
    common(sk, off, record);
    match kfunc::tcp_sock_type_id() {
        // SAFETY: `sk` is a `tcp_sock` (checked above); the id is a verifier-known constant.
        Some(id) => transport(
            &CastTcpSock(unsafe { kfunc::rdonly_cast(sk, id) }),
            off,
            record,
        ),
        None => transport(&ProbedTcpSock(sk), off, record),
    }
    // SAFETY: `meta` is never NULL for a running iterator; the record is fully written. A full
    // buffer is reported as a short read, and the same file is shown again in the next read()
    // call.
    unsafe {
        bpf_seq_write(
            (*meta).cast(),
            core::ptr::from_ref(record).cast::<c_void>(),
            RECORD_LEN,
        );
    }
    0
}

/// The `struct sock` fields (typed loads): namespace, state, keepalive flag.
#[inline(always)]
fn common(sk: *const c_void, off: &KernelOffsets, record: &mut HeldSocket) {
    let net: *const c_void = read(sk, off.skc_net);
    record.netns = if net.is_null() {
        0
    } else {
        read(net, off.net_ns_inum)
    };
    record.state = read(sk, off.skc_state);
    let sk_flags: u64 = read(sk, off.sk_flags);
    record.flags = if sk_flags & (1 << (off.sock_keepopen_bit & 63)) != 0 {
        HS_KEEPOPEN
    } else {
        0
    };
}

/// The `tcp_sock` times, counters and options, with the clocks they are compared with, each
/// read after the stamps it dates: the socket is not locked, and a stamp written after a clock
/// read could be a tick later than the clock, which in the kernel's wrapping `u32` arithmetic
/// would read as an age of about 49 days (x86 keeps the loads in order, so a clock read after a
/// stamp is never behind it).
///
/// The retransmission stamp, the clock it is kept in and the keepalive timers mean something
/// only while keepalive is on or something is outstanding or being probed, so an idle socket
/// without keepalive (most of a large host's) skips them, and the `CLOCK_MONOTONIC` read they
/// need (about 120 ns a call under the hypervisor this was measured on; [`HS_TIMERS_READ`]
/// says which sockets had them read).
#[inline(always)]
pub(crate) fn transport<F: TcpFields>(tp: &F, off: &KernelOffsets, record: &mut HeldSocket) {
    record.retransmits = tp.get(off.icsk_retransmits);
    record.pending_timer = tp.get(off.icsk_pending);
    record.backoff = tp.get(off.icsk_backoff);
    record.probes_out = tp.get(off.icsk_probes_out);
    record.lrcvtime = tp.get(off.icsk_lrcvtime);
    record.user_timeout_ms = tp.get(off.icsk_user_timeout);
    record.bytes_sent = tp.get(off.tcp_bytes_sent);
    record.write_seq = tp.get(off.tcp_write_seq);
    record.lsndtime = tp.get(off.tcp_lsndtime);
    record.snd_nxt = tp.get(off.tcp_snd_nxt);
    record.snd_una = tp.get(off.tcp_snd_una);
    record.srtt_us_x8 = tp.get(off.tcp_srtt_us);
    record.packets_out = tp.get(off.tcp_packets_out);
    record.rcv_tstamp = tp.get(off.tcp_rcv_tstamp);
    record.bytes_received = tp.get(off.tcp_bytes_received);
    record.segs_in = tp.get(off.tcp_segs_in);
    let rcv_nxt: u32 = tp.get(off.tcp_rcv_nxt);
    let copied_seq: u32 = tp.get(off.tcp_copied_seq);
    record.recv_queue = rcv_nxt.wrapping_sub(copied_seq);
    // SAFETY: a helper without preconditions.
    let now_jiffies = unsafe { bpf_jiffies64() };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel keeps jiffies as their low 32 bits (tcp_jiffies32)"
    )]
    let jiffies32 = now_jiffies as u32;
    record.now_jiffies = jiffies32;
    let timers_matter = record.flags & HS_KEEPOPEN != 0
        || record.packets_out != 0
        || record.retransmits != 0
        || record.probes_out != 0;
    if !timers_matter {
        record.retrans_stamp = 0;
        record.keepalive_time = 0;
        record.keepalive_intvl = 0;
        record.keepalive_probes = 0;
        record.stamp_now = 0;
        return;
    }
    record.flags |= HS_TIMERS_READ;
    record.retrans_stamp = tp.get(off.tcp_retrans_stamp);
    record.keepalive_time = tp.get(off.tcp_keepalive_time);
    record.keepalive_intvl = tp.get(off.tcp_keepalive_intvl);
    record.keepalive_probes = tp.get(off.tcp_keepalive_probes);
    let usec_ts: u8 = tp.get(off.tcp_usec_ts_byte);
    // SAFETY: a helper without preconditions.
    let now_ns = unsafe { bpf_ktime_get_ns() };
    // The socket's TCP timestamp clock, as the kernel computes it (`tcp_clock_ms`/`_us`).
    let stamp_now = if usec_ts & (1 << (off.tcp_usec_ts_bit & 7)) != 0 {
        record.flags |= HS_USEC_TS;
        now_ns / 1_000
    } else {
        now_ns / 1_000_000
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel keeps the stamps as u32 (retrans_stamp)"
    )]
    let stamp32 = stamp_now as u32;
    record.stamp_now = stamp32;
}

/// How a visit reads fields of the socket as a `struct tcp_sock`, at offsets from the
/// `OFFSETS` global.
pub(crate) trait TcpFields {
    /// The `T` at `offset`; 0 when the read faults.
    fn get<T: Copy + Default>(&self, offset: u32) -> T;
}

/// Through the `tcp_sock` pointer `bpf_rdonly_cast` gave (Linux 6.2 and later): a load each,
/// which the verifier makes exception-handled (a fault reads 0).
pub(crate) struct CastTcpSock(pub(crate) *const c_void);

impl TcpFields for CastTcpSock {
    #[inline(always)]
    fn get<T: Copy + Default>(&self, offset: u32) -> T {
        read(self.0, offset)
    }
}

/// With one `bpf_probe_read_kernel` per field, where the kernel has no `bpf_rdonly_cast`: the
/// verifier refuses typed loads past `struct sock` on the socket this iterator reaches.
struct ProbedTcpSock(*const c_void);

impl TcpFields for ProbedTcpSock {
    #[inline(always)]
    fn get<T: Copy + Default>(&self, offset: u32) -> T {
        let field = self
            .0
            .cast::<u8>()
            .wrapping_add(offset as usize)
            .cast::<T>();
        // SAFETY: a probe read checks the address; a fault leaves the default.
        unsafe { bpf_probe_read_kernel(field) }.unwrap_or_default()
    }
}

/// The record being filled, one per CPU: on the stack it would be zeroed first at every visit
/// (a call to a memset of its own in the program), and the stack is 512 bytes. The iterator
/// runs with migration disabled, and one thread of the agent reads it at a time, so a visit has
/// its CPU's record to itself.
#[map]
static HELD_RECORD: PerCpuArray<HeldSocket> = PerCpuArray::with_max_entries(1, 0);
