//! Reads of kernel socket fields: plain BTF-typed loads at offsets the agent computed from the
//! kernel's BTF and handed over in the read-only `OFFSETS` global, so nothing here hard-codes a
//! kernel structure layout. Also the socket cookie, and the helpers that copy what the programs
//! keep (identity, transport, socket options) from a socket into a [`SockActivity`].

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_socket_cookie, bpf_skc_to_tcp_sock};
use monitor_common::{
    AF_INET, AF_INET6, FLAG_KEEPALIVE_ON, FLAG_OPTIONS_KNOWN, FLAG_ORPHAN, IPPROTO_TCP,
    KernelOffsets, SockActivity,
};

/// Filled in by the agent before load (`EbpfLoader::override_global`, from the kernel's BTF).
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    skc_num: 0,
    skc_family: 0,
    skc_state: 0,
    skc_net: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    net_ns_inum: 0,
    sk_protocol: 0,
    sk_err: 0,
    tcp_snd_nxt: 0,
    tcp_snd_una: 0,
    tcp_srtt_us: 0,
    tcp_keepalive_time: 0,
    tcp_keepalive_intvl: 0,
    tcp_keepalive_probes: 0,
    icsk_user_timeout: 0,
    sk_flags: 0,
    sock_dead_bit: 0,
    sock_keepopen_bit: 0,
    skb_ack_seq: 0,
    tcp_write_seq: 0,
    tcp_rcv_nxt: 0,
    tcp_copied_seq: 0,
    tcp_snd_wnd: 0,
    tcp_rcv_tstamp: 0,
    tcp_lsndtime: 0,
    tcp_retrans_stamp: 0,
    tcp_packets_out: 0,
    tcp_retrans_out: 0,
    tcp_total_retrans: 0,
    tcp_usec_ts_byte: 0,
    tcp_usec_ts_bit: 0,
    icsk_lrcvtime: 0,
    icsk_rto: 0,
    icsk_probes_out: 0,
    icsk_backoff: 0,
    icsk_retransmits: 0,
    icsk_pending: 0,
    sk_ack_backlog: 0,
    sk_max_ack_backlog: 0,
    sk_socket: 0,
    socket_ino: 0,
    tw_substate: 0,
    task_tgid: 0,
    socket_sk: 0,
    socket_type: 0,
    skc_cookie: 0,
    tcp_bytes_sent: 0,
    tcp_bytes_received: 0,
    tcp_segs_in: 0,
};

/// The offsets of the kernel fields the programs read.
#[inline(always)]
pub(crate) fn offsets() -> &'static KernelOffsets {
    // The compiler would fold the zeros above; a volatile read of the address hides the value
    // while each field is still loaded on its own (and the verifier sees it as a constant,
    // since the map behind it is frozen and read-only).
    unsafe { &*core::ptr::read_volatile(&core::ptr::addr_of!(OFFSETS)) }
}

/// The socket's cookie: the key of the socket table, the id `sock_diag` reports for the same
/// socket (`idiag_cookie`).
#[inline(always)]
pub(crate) fn cookie(sk: *mut c_void) -> u64 {
    unsafe { bpf_get_socket_cookie(sk) }
}

/// Loads a `T` at `offset` bytes into the kernel object at `base`.
///
/// `base` must be a pointer the verifier knows by its BTF type (a `tp_btf` argument, or what
/// [`tcp_sock`] returns) and `offset` must come from `OFFSETS`: that map is frozen and read-only,
/// so the verifier sees the offset as a constant and checks the access against the type. The load
/// is then a plain memory read with a fault handler (a faulting read gives 0), not a
/// `bpf_probe_read_kernel` call — about 1 ns instead of ~28 ns here, and the hot paths make
/// several of them.
#[inline(always)]
pub(crate) fn read<T: Copy>(base: *const c_void, offset: u32) -> T {
    // SAFETY: the verifier rewrites BTF-typed loads into exception-handled ones; the fields are
    // naturally aligned in the kernel's layout.
    unsafe { core::ptr::read_volatile(base.cast::<u8>().add(offset as usize).cast::<T>()) }
}

/// The same socket as a `struct tcp_sock`, whose fields lie past `struct sock` (the verifier
/// refuses loads beyond the type it knows); `None` for a non-TCP or not-full socket.
#[inline(always)]
pub(crate) fn tcp_sock(sk: *const c_void) -> Option<*const c_void> {
    let tp = unsafe { bpf_skc_to_tcp_sock(sk.cast_mut()) };
    if tp.is_null() {
        None
    } else {
        Some(tp as *const c_void)
    }
}

/// True for IPv4/IPv6 TCP sockets (the tracepoints also fire for UDP, UNIX, netlink, ...).
#[inline(always)]
pub(crate) fn is_tcp(sk: *const c_void, off: &KernelOffsets) -> bool {
    let family: u16 = read(sk, off.skc_family);
    if family != AF_INET && family != AF_INET6 {
        return false;
    }
    read::<u16>(sk, off.sk_protocol) == IPPROTO_TCP
}

/// Builds a fresh entry with the socket's addresses, ports and network namespace.
#[inline(always)]
pub(crate) fn identity(sk: *const c_void, off: &KernelOffsets, state: u8) -> SockActivity {
    let mut entry = SockActivity::zeroed();
    let family: u16 = read(sk, off.skc_family);
    entry.family = family;
    entry.state = state;
    if family == AF_INET6 {
        entry.saddr = address6(sk, off.skc_v6_rcv_saddr);
        entry.daddr = address6(sk, off.skc_v6_daddr);
    } else {
        let saddr: u32 = read(sk, off.skc_rcv_saddr);
        let daddr: u32 = read(sk, off.skc_daddr);
        // Both are in network byte order in memory: keep the bytes as they are.
        entry.saddr[..4].copy_from_slice(&saddr.to_ne_bytes());
        entry.daddr[..4].copy_from_slice(&daddr.to_ne_bytes());
    }
    entry.sport = read(sk, off.skc_num);
    entry.dport = u16::from_be(read(sk, off.skc_dport));
    let net: *const c_void = read(sk, off.skc_net);
    if !net.is_null() {
        entry.netns = read(net, off.net_ns_inum);
    }
    entry
}

/// An IPv6 address as two 8-byte loads (the verifier allows loads of 1, 2, 4 or 8 bytes).
#[inline(always)]
pub(crate) fn address6(sk: *const c_void, offset: u32) -> [u8; 16] {
    let high: u64 = read(sk, offset);
    let low: u64 = read(sk, offset + 8);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_ne_bytes());
    bytes[8..].copy_from_slice(&low.to_ne_bytes());
    bytes
}

/// Records `snd_nxt - snd_una` (and the smoothed RTT) from the socket into `entry`.
///
/// `acked`: the acknowledgement carried by the segment being received, when called from
/// `tcp_probe`. That tracepoint fires before the kernel processes the segment, so `snd_una` does
/// not include it yet; without it the last ACK of a burst would leave stale unacked bytes behind.
#[inline(always)]
pub(crate) fn read_transport(
    tp: *const c_void,
    off: &KernelOffsets,
    entry: &mut SockActivity,
    acked: Option<u32>,
) {
    let nxt: u32 = read(tp, off.tcp_snd_nxt);
    let una: u32 = read(tp, off.tcp_snd_una);
    let srtt_x8: u32 = read(tp, off.tcp_srtt_us);
    // Sequence-space comparisons (RFC 1982): the ACK counts only if it lies in (una, nxt].
    #[expect(
        clippy::cast_possible_wrap,
        reason = "sequence numbers compare by the sign of their wrapped difference"
    )]
    let una = match acked {
        Some(ack) if (ack.wrapping_sub(una) as i32) > 0 && (nxt.wrapping_sub(ack) as i32) >= 0 => {
            ack
        }
        _ => una,
    };
    entry.unacked_bytes = nxt.wrapping_sub(una);
    // The kernel keeps srtt_us scaled by 8.
    entry.srtt_us = srtt_x8 >> 3;
    entry.flags |= monitor_common::FLAG_TRANSPORT_KNOWN;
}

/// Records the socket options that decide whether a dead peer can ever be noticed (keepalive and
/// its timers, `TCP_USER_TIMEOUT`) and whether the application still holds the socket. Called
/// when an entry is made, by the table refresh and on the first I/O after a quiet second, never
/// per packet.
#[inline(always)]
pub(crate) fn read_options(sk: *const c_void, off: &KernelOffsets, entry: &mut SockActivity) {
    let Some(tp) = tcp_sock(sk) else {
        return;
    };
    read_socket_flags(sk, off, entry);
    entry.keepalive_time = read(tp, off.tcp_keepalive_time);
    entry.keepalive_intvl = read(tp, off.tcp_keepalive_intvl);
    entry.keepalive_probes = read(tp, off.tcp_keepalive_probes);
    entry.user_timeout_ms = read(tp, off.icsk_user_timeout);
    entry.flags |= FLAG_OPTIONS_KNOWN;
}

/// Records from `sk_flags` alone (one load in `struct sock`, no helper) whether keepalive is on
/// (`SOCK_KEEPOPEN`) and whether the application has let go of the socket (`SOCK_DEAD`, set by
/// `sock_orphan` at the last `close()`): what a state change can alter. The timers stay as the
/// last full read ([`read_options`]) left them.
#[inline(always)]
pub(crate) fn read_socket_flags(sk: *const c_void, off: &KernelOffsets, entry: &mut SockActivity) {
    let flags: u64 = read(sk, off.sk_flags);
    entry.flags &= !(FLAG_KEEPALIVE_ON | FLAG_ORPHAN);
    if flags & (1 << (off.sock_keepopen_bit & 63)) != 0 {
        entry.flags |= FLAG_KEEPALIVE_ON;
    }
    if flags & (1 << (off.sock_dead_bit & 63)) != 0 {
        entry.flags |= FLAG_ORPHAN;
    }
}
