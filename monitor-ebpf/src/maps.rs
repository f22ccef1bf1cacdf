//! Every map the programs share with the agent, and the protocol on the socket table.
//!
//! The table is an array of [`SockActivity`] slots that the agent maps into its memory, an index
//! from socket cookie to slot, a stack of free slots and the used-slot counter. A slot is taken
//! from the stack (pop), written with the cookie still 0 (fill), indexed under its cookie without
//! overwriting (index), and made live by storing the cookie (publish); removing a socket deletes
//! its index entry, clears the cookie and pushes the slot back (release). The agent's seeding
//! follows the same protocol (`KernelMaps::seed` in `monitor/src/bpf/maps.rs`).
//!
//! The counters (per-CPU arrays) are bumped here too.

use core::{ffi::c_void, intrinsics::AtomicOrdering};

use aya_ebpf::{
    EbpfContext,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, Stack},
};
use aya_log_ebpf::warn;
use monitor_common::{
    BPF_F_MMAPABLE, DEFAULT_TABLE_CAPACITY, ERRNO_SLOTS, SockActivity, TCP_STATE_SLOTS, counters,
};

// The socket table: slots the agent reads through a memory mapping, and an index the hooks use
// to find a socket's slot. Plain maps with explicit deletes: an LRU would evict exactly the idle
// sockets this tool exists to find. The agent sets the capacity of all three at load time.
#[map(name = "SOCKET_SLOTS")]
static SOCKET_SLOTS: Array<SockActivity> =
    Array::with_max_entries(DEFAULT_TABLE_CAPACITY, BPF_F_MMAPABLE);

/// Each slot's socket (`struct sock *` as an integer), for the slot walk (`walk.rs`), which
/// reads the socket through it once it has checked the socket's own cookie against the slot's:
/// an address outlives its socket here, and the check is what makes a stale one harmless.
#[map(name = "SOCKET_ADDRS")]
static SOCKET_ADDRS: Array<u64> = Array::with_max_entries(DEFAULT_TABLE_CAPACITY, 0);

#[map(name = "SOCKET_INDEX")]
static SOCKET_INDEX: HashMap<u64, u32> = HashMap::with_max_entries(DEFAULT_TABLE_CAPACITY, 0);

#[map(name = "FREE_SLOTS")]
static FREE_SLOTS: Stack<u32> = Stack::with_max_entries(DEFAULT_TABLE_CAPACITY, 0);

/// One `u64` (index 0): how many slots have ever been handed out; the scan reads the slots below
/// it. The programs (`allocate_slot`) and the agent's seeding (through its mapping) both add to it
/// atomically.
#[map(name = "SLOTS_USED")]
static SLOTS_USED: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Per-CPU counts, indexed by `monitor_common::counters`.
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Per-CPU state transitions, indexed by `old * TCP_STATE_SLOTS + new`.
#[map(name = "TRANSITIONS")]
static TRANSITIONS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(TCP_STATE_SLOTS * TCP_STATE_SLOTS, 0);

/// Per-CPU socket errors, indexed by errno (the last slot takes the rest).
#[map(name = "SOCKET_ERRORS")]
static SOCKET_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERRNO_SLOTS, 0);

/// The entry of the socket with this cookie, if it is tracked.
#[inline(always)]
pub(crate) fn entry(cookie: u64) -> Option<&'static mut SockActivity> {
    let slot = unsafe { *SOCKET_INDEX.get(cookie)? };
    // Array lookups are inlined by the verifier: the index lookup is the only hash on the path.
    SOCKET_SLOTS.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// As [`entry`], with the socket's address remembered for the slot walk (the `iter/tcp` table
/// refresh: the sockets the agent seeded have no address until it visits them).
#[inline(always)]
pub(crate) fn entry_remembering(
    cookie: u64,
    sk: *const c_void,
) -> Option<&'static mut SockActivity> {
    let slot = unsafe { *SOCKET_INDEX.get(cookie)? };
    remember_address(slot, sk);
    SOCKET_SLOTS.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// The cookie and the address of the socket in `slot`, when the slot is live and its address
/// known (the slot walk). The cookie is read first: a slot being refilled has cookie 0 until its
/// new address is written.
#[inline(always)]
pub(crate) fn slot_socket(slot: u32) -> Option<(u64, u64)> {
    let entry = SOCKET_SLOTS.get_ptr(slot)?;
    // SAFETY: an element of the array; volatile because other CPUs write it.
    let cookie = unsafe { core::ptr::read_volatile(&raw const (*entry).cookie) };
    let address = *SOCKET_ADDRS.get(slot)?;
    (cookie != 0 && address != 0).then_some((cookie, address))
}

#[inline(always)]
fn remember_address(slot: u32, sk: *const c_void) {
    if let Some(address) = SOCKET_ADDRS.get_ptr_mut(slot) {
        // SAFETY: an element of the array.
        unsafe { *address = sk as u64 };
    }
}

/// Tracks a new socket: takes a free slot, fills it, indexes it, then publishes the cookie (the
/// agent skips slots whose cookie is 0, so it never reads a half-written entry as live).
/// Returns the entry, or the existing one when another CPU (or the seeding) got there first.
///
/// A failed insert (no free slot, or the index refuses the cookie) is counted, and said in the
/// agent's log (through aya-log) at the 1st, 2nd, 4th, 8th... failure on each CPU, so heavy churn
/// into a full table is visible without flooding it.
#[inline(always)]
pub(crate) fn insert_new<C: EbpfContext>(
    ctx: &C,
    cookie: u64,
    fresh: &SockActivity,
    sk: *const c_void,
) -> Option<&'static mut SockActivity> {
    const ENOSPC: i64 = 28;
    const EEXIST: i64 = 17;
    // Never overwrite what another CPU (or the agent's seeding) just wrote.
    const BPF_NOEXIST: u64 = 1;
    let Some((slot, entry)) = allocate_slot() else {
        table_full(ctx, -ENOSPC);
        return None;
    };
    *entry = *fresh;
    entry.cookie = 0;
    remember_address(slot, sk);
    match SOCKET_INDEX.insert(cookie, slot, BPF_NOEXIST) {
        Ok(()) => {
            unsafe { core::ptr::write_volatile(&raw mut entry.cookie, cookie) };
            Some(entry)
        }
        Err(err) => {
            release_slot(slot, entry);
            if i64::from(err) == -EEXIST {
                self::entry(cookie)
            } else {
                table_full(ctx, i64::from(err));
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
pub(crate) fn remove(cookie: u64) {
    let Some(&slot) = (unsafe { SOCKET_INDEX.get(cookie) }) else {
        return;
    };
    if SOCKET_INDEX.remove(cookie).is_ok()
        && let Some(entry) = SOCKET_SLOTS.get_ptr_mut(slot)
    {
        release_slot(slot, unsafe { &mut *entry });
    }
}

/// The cookie of the socket whose CLOSE transition this CPU handled last (one `u64` per CPU).
/// `tcp_done` destroys an orphaned socket right after moving it to CLOSE, on the same CPU: the
/// destroy hook then knows the entry is gone without a lookup in the index (a guaranteed miss
/// that costs as much as the hit).
#[map(name = "LAST_CLOSED")]
static LAST_CLOSED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Stops tracking a socket that entered CLOSE ([`remove`]), and remembers it for
/// [`remove_destroyed`].
#[inline(always)]
pub(crate) fn remove_closed(cookie: u64) {
    remove(cookie);
    if let Some(last) = LAST_CLOSED.get_ptr_mut(0) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *last = cookie };
    }
}

/// Stops tracking a socket being destroyed, unless this CPU just saw it enter CLOSE (the usual
/// case, and then its entry is already gone). A socket destroyed without a CLOSE transition
/// the programs saw, or after one that a racing insert outlived, is removed here; whatever
/// this still misses the agent removes once the kernel's socket state no longer has it.
#[inline(always)]
pub(crate) fn remove_destroyed(cookie: u64) {
    let closed_here = LAST_CLOSED
        .get(0)
        .is_some_and(|&last| last == cookie && cookie != 0);
    if !closed_here {
        remove(cookie);
    }
}

/// A free slot. The agent fills `FREE_SLOTS` with every slot at start-up, highest first, and freed
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
    unsafe { core::ptr::write_volatile(&raw mut entry.cookie, 0) };
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
pub(crate) fn count(index: u32) {
    bump(&COUNTERS, index);
}

#[inline(always)]
pub(crate) fn count_transition(old: u32, new: u32) {
    if old < TCP_STATE_SLOTS && new < TCP_STATE_SLOTS {
        bump(&TRANSITIONS, old * TCP_STATE_SLOTS + new);
    }
}

#[inline(always)]
pub(crate) fn count_error(errno: u32) {
    let slot = if errno < ERRNO_SLOTS {
        errno
    } else {
        ERRNO_SLOTS - 1
    };
    bump(&SOCKET_ERRORS, slot);
}
