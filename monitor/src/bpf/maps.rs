//! Typed handles on the kernel maps: read the socket table and the counters, write seed entries.

use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, MapError, PerCpuArray, Stack},
};
use monitor_common::{
    COUNTERS_MAP, ERRNO_SLOTS, ERRORS_MAP, FREE_SLOTS_MAP, INDEX_MAP, SLOTS_MAP, SLOTS_USED_MAP,
    SockActivity, TCP_STATE_SLOTS, TRANSITIONS_MAP, counters,
};

use super::BpfError;
use super::source::{KernelCounters, SocketSource};

pub struct KernelMaps {
    table: Arc<SocketTable>,
    index: HashMap<MapData, u64, u32>,
    free_slots: Stack<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    transitions: PerCpuArray<MapData, u64>,
    errors: PerCpuArray<MapData, u64>,
}

pub(super) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    T::try_from(map).map_err(|source| BpfError::Map { name, source })
}

impl KernelMaps {
    /// Takes the table, index, free-slot stack and counter maps out of the loaded object, and
    /// maps the table's used-slot counter.
    ///
    /// # Errors
    /// A map missing from the object, of the wrong type, or that cannot be memory-mapped.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        Ok(Self {
            table: Arc::new(SocketTable::map(ebpf)?),
            index: take(ebpf, INDEX_MAP)?,
            free_slots: take(ebpf, FREE_SLOTS_MAP)?,
            counters: take(ebpf, COUNTERS_MAP)?,
            transitions: take(ebpf, TRANSITIONS_MAP)?,
            errors: take(ebpf, ERRORS_MAP)?,
        })
    }

    /// Shared, lock-free read access to the socket table (scans and `/connections`).
    #[must_use]
    pub fn reader(&self) -> Arc<SocketTable> {
        Arc::clone(&self.table)
    }

    /// Adds a socket that predates the agent, unless the kernel side already tracks it (its own
    /// data is fresher). Returns whether the entry was written. The same protocol as the kernel
    /// side's insert: free slot, fill, index (no overwrite), publish the cookie.
    ///
    /// # Errors
    /// The table is full (no free slot), or a map operation the kernel refused.
    pub fn seed(&mut self, cookie: u64, entry: &SockActivity) -> Result<bool, MapError> {
        const BPF_NOEXIST: u64 = 1;
        // An empty stack is a full table (the pop fails with ENOENT).
        let slot = self.free_slots.pop(0)?;
        let Some(target) = self.table.slot(slot) else {
            return Err(MapError::OutOfBounds {
                index: slot,
                max_entries: self.table.capacity,
            });
        };
        // SAFETY: in bounds; the slot is ours (popped) until it is indexed.
        if unsafe { (&raw const (*target).state).read_volatile() } == 0 {
            // Never used: the scan must now read one more slot (as the kernel side does).
            self.table.used().fetch_add(1, Ordering::Relaxed);
        }
        let mut fresh = *entry;
        fresh.cookie = 0;
        // SAFETY: `target` points into the live mapping; the slot is ours until it is indexed.
        unsafe { target.write_volatile(fresh) };
        match self.index.insert(cookie, slot, BPF_NOEXIST) {
            Ok(()) => {
                // SAFETY: as above; publishing the cookie makes the entry live for readers.
                unsafe { (&raw mut (*target).cookie).write_volatile(cookie) };
                Ok(true)
            }
            Err(error) => {
                self.release(slot);
                match error {
                    MapError::SyscallError(e)
                        if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
                    {
                        Ok(false)
                    }
                    e => Err(e),
                }
            }
        }
    }

    /// Removes an entry (a seeded socket that closed before its entry was written).
    pub fn forget(&mut self, cookie: u64) {
        let Ok(slot) = self.index.get(&cookie, 0) else {
            return;
        };
        if self.index.remove(&cookie).is_ok() {
            self.release(slot);
        }
    }

    /// Puts every slot on the free stack, highest first, so slots are handed out from 0 up.
    /// Must run before the programs are attached.
    ///
    /// # Errors
    /// The stack map is missing, or refuses a push.
    pub fn provision_free_slots(ebpf: &mut Ebpf, capacity: u32) -> Result<(), BpfError> {
        let map = ebpf
            .map_mut(FREE_SLOTS_MAP)
            .ok_or(BpfError::MissingMap(FREE_SLOTS_MAP))?;
        let mut stack = Stack::<_, u32>::try_from(map).map_err(|source| BpfError::Map {
            name: FREE_SLOTS_MAP,
            source,
        })?;
        for slot in (0..capacity).rev() {
            stack.push(slot, 0).map_err(|source| BpfError::Map {
                name: FREE_SLOTS_MAP,
                source,
            })?;
        }
        Ok(())
    }

    fn release(&mut self, slot: u32) {
        if let Some(target) = self.table.slot(slot) {
            // SAFETY: the slot is in the mapping and no longer indexed.
            unsafe { (&raw mut (*target).cookie).write_volatile(0) };
            let _ = self.free_slots.push(slot, 0);
        }
    }

    /// The counters, transitions and errno arrays, each summed over CPUs.
    ///
    /// # Errors
    /// The first map read the kernel refused.
    pub fn counters(&self) -> Result<KernelCounters, BpfError> {
        let named = |name| move |source| BpfError::Map { name, source };
        let counter = |index| sum(&self.counters, index).map_err(named(COUNTERS_MAP));
        let transitions = nonzero(&self.transitions, TCP_STATE_SLOTS * TCP_STATE_SLOTS)
            .map_err(named(TRANSITIONS_MAP))?
            .map(|(i, n)| {
                (
                    state_of(i / TCP_STATE_SLOTS),
                    state_of(i % TCP_STATE_SLOTS),
                    n,
                )
            })
            .collect();
        Ok(KernelCounters {
            retransmits: counter(counters::RETRANSMITS)?,
            resets_sent: counter(counters::RESETS_SENT)?,
            resets_received: counter(counters::RESETS_RECEIVED)?,
            table_insert_failures: counter(counters::TABLE_INSERT_FAILURES)?,
            transitions,
            socket_errors: nonzero(&self.errors, ERRNO_SLOTS)
                .map_err(named(ERRORS_MAP))?
                .collect(),
            // Program information, not a map: `Programs::recursion_misses` fills it in.
            recursion_misses: Vec::new(),
        })
    }
}

/// A state index of the transitions array (below `TCP_STATE_SLOTS`, so it fits).
fn state_of(index: u32) -> u8 {
    u8::try_from(index).unwrap_or(u8::MAX)
}

fn sum(array: &PerCpuArray<MapData, u64>, index: u32) -> Result<u64, MapError> {
    Ok(array.get(&index, 0)?.iter().sum())
}

fn nonzero(
    array: &PerCpuArray<MapData, u64>,
    slots: u32,
) -> Result<impl Iterator<Item = (u32, u64)>, MapError> {
    let values = (0..slots)
        .map(|i| sum(array, i).map(|n| (i, n)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(values.into_iter().filter(|&(_, n)| n > 0))
}

/// Slots per mapped segment: 4 096 × 192 bytes is exactly 192 pages, so segments start on pages.
const SEGMENT_SLOTS: u32 = 4096;
const _: () = assert!((SEGMENT_SLOTS as usize * size_of::<SockActivity>()).is_multiple_of(4096));

/// The socket slots and the "slots used" counter, mapped into the agent's memory.
///
/// The slots are mapped a segment at a time, as far as they are used: the kernel maps every page
/// of a mapping at once, so mapping the whole table would put all of it (48 MiB at the default
/// capacity) in the agent's resident set whatever the number of sockets.
///
/// Reading races with the kernel writing, field by field, as a batch lookup would: an entry can
/// mix values from before and after one event, which is harmless for ages and counters. A slot
/// whose cookie is 0 is free or being filled and is skipped.
pub struct SocketTable {
    slots: MapData,
    segments: Box<[OnceLock<Option<Mapping>>]>,
    used: Mapping,
    /// The mapping alone would keep the map alive; the open fd also lets tools (bpftool, the
    /// tests) find it through /proc/PID/fdinfo.
    _used_map: MapData,
    capacity: u32,
}

// SAFETY: the mappings are shared memory accessed only through volatile and atomic operations.
unsafe impl Send for SocketTable {}
unsafe impl Sync for SocketTable {}

impl SocketTable {
    fn map(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        let slots = array_map(ebpf, SLOTS_MAP)?;
        let info = slots.info().map_err(|source| BpfError::Map {
            name: SLOTS_MAP,
            source,
        })?;
        let capacity = info.max_entries();
        let used_map = array_map(ebpf, SLOTS_USED_MAP)?;
        let used = Mapping::new(used_map.fd().as_fd(), 0, size_of::<u64>()).map_err(|source| {
            BpfError::Mmap {
                name: SLOTS_USED_MAP,
                source,
            }
        })?;
        let segments = (0..capacity.div_ceil(SEGMENT_SLOTS))
            .map(|_| OnceLock::new())
            .collect();
        Ok(Self {
            slots,
            segments,
            used,
            _used_map: used_map,
            capacity,
        })
    }

    fn used(&self) -> &AtomicU64 {
        // SAFETY: the first 8 bytes of the SLOTS_USED mapping are its u64 (page aligned), which
        // the kernel side also updates atomically.
        unsafe { AtomicU64::from_ptr(self.used.ptr.as_ptr().cast()) }
    }

    /// Where slot `slot` is in our memory, mapping its segment on first use.
    fn slot(&self, slot: u32) -> Option<*mut SockActivity> {
        if slot >= self.capacity {
            return None;
        }
        let index = slot / SEGMENT_SLOTS;
        let segment = self.segments[index as usize].get_or_init(|| {
            let first = index * SEGMENT_SLOTS;
            let slots = SEGMENT_SLOTS.min(self.capacity - first);
            let offset = first as usize * size_of::<SockActivity>();
            let len = slots as usize * size_of::<SockActivity>();
            Mapping::new(self.slots.fd().as_fd(), offset, len)
                .inspect_err(|error| tracing::warn!(%error, index, "mapping table segment"))
                .ok()
        });
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "mmap returns page-aligned memory, and segments start on page boundaries"
        )]
        let base = segment.as_ref()?.ptr.as_ptr().cast::<SockActivity>();
        // SAFETY: `slot % SEGMENT_SLOTS` is below the segment's slot count.
        Some(unsafe { base.add((slot % SEGMENT_SLOTS) as usize) })
    }
}

impl SocketTable {
    /// Slots ever handed out, from 0: the rest is never mapped.
    pub(crate) fn slots_handed_out(&self) -> u32 {
        u32::try_from(self.used().load(Ordering::Relaxed))
            .unwrap_or(u32::MAX)
            .min(self.capacity)
    }

    /// Calls `f` with each live slot's number and a copy of its entry.
    fn for_each_live(&self, f: &mut dyn FnMut(u32, &SockActivity)) {
        for slot in 0..self.slots_handed_out() {
            let Some(at) = self.slot(slot) else { continue };
            // SAFETY: in bounds; volatile because the kernel writes concurrently.
            let cookie = unsafe { (&raw const (*at).cookie).read_volatile() };
            if cookie == 0 {
                continue;
            }
            let entry = unsafe { at.read_volatile() };
            if entry.cookie != 0 {
                f(slot, &entry);
            }
        }
    }
}

impl SocketSource for SocketTable {
    fn for_each_socket(&self, f: &mut dyn FnMut(u32, u64, &SockActivity)) {
        self.for_each_live(&mut |slot, entry| f(slot, entry.cookie, entry));
    }

    fn for_each_cookie(&self, f: &mut dyn FnMut(u32, u64)) {
        for slot in 0..self.slots_handed_out() {
            let Some(at) = self.slot(slot) else { continue };
            // SAFETY: in bounds; volatile because the kernel writes concurrently.
            let cookie = unsafe { (&raw const (*at).cookie).read_volatile() };
            if cookie != 0 {
                f(slot, cookie);
            }
        }
    }
}

pub(super) fn array_map(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, BpfError> {
    match ebpf.take_map(name).ok_or(BpfError::MissingMap(name))? {
        Map::Array(data) => Ok(data),
        _ => Err(BpfError::MissingMap(name)),
    }
}

/// A shared, read-write memory mapping of part of a `BPF_F_MMAPABLE` array map. It keeps the map
/// alive by itself (the kernel holds a reference for the mapping).
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// `offset` must be page aligned; the kernel refuses a range beyond the map's data.
    pub(super) fn new(fd: BorrowedFd<'_>, offset: usize, len: usize) -> std::io::Result<Self> {
        let offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: a fresh shared mapping; the kernel checks the range against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned NULL"),
            len,
        })
    }
}

impl Mapping {
    /// Where the mapping starts (page aligned).
    pub(super) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

// SAFETY: shared memory with no thread affinity; its users synchronise their accesses.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
