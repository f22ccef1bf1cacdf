//! The per-socket table and the counters, plus helpers that read kernel socket fields.
//!
//! Field offsets come from the agent (computed from the kernel's BTF) through the read-only
//! `OFFSETS` global, so nothing here hard-codes a kernel structure layout.

use core::{ffi::c_void, intrinsics::AtomicOrdering};

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_socket_cookie, bpf_skc_to_tcp_sock},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, Stack},
};
use aya_log_ebpf::warn;
use monitor_common::{
    AF_INET, AF_INET6, BPF_F_MMAPABLE, DEFAULT_TABLE_CAPACITY, ERRNO_SLOTS, FLAG_KEEPALIVE_ON,
    FLAG_OPTIONS_KNOWN, FLAG_ORPHAN, IPPROTO_TCP, KernelOffsets, SockActivity, TCP_STATE_SLOTS,
    counters,
};

// The socket table: slots the agent reads through a memory mapping, and an index the hooks use
// to find a socket's slot. Plain maps with explicit deletes: an LRU would evict exactly the idle
// sockets this tool exists to find. The agent sets the capacity of all three at load time.
#[map(name = "SOCKET_SLOTS")]
static SOCKET_SLOTS: Array<SockActivity> =
    Array::with_max_entries(DEFAULT_TABLE_CAPACITY, BPF_F_MMAPABLE);

#[map(name = "SOCKET_INDEX")]
static SOCKET_INDEX: HashMap<u64, u32> = HashMap::with_max_entries(DEFAULT_TABLE_CAPACITY, 0);

#[map(name = "FREE_SLOTS")]
static FREE_SLOTS: Stack<u32> = Stack::with_max_entries(DEFAULT_TABLE_CAPACITY, 0);

/// Slots ever handed out (index 0): the scan reads the slots below it. Shared with the agent's
/// seeding through its mapping.
#[map(name = "SLOTS_USED")]
static SLOTS_USED: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

#[map(name = "TRANSITIONS")]
static TRANSITIONS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(TCP_STATE_SLOTS * TCP_STATE_SLOTS, 0);

#[map(name = "SOCKET_ERRORS")]
static SOCKET_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERRNO_SLOTS, 0);

/// Filled in by the agent before load (`EbpfLoader::set_global`).
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
};

#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    // The compiler would fold the zeros above; a volatile read of the address hides the value
    // while each field is still loaded on its own (and the verifier sees it as a constant,
    // since the map behind it is frozen and read-only).
    unsafe { &*core::ptr::read_volatile(&core::ptr::addr_of!(OFFSETS)) }
}

/// Adds one to a per-CPU slot and returns this CPU's new count (0 if the slot is missing).
#[inline(always)]
fn bump(array: &PerCpuArray<u64>, index: u32) -> u64 {
    match array.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it, so a plain add is race-free.
        Some(slot) => unsafe {
            *slot += 1;
            *slot
        },
        None => 0,
    }
}

#[inline(always)]
pub fn count(index: u32) {
    bump(&COUNTERS, index);
}

#[inline(always)]
pub fn count_transition(old: u32, new: u32) {
    if old < TCP_STATE_SLOTS && new < TCP_STATE_SLOTS {
        bump(&TRANSITIONS, old * TCP_STATE_SLOTS + new);
    }
}

#[inline(always)]
pub fn count_error(errno: u32) {
    let slot = if errno < ERRNO_SLOTS {
        errno
    } else {
        ERRNO_SLOTS - 1
    };
    bump(&SOCKET_ERRORS, slot);
}

#[inline(always)]
pub fn cookie(sk: *mut c_void) -> u64 {
    unsafe { bpf_get_socket_cookie(sk) }
}

/// Loads a `T` at `offset` bytes into the kernel object at `base`.
///
/// `base` must be a pointer the verifier knows by its BTF type (a tp_btf argument, or what
/// [`tcp_sock`] returns) and `offset` must come from `OFFSETS`: that map is frozen and read-only,
/// so the verifier sees the offset as a constant and checks the access against the type. The load
/// is then a plain memory read with a fault handler (a faulting read gives 0), not a
/// `bpf_probe_read_kernel` call — about 1 ns instead of ~28 ns here, and the hot paths make
/// several of them.
#[inline(always)]
pub fn read<T: Copy>(base: *const c_void, offset: u32) -> T {
    // SAFETY: the verifier rewrites BTF-typed loads into exception-handled ones; the fields are
    // naturally aligned in the kernel's layout.
    unsafe { core::ptr::read_volatile(base.cast::<u8>().add(offset as usize).cast::<T>()) }
}

/// The same socket as a `struct tcp_sock`, whose fields lie past `struct sock` (the verifier
/// refuses loads beyond the type it knows); `None` for a non-TCP or not-full socket.
#[inline(always)]
pub fn tcp_sock(sk: *const c_void) -> Option<*const c_void> {
    let tp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) };
    if tp.is_null() {
        None
    } else {
        Some(tp as *const c_void)
    }
}

/// True for IPv4/IPv6 TCP sockets (the tracepoints also fire for UDP, UNIX, netlink, ...).
#[inline(always)]
pub fn is_tcp(sk: *const c_void, off: &KernelOffsets) -> bool {
    let family: u16 = read(sk, off.skc_family);
    if family != AF_INET && family != AF_INET6 {
        return false;
    }
    read::<u16>(sk, off.sk_protocol) == IPPROTO_TCP
}

/// Builds a fresh entry with the socket's addresses, ports and network namespace.
#[inline(always)]
pub fn identity(sk: *const c_void, off: &KernelOffsets, state: u8) -> SockActivity {
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
fn address6(sk: *const c_void, offset: u32) -> [u8; 16] {
    let high: u64 = read(sk, offset);
    let low: u64 = read(sk, offset + 8);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_ne_bytes());
    bytes[8..].copy_from_slice(&low.to_ne_bytes());
    bytes
}

/// The entry of the socket with this cookie, if it is tracked.
#[inline(always)]
pub fn entry(cookie: u64) -> Option<&'static mut SockActivity> {
    let slot = unsafe { *SOCKET_INDEX.get(cookie)? };
    // Array lookups are inlined by the verifier: the index lookup is the only hash on the path.
    SOCKET_SLOTS.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// Tracks a new socket: takes a free slot, fills it, indexes it, then publishes the cookie (the
/// agent skips slots whose cookie is 0, so it never reads a half-written entry as live).
/// Returns the entry, or the existing one when another CPU (or the seeding) got there first.
///
/// A full table is counted, and said in the agent's log (through aya-log) at the 1st, 2nd, 4th,
/// 8th... failure on each CPU, so heavy churn into a full table is visible without flooding it.
#[inline(always)]
pub fn insert_new<C: EbpfContext>(
    ctx: &C,
    cookie: u64,
    fresh: &SockActivity,
) -> Option<&'static mut SockActivity> {
    const ENOSPC: i64 = 28;
    let Some((slot, entry)) = allocate_slot() else {
        table_full(ctx, -ENOSPC);
        return None;
    };
    *entry = *fresh;
    entry.cookie = 0;
    // BPF_NOEXIST: never overwrite what another CPU (or the agent's seeding) just wrote.
    const BPF_NOEXIST: u64 = 1;
    match SOCKET_INDEX.insert(cookie, slot, BPF_NOEXIST) {
        Ok(()) => {
            unsafe { core::ptr::write_volatile(&mut entry.cookie, cookie) };
            Some(entry)
        }
        Err(err) => {
            release_slot(slot, entry);
            const EEXIST: i64 = 17;
            if err as i64 == -EEXIST {
                self::entry(cookie)
            } else {
                table_full(ctx, err as i64);
                None
            }
        }
    }
}

/// Stops tracking a socket. Only the caller whose index delete succeeds frees the slot, so a
/// socket closed on two paths at once (CLOSE transition, destroy) cannot free it twice.
///
/// Known window: a hook on another CPU that found this slot just before the delete still holds
/// it; if a third CPU reuses the slot for a new socket meanwhile, that hook's last store lands in
/// the new entry. It needs I/O on a socket being destroyed and a reuse within nanoseconds, and
/// costs one field of one entry until its next event; a lock on every hot-path event would not be
/// worth it.
#[inline(always)]
pub fn remove(cookie: u64) {
    let Some(&slot) = (unsafe { SOCKET_INDEX.get(cookie) }) else {
        return;
    };
    if SOCKET_INDEX.remove(cookie).is_ok()
        && let Some(entry) = SOCKET_SLOTS.get_ptr_mut(slot)
    {
        release_slot(slot, unsafe { &mut *entry });
    }
}

/// A free slot. The agent fills FREE_SLOTS with every slot at start-up, highest first, and freed
/// slots go back on top: recycled slots are reused first and never-used ones come out in
/// ascending order, so the slots in use stay dense at the bottom of the array.
#[inline(always)]
fn allocate_slot() -> Option<(u32, &'static mut SockActivity)> {
    let slot = FREE_SLOTS.pop().ok().flatten()?;
    let entry = unsafe { &mut *SOCKET_SLOTS.get_ptr_mut(slot)? };
    if entry.state == 0 {
        // Never used (every entry has a state): one more slot for the agent's scan to read. An
        // atomic add without a result, which every BPF instruction set has (BPF_XADD).
        if let Some(used) = SLOTS_USED.get_ptr_mut(0) {
            unsafe {
                core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(used, 1)
            };
        }
    }
    Some((slot, entry))
}

#[inline(always)]
fn release_slot(slot: u32, entry: &mut SockActivity) {
    unsafe { core::ptr::write_volatile(&mut entry.cookie, 0) };
    let _ = FREE_SLOTS.push(slot, 0);
}

#[inline(always)]
fn table_full<C: EbpfContext>(ctx: &C, err: i64) {
    let failures = bump(&COUNTERS, counters::TABLE_INSERT_FAILURES);
    if failures.is_power_of_two() {
        warn!(
            ctx,
            "socket table full: {} failed inserts on this CPU (error {}); raise --table-capacity",
            failures,
            err
        );
    }
}

/// Records `snd_nxt - snd_una` (and the smoothed RTT) from the socket into `entry`.
///
/// `acked`: the acknowledgement carried by the segment being received, when called from
/// `tcp_probe`. That tracepoint fires before the kernel processes the segment, so `snd_una` does
/// not include it yet; without it the last ACK of a burst would leave stale unacked bytes behind.
#[inline(always)]
pub fn read_transport(
    tp: *const c_void,
    off: &KernelOffsets,
    entry: &mut SockActivity,
    acked: Option<u32>,
) {
    let nxt: u32 = read(tp, off.tcp_snd_nxt);
    let una: u32 = read(tp, off.tcp_snd_una);
    let srtt_x8: u32 = read(tp, off.tcp_srtt_us);
    // Sequence-space comparisons (RFC 1982): the ACK counts only if it lies in (una, nxt].
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
/// its timers, TCP_USER_TIMEOUT) and whether the application still holds the socket. Called on
/// state changes and on the first I/O after a quiet second, never per packet.
#[inline(always)]
pub fn read_options(sk: *const c_void, off: &KernelOffsets, entry: &mut SockActivity) {
    let Some(tp) = tcp_sock(sk) else {
        return;
    };
    let flags: u64 = read(sk, off.sk_flags);
    entry.flags &= !(FLAG_KEEPALIVE_ON | FLAG_ORPHAN);
    if flags & (1 << (off.sock_keepopen_bit & 63)) != 0 {
        entry.flags |= FLAG_KEEPALIVE_ON;
    }
    if flags & (1 << (off.sock_dead_bit & 63)) != 0 {
        entry.flags |= FLAG_ORPHAN;
    }
    entry.keepalive_time = read(tp, off.tcp_keepalive_time);
    entry.keepalive_intvl = read(tp, off.tcp_keepalive_intvl);
    entry.keepalive_probes = read(tp, off.tcp_keepalive_probes);
    entry.user_timeout_ms = read(tp, off.icsk_user_timeout);
    entry.flags |= FLAG_OPTIONS_KNOWN;
}
