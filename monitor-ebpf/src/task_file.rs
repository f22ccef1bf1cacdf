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
//! `struct sock` are refused. The `tcp_sock` fields are therefore read with
//! `bpf_probe_read_kernel` (the socket type and protocol checked first, so the object is a
//! `tcp_sock`), and the cookie is the socket's own field, 0 until something made it.
//!
//! aya-ebpf 0.2.1 has no `#[iter]` macro: the entry point is a plain function in an
//! `iter/task_file` section (aya-obj recognises it), and the context is spelled out below.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_jiffies64, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_seq_write,
    generated::{self, bpf_sock_from_file},
};
use monitor_common::{
    KernelOffsets,
    holders::{HS_KEEPOPEN, HS_USEC_TS, HeldSocket, NO_SLOT},
};

/// `SOCK_STREAM` (`enum sock_type`).
const SOCK_STREAM: u16 = 1;

use crate::socket::{self, read};

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
    let mut record = HeldSocket::zeroed();
    record.cookie = read(sk, off.skc_cookie);
    // The agent keeps each pass by table slot: finding it here saves it a lookup per socket at
    // every scan.
    record.slot = if record.cookie == 0 {
        NO_SLOT
    } else {
        crate::maps::slot_of(record.cookie).unwrap_or(NO_SLOT)
    };
    record.tgid = read(task, off.task_tgid);
    record.fd = fd;
    let inode: u64 = probe(sock, off.socket_ino);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "socket inode numbers come from a 32-bit counter (get_next_ino)"
    )]
    let inode32 = inode as u32;
    record.inode = inode32;
    common(sk, off, &mut record);
    transport(sk, off, &mut record);
    // SAFETY: `meta` is never NULL for a running iterator; the record is fully initialised
    // (`zeroed` first). A full buffer is reported as a short read, and the same file is shown
    // again in the next read() call.
    unsafe {
        bpf_seq_write(
            (*meta).cast(),
            core::ptr::from_ref(&record).cast::<c_void>(),
            RECORD_LEN,
        );
    }
    0
}

/// The `struct sock` fields (typed loads): namespace, state, keepalive flag.
#[inline(always)]
fn common(sk: *const c_void, off: &KernelOffsets, record: &mut HeldSocket) {
    let net: *const c_void = read(sk, off.skc_net);
    if !net.is_null() {
        record.netns = read(net, off.net_ns_inum);
    }
    record.state = read(sk, off.skc_state);
    let sk_flags: u64 = read(sk, off.sk_flags);
    if sk_flags & (1 << (off.sock_keepopen_bit & 63)) != 0 {
        record.flags |= HS_KEEPOPEN;
    }
}

/// The `tcp_sock` times, counters and options, with the clocks they are compared with (read
/// first, so a stamp is never later than them).
///
/// Each probe read costs a helper call, and most of these fields lie in three clusters of the
/// kernel's layout (`inet_connection_sock`'s counters and `lrcvtime`; `snd_nxt` to
/// `rcv_tstamp`; `retrans_stamp` to the keepalive timers): one window read covers each
/// cluster, and a field outside every window gets a read of its own.
#[inline(always)]
fn transport(tp: *const c_void, off: &KernelOffsets, record: &mut HeldSocket) {
    // SAFETY: helpers without preconditions.
    let (now_jiffies, now_ns) = unsafe { (bpf_jiffies64(), bpf_ktime_get_ns()) };
    let mut bytes = [0u64; WINDOWS * WINDOW_LEN / 8];
    let windows = Windows::read(
        tp,
        [off.icsk_retransmits, off.tcp_snd_nxt, off.tcp_retrans_stamp],
        &mut bytes,
    );
    let usec_ts: u8 = windows.get(off.tcp_usec_ts_byte);
    let usec = usec_ts & (1 << (off.tcp_usec_ts_bit & 7)) != 0;
    // The socket's TCP timestamp clock, as the kernel computes it (`tcp_clock_ms`/`_us`).
    let stamp_now = if usec {
        record.flags |= HS_USEC_TS;
        now_ns / 1_000
    } else {
        now_ns / 1_000_000
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel keeps both clocks as their low 32 bits (tcp_jiffies32, u32 stamps)"
    )]
    let (jiffies32, stamp32) = (now_jiffies as u32, stamp_now as u32);
    record.now_jiffies = jiffies32;
    record.stamp_now = stamp32;
    record.lsndtime = windows.get(off.tcp_lsndtime);
    record.lrcvtime = windows.get(off.icsk_lrcvtime);
    record.rcv_tstamp = windows.get(off.tcp_rcv_tstamp);
    record.retrans_stamp = windows.get(off.tcp_retrans_stamp);
    record.snd_una = windows.get(off.tcp_snd_una);
    record.snd_nxt = windows.get(off.tcp_snd_nxt);
    record.packets_out = windows.get(off.tcp_packets_out);
    record.user_timeout_ms = windows.get(off.icsk_user_timeout);
    record.keepalive_time = windows.get(off.tcp_keepalive_time);
    record.keepalive_intvl = windows.get(off.tcp_keepalive_intvl);
    record.keepalive_probes = windows.get(off.tcp_keepalive_probes);
    record.probes_out = windows.get(off.icsk_probes_out);
    record.backoff = windows.get(off.icsk_backoff);
    record.retransmits = windows.get(off.icsk_retransmits);
    record.pending_timer = windows.get(off.icsk_pending);
    // Outside the three clusters: a read each.
    record.bytes_sent = probe(tp, off.tcp_bytes_sent);
    record.bytes_received = probe(tp, off.tcp_bytes_received);
    record.srtt_us_x8 = probe(tp, off.tcp_srtt_us);
    record.write_seq = probe(tp, off.tcp_write_seq);
    record.segs_in = probe(tp, off.tcp_segs_in);
}

/// Bytes of one window.
const WINDOW_LEN: usize = 64;
/// [`WINDOW_LEN`] as the probe read's size argument.
#[expect(clippy::cast_possible_truncation, reason = "64 fits")]
const WINDOW_LEN_U32: u32 = WINDOW_LEN as u32;
/// How many windows [`transport`] reads.
const WINDOWS: usize = 3;

/// Copies of `WINDOW_LEN` bytes of the `tcp_sock`, each starting at a field. The bytes live in
/// the caller's frame, filled in place: the stack is 512 bytes.
///
/// A window starts at the field itself, not at a multiple of 8 below it: LLVM would then know
/// the low bits of the offset and add them to the (aligned) stack address with a bitwise or,
/// which the verifier refuses on a pointer. Fields are therefore read unaligned.
struct Windows<'a> {
    tp: *const c_void,
    starts: [u32; WINDOWS],
    bytes: &'a [u64; WINDOWS * WINDOW_LEN / 8],
}

impl<'a> Windows<'a> {
    /// Reads the windows of the `tcp_sock` at `tp` that start at `offsets` into `bytes`; zeros
    /// where a read faults.
    #[inline(always)]
    fn read(
        tp: *const c_void,
        offsets: [u32; WINDOWS],
        bytes: &'a mut [u64; WINDOWS * WINDOW_LEN / 8],
    ) -> Self {
        let starts = offsets;
        for (i, start) in starts.into_iter().enumerate() {
            let src = tp.cast::<u8>().wrapping_add(start as usize);
            let dst = bytes.as_mut_ptr().wrapping_add(i * WINDOW_LEN / 8);
            // SAFETY: a probe read of WINDOW_LEN bytes into window `i` of the array; on a fault
            // the kernel zeroes it.
            unsafe {
                generated::bpf_probe_read_kernel(dst.cast(), WINDOW_LEN_U32, src.cast());
            }
        }
        Self { tp, starts, bytes }
    }

    /// The `T` at `offset` of the `tcp_sock`: from the first window that holds all of it, else
    /// read on its own.
    #[inline(always)]
    fn get<T: Copy + Default>(&self, offset: u32) -> T {
        for (i, start) in self.starts.into_iter().enumerate() {
            let at = offset.wrapping_sub(start) as usize;
            if at + size_of::<T>() <= WINDOW_LEN {
                let window = self
                    .bytes
                    .as_ptr()
                    .wrapping_add(i * WINDOW_LEN / 8)
                    .cast::<u8>();
                // SAFETY: in bounds (checked above). The offsets come from the read-only
                // `OFFSETS` global, so the verifier knows `at`; the read is unaligned (byte
                // loads), as the window starts at a field, not at a multiple of 8.
                return unsafe { window.add(at).cast::<T>().read_unaligned() };
            }
        }
        probe(self.tp, offset)
    }
}

/// Reads a `T` at `offset` bytes into the kernel object at `base` with `bpf_probe_read_kernel`
/// (for fields the verifier will not let a typed load reach); 0 when the read faults.
#[inline(always)]
fn probe<T: Copy + Default>(base: *const c_void, offset: u32) -> T {
    let field = base.cast::<u8>().wrapping_add(offset as usize).cast::<T>();
    // SAFETY: a probe read checks the address; a fault leaves the default.
    unsafe { bpf_probe_read_kernel(field) }.unwrap_or_default()
}
