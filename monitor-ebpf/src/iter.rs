//! `iter/tcp`: the kernel's own state of every TCP socket of a network namespace. Two programs:
//! - `iter_tcp` writes one [`KernelSockState`] record per socket to the iterator's file
//!   (`bpf_seq_write`): the whole view, for tools and tests;
//! - `iter_tcp_table` refreshes the socket table instead: a socket the table tracks gets the
//!   kernel's values written into its own slot ([`refresh`]), and only the others (untracked
//!   full sockets, `TIME_WAIT` and request sockets) are written out as records. This is what the
//!   agent reads: nothing per tracked socket crosses into userspace or is kept twice.
//!
//! The kernel calls the program once per socket of the namespace of the process that opened the
//! iterator (full sockets locked with `lock_sock_fast`, `TIME_WAIT` and request sockets too), and
//! once more at the end with a NULL socket. It runs when the agent reads the iterator, never on
//! the packet path. Fields are read with the same BTF-typed loads as the tracepoints ([`read`],
//! offsets from the `OFFSETS` global); nothing is converted here.
//!
//! aya-ebpf 0.2.1 has no `#[iter]` macro: the entry point is a plain function in an `iter/tcp`
//! section (aya-obj recognises it), and the context is spelled out below (`struct bpf_iter__tcp`).

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_jiffies64, bpf_ktime_get_ns, bpf_seq_write, bpf_skc_to_tcp_request_sock,
    bpf_skc_to_tcp_timewait_sock, generated::bpf_probe_read_kernel,
};
use monitor_common::{
    AF_INET6, KernelOffsets, SockActivity,
    kernel_state::{
        KIND_FULL, KIND_REQUEST, KIND_TIME_WAIT, KS_DEAD, KS_KEEPOPEN, KS_NO_SOCKET, KS_USEC_TS,
        KernelSockState,
    },
    tcp_state,
};

use crate::{
    maps,
    socket::{self, read},
};

/// `struct bpf_iter_meta` (`include/linux/bpf.h`).
#[repr(C)]
pub(crate) struct IterMeta {
    seq: *mut c_void,
    session_id: u64,
    seq_num: u64,
}

/// `struct bpf_iter__tcp` (`net/ipv4/tcp_ipv4.c`): the verifier types `sk_common` as a nullable
/// `struct sock_common *` from the kernel's BTF.
#[repr(C)]
pub(crate) struct IterTcpCtx {
    pub(crate) meta: *mut IterMeta,
    pub(crate) sk_common: *mut c_void,
    pub(crate) uid: u32,
}

/// The record size `bpf_seq_write` takes, checked at compile time to fit its `u32`.
const RECORD_LEN: u32 = {
    let len = core::mem::size_of::<KernelSockState>();
    assert!(len < 4096);
    #[expect(clippy::cast_possible_truncation, reason = "checked just above")]
    let len = len as u32;
    len
};

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
extern "C" fn iter_tcp(ctx: *mut IterTcpCtx) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_iter__tcp`; the verifier checks each field access.
    let (meta, sk, uid) = unsafe { ((*ctx).meta, (*ctx).sk_common, (*ctx).uid) };
    // NULL once, after the last socket (the iterator's stop call).
    if sk.is_null() {
        return 0;
    }
    write(meta, &snapshot(sk, uid));
    0
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
extern "C" fn iter_tcp_table(ctx: *mut IterTcpCtx) -> i32 {
    // SAFETY: as in `iter_tcp`.
    let (meta, sk, uid) = unsafe { ((*ctx).meta, (*ctx).sk_common, (*ctx).uid) };
    if sk.is_null() {
        return 0;
    }
    if let Some(tp) = socket::tcp_sock(sk)
        && let Some(entry) = maps::entry_remembering(socket::cookie(sk), sk.cast())
    {
        refresh(sk, tp, socket::offsets(), entry);
        return 0;
    }
    write(meta, &snapshot(sk, uid));
    0
}

/// Appends `record` to the iterator's output.
#[inline(always)]
fn write(meta: *mut IterMeta, record: &KernelSockState) {
    // SAFETY: `meta` is never NULL for a running iterator; the record is fully initialised
    // (`zeroed` first). A full buffer is reported by the kernel as a short read and the same
    // socket is shown again in the next read() call.
    unsafe {
        let seq = (*meta).seq;
        bpf_seq_write(
            seq.cast(),
            core::ptr::from_ref(record).cast::<c_void>(),
            RECORD_LEN,
        );
    }
}

/// Writes a tracked full socket's own values into its table entry: the raw sample (ages and
/// queues the agent converts), and in place the socket options and orphan flag, the bytes in
/// flight and the smoothed RTT, and the retransmit count where the kernel's is higher (the hooks
/// count only what they saw). The iterator holds the socket's lock (`lock_sock_fast`), which the
/// hooks that write these fields also run under, so no event of this socket interleaves.
#[inline(always)]
fn refresh(sk: *const c_void, tp: *const c_void, off: &KernelOffsets, entry: &mut SockActivity) {
    // SAFETY: helpers without preconditions.
    let (now_ns, now_jiffies) = unsafe { (bpf_ktime_get_ns(), bpf_jiffies64()) };
    socket::read_options(sk, off, entry);
    socket::read_transport(tp, off, entry, None);
    let total_retrans: u32 = read(tp, off.tcp_total_retrans);
    if total_retrans > entry.retransmits {
        entry.retransmits = total_retrans;
    }
    let owned = entry.tgid != 0;
    let sample = &mut entry.kernel;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the kernel compares u32 jiffies (tcp_jiffies32): the low 32 bits are its clock"
    )]
    let jiffies32 = now_jiffies as u32;
    sample.read_jiffies = jiffies32;
    sample.rcv_tstamp = read(tp, off.tcp_rcv_tstamp);
    sample.retrans_stamp = read(tp, off.tcp_retrans_stamp);
    let una: u32 = read(tp, off.tcp_snd_una);
    let write_seq: u32 = read(tp, off.tcp_write_seq);
    let rcv_nxt: u32 = read(tp, off.tcp_rcv_nxt);
    let copied: u32 = read(tp, off.tcp_copied_seq);
    sample.send_queue = write_seq.wrapping_sub(una);
    sample.recv_queue = rcv_nxt.wrapping_sub(copied);
    sample.state = read(sk, off.skc_state);
    let usec_ts: u8 = read(tp, off.tcp_usec_ts_byte);
    sample.flags = if usec_ts & (1 << (off.tcp_usec_ts_bit & 7)) != 0 {
        KS_USEC_TS
    } else {
        0
    };
    let sock: u64 = read(tp, off.sk_socket);
    if sock == 0 {
        sample.flags |= KS_NO_SOCKET;
    }
    // The inode only serves to find a holder for a socket no process did I/O on: the read
    // costs about as much as the rest of the visit, so it is skipped for owned sockets.
    sample.inode = if owned || sock == 0 {
        0
    } else {
        let mut inode = 0u64;
        read_inode_into(tp, off, &mut inode);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "socket inode numbers come from a 32-bit counter (get_next_ino)"
        )]
        let inode32 = inode as u32;
        inode32
    };
    // Last: a reader that sees this visit's time sees the values above.
    unsafe { core::ptr::write_volatile(&raw mut sample.read_ns, now_ns) };
}

/// Everything about one socket: identity for every kind, the rest for full sockets.
#[inline(always)]
fn snapshot(sk: *mut c_void, uid: u32) -> KernelSockState {
    let off = socket::offsets();
    let mut record = KernelSockState::zeroed();
    // SAFETY: helpers without preconditions.
    record.now_jiffies = unsafe { bpf_jiffies64() };
    record.now_ns = unsafe { bpf_ktime_get_ns() };
    record.cookie = socket::cookie(sk);
    record.uid = uid;
    identity(sk, off, &mut record);
    if let Some(tp) = socket::tcp_sock(sk) {
        record.kind = KIND_FULL;
        full(sk, tp, off, &mut record);
    } else if record.state == tcp_state::TIME_WAIT {
        // SAFETY: `sk` is the iterator's `sock_common`; the helper checks the socket's kind.
        let tw = unsafe { bpf_skc_to_tcp_timewait_sock(sk) };
        if !tw.is_null() {
            record.kind = KIND_TIME_WAIT;
            record.tw_substate = read(tw as *const c_void, off.tw_substate);
        }
    } else if record.state == tcp_state::NEW_SYN_RECV {
        // SAFETY: as above.
        let req = unsafe { bpf_skc_to_tcp_request_sock(sk) };
        if !req.is_null() {
            record.kind = KIND_REQUEST;
        }
    }
    record
}

/// Addresses, ports, family, state and namespace: all in `struct sock_common`, which starts every
/// kind of TCP socket (`__sk_common`, `__tw_common`, `__req_common` at offset 0), so the offsets
/// computed for `struct sock` hold for the iterator's `sock_common` pointer too.
#[inline(always)]
fn identity(sk: *const c_void, off: &KernelOffsets, record: &mut KernelSockState) {
    let family: u16 = read(sk, off.skc_family);
    record.family = family;
    record.state = read(sk, off.skc_state);
    if family == AF_INET6 {
        record.saddr = socket::address6(sk, off.skc_v6_rcv_saddr);
        record.daddr = socket::address6(sk, off.skc_v6_daddr);
    } else {
        let saddr: u32 = read(sk, off.skc_rcv_saddr);
        let daddr: u32 = read(sk, off.skc_daddr);
        // Network byte order in memory: keep the bytes as they are.
        record.saddr[..4].copy_from_slice(&saddr.to_ne_bytes());
        record.daddr[..4].copy_from_slice(&daddr.to_ne_bytes());
    }
    record.sport = read(sk, off.skc_num);
    record.dport = u16::from_be(read(sk, off.skc_dport));
    let net: *const c_void = read(sk, off.skc_net);
    if !net.is_null() {
        record.netns = read(net, off.net_ns_inum);
    }
}

/// The `tcp_sock` fields. `sk_flags` is read here only: in `TIME_WAIT` and request sockets the
/// same word of `sock_common` holds a pointer (`skc_tw_dr`, `skc_listener`).
#[inline(always)]
fn full(sk: *const c_void, tp: *const c_void, off: &KernelOffsets, record: &mut KernelSockState) {
    let sk_flags: u64 = read(sk, off.sk_flags);
    if sk_flags & (1 << (off.sock_keepopen_bit & 63)) != 0 {
        record.flags |= KS_KEEPOPEN;
    }
    if sk_flags & (1 << (off.sock_dead_bit & 63)) != 0 {
        record.flags |= KS_DEAD;
    }
    let usec_ts: u8 = read(tp, off.tcp_usec_ts_byte);
    if usec_ts & (1 << (off.tcp_usec_ts_bit & 7)) != 0 {
        record.flags |= KS_USEC_TS;
    }
    record.rcv_tstamp = read(tp, off.tcp_rcv_tstamp);
    record.lsndtime = read(tp, off.tcp_lsndtime);
    record.lrcvtime = read(tp, off.icsk_lrcvtime);
    record.retrans_stamp = read(tp, off.tcp_retrans_stamp);
    record.snd_una = read(tp, off.tcp_snd_una);
    record.snd_nxt = read(tp, off.tcp_snd_nxt);
    record.write_seq = read(tp, off.tcp_write_seq);
    record.rcv_nxt = read(tp, off.tcp_rcv_nxt);
    record.copied_seq = read(tp, off.tcp_copied_seq);
    record.snd_wnd = read(tp, off.tcp_snd_wnd);
    record.packets_out = read(tp, off.tcp_packets_out);
    record.retrans_out = read(tp, off.tcp_retrans_out);
    record.total_retrans = read(tp, off.tcp_total_retrans);
    record.rto = read(tp, off.icsk_rto);
    record.user_timeout_ms = read(tp, off.icsk_user_timeout);
    record.keepalive_time = read(tp, off.tcp_keepalive_time);
    record.keepalive_intvl = read(tp, off.tcp_keepalive_intvl);
    record.keepalive_probes = read(tp, off.tcp_keepalive_probes);
    record.ack_backlog = read(tp, off.sk_ack_backlog);
    record.max_ack_backlog = read(tp, off.sk_max_ack_backlog);
    record.probes_out = read(tp, off.icsk_probes_out);
    record.backoff = read(tp, off.icsk_backoff);
    record.retransmits = read(tp, off.icsk_retransmits);
    record.pending_timer = read(tp, off.icsk_pending);
    let sock: u64 = read(tp, off.sk_socket);
    if sock == 0 {
        record.flags |= KS_NO_SOCKET;
    }
    read_inode_into(tp, off, &mut record.inode);
}

/// `SOCK_INODE(sk->sk_socket)->i_ino`, what `sock_i_ino` (and so `sock_diag` and `ss -e`
/// `ino:`) reports; left 0 for a socket without a `struct socket` (an orphan).
///
/// The inode lies in the same allocation, after the `struct socket` (`struct socket_alloc`):
/// one `bpf_probe_read_kernel`, since the verifier refuses a typed load past the end of
/// `struct socket`. Measured here at 200k cold sockets (program run time per socket): ~315 ns
/// without the inode, ~540–580 ns with this read, ~900 ns walking
/// `sk_socket->file->f_inode->i_ino` with typed loads (three dependent cache misses).
#[inline(always)]
fn read_inode_into(tp: *const c_void, off: &KernelOffsets, inode: &mut u64) {
    let sock: *const u8 = read(tp, off.sk_socket);
    if sock.is_null() {
        return;
    }
    let ino = sock.wrapping_add(off.socket_ino as usize);
    // SAFETY: a probe read of 8 bytes straight into `inode`; the kernel zeroes the destination
    // when the address is bad, which reads as no inode.
    unsafe {
        bpf_probe_read_kernel(
            core::ptr::from_mut(inode).cast::<c_void>(),
            RECORD_INODE_LEN,
            ino.cast::<c_void>(),
        );
    }
}

/// Bytes of an inode number (`i_ino` is an `unsigned long`: 8 bytes on 64-bit).
const RECORD_INODE_LEN: u32 = 8;
const _: () = assert!(size_of::<u64>() == RECORD_INODE_LEN as usize);
