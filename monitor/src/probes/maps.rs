//! Typed handles on the kernel maps: read the socket table and the counters, write seed entries.

use std::{
    ptr::NonNull,
    sync::{
        Arc,
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

use super::ProbeError;
use crate::table::{KernelCounters, read::SocketSource};

pub struct KernelMaps {
    table: Arc<SocketTable>,
    index: HashMap<MapData, u64, u32>,
    free_slots: Stack<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    transitions: PerCpuArray<MapData, u64>,
    errors: PerCpuArray<MapData, u64>,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
    T::try_from(map).map_err(|source| ProbeError::Map { name, source })
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
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
    pub fn reader(&self) -> Arc<SocketTable> {
        Arc::clone(&self.table)
    }

    /// Calls `f` for every live entry of the socket table, in no particular order, without
    /// collecting them first.
    pub fn for_each_socket(&self, f: &mut dyn FnMut(u64, &SockActivity)) {
        self.table.for_each_socket(f);
    }

    /// Adds a socket that predates the agent, unless the kernel side already tracks it (its own
    /// data is fresher). Returns whether the entry was written. The same protocol as the kernel
    /// side's insert: free slot, fill, index (no overwrite), publish the cookie.
    pub fn seed(&mut self, cookie: u64, entry: &SockActivity) -> Result<bool, MapError> {
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
        const BPF_NOEXIST: u64 = 1;
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
    pub fn provision_free_slots(ebpf: &mut Ebpf, capacity: u32) -> Result<(), ProbeError> {
        let map = ebpf
            .map_mut(FREE_SLOTS_MAP)
            .ok_or(ProbeError::MissingMap(FREE_SLOTS_MAP))?;
        let mut stack = Stack::<_, u32>::try_from(map).map_err(|source| ProbeError::Map {
            name: FREE_SLOTS_MAP,
            source,
        })?;
        for slot in (0..capacity).rev() {
            stack.push(slot, 0).map_err(|source| ProbeError::Map {
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

    pub fn counters(&self) -> Result<KernelCounters, MapError> {
        let transitions = nonzero(&self.transitions, TCP_STATE_SLOTS * TCP_STATE_SLOTS)?
            .map(|(i, n)| ((i / TCP_STATE_SLOTS) as u8, (i % TCP_STATE_SLOTS) as u8, n))
            .collect();
        Ok(KernelCounters {
            retransmits: sum(&self.counters, counters::RETRANSMITS)?,
            resets_sent: sum(&self.counters, counters::RESETS_SENT)?,
            resets_received: sum(&self.counters, counters::RESETS_RECEIVED)?,
            table_insert_failures: sum(&self.counters, counters::TABLE_INSERT_FAILURES)?,
            transitions,
            socket_errors: nonzero(&self.errors, ERRNO_SLOTS)?.collect(),
        })
    }
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

/// The socket slots and the "slots used" counter, mapped into the agent's memory.
///
/// Reading races with the kernel writing, field by field, as a batch lookup would: an entry can
/// mix values from before and after one event, which is harmless for ages and counters. A slot
/// whose cookie is 0 is free or being filled and is skipped.
pub struct SocketTable {
    slots: Mapping,
    used: Mapping,
    capacity: u32,
}

// SAFETY: the mappings are shared memory accessed only through volatile and atomic operations.
unsafe impl Send for SocketTable {}
unsafe impl Sync for SocketTable {}

impl SocketTable {
    fn map(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
        let slots = Mapping::of(ebpf, SLOTS_MAP)?;
        let capacity = (slots.len / size_of::<SockActivity>()) as u32;
        Ok(Self {
            slots,
            used: Mapping::of(ebpf, SLOTS_USED_MAP)?,
            capacity,
        })
    }

    fn used(&self) -> &AtomicU64 {
        // SAFETY: the first 8 bytes of the SLOTS_USED mapping are its u64 (page aligned), which
        // the kernel side also updates atomically.
        unsafe { AtomicU64::from_ptr(self.used.ptr.as_ptr().cast()) }
    }

    fn slot(&self, slot: u32) -> Option<*mut SockActivity> {
        (slot < self.capacity).then(|| {
            // SAFETY: in bounds of the mapping (capacity slots).
            unsafe {
                self.slots
                    .ptr
                    .as_ptr()
                    .cast::<SockActivity>()
                    .add(slot as usize)
            }
        })
    }
}

impl SocketSource for SocketTable {
    fn for_each_socket(&self, f: &mut dyn FnMut(u64, &SockActivity)) {
        // Only the slots ever handed out: the rest of the mapping is never touched (nor paged in).
        let used = self
            .used()
            .load(Ordering::Relaxed)
            .min(self.capacity.into()) as u32;
        for slot in 0..used {
            let Some(at) = self.slot(slot) else { break };
            // SAFETY: in bounds; volatile because the kernel writes concurrently.
            let cookie = unsafe { (&raw const (*at).cookie).read_volatile() };
            if cookie == 0 {
                continue;
            }
            let entry = unsafe { at.read_volatile() };
            if entry.cookie != 0 {
                f(entry.cookie, &entry);
            }
        }
    }
}

/// A shared, read-write memory mapping of a `BPF_F_MMAPABLE` array map.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Keeps the map (and its fd) alive as long as the mapping.
    _map: MapData,
}

impl Mapping {
    fn of(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, ProbeError> {
        let map = match ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))? {
            Map::Array(data) => data,
            _ => return Err(ProbeError::MissingMap(name)),
        };
        let info = map
            .info()
            .map_err(|source| ProbeError::Map { name, source })?;
        let len = info.value_size() as usize * info.max_entries() as usize;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(map.fd()));
        // SAFETY: a fresh shared mapping of the map's values; the kernel checks the length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ProbeError::Mmap {
                name,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned NULL"),
            len,
            _map: map,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `of` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
