//! Typed handles on the kernel maps: read the socket table and the counters, write seed entries.

use std::{
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    sync::atomic::{AtomicUsize, Ordering},
};

use aya::{
    Ebpf,
    maps::{HashMap, IterableMap as _, MapData, MapError, PerCpuArray},
};
use monitor_common::{
    COUNTERS_MAP, ERRNO_SLOTS, ERRORS_MAP, SOCKETS_MAP, SockActivity, TCP_STATE_SLOTS,
    TRANSITIONS_MAP, counters,
};

use super::ProbeError;
use crate::table::KernelCounters;

pub struct KernelMaps {
    sockets: HashMap<MapData, u64, SockActivity>,
    counters: PerCpuArray<MapData, u64>,
    transitions: PerCpuArray<MapData, u64>,
    errors: PerCpuArray<MapData, u64>,
    /// Entries in the last read: the next read allocates that much at once instead of growing
    /// (and copying) its vector several times.
    last_len: AtomicUsize,
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
            sockets: take(ebpf, SOCKETS_MAP)?,
            counters: take(ebpf, COUNTERS_MAP)?,
            transitions: take(ebpf, TRANSITIONS_MAP)?,
            errors: take(ebpf, ERRORS_MAP)?,
            last_len: AtomicUsize::new(0),
        })
    }

    /// Every entry of the socket table. Entries deleted while we iterate are skipped.
    ///
    /// Read with BPF_MAP_LOOKUP_BATCH (a few syscalls for the whole table); kernels without it
    /// (before 5.6) get aya's iterator, which costs two syscalls per entry.
    pub fn sockets(&self) -> Vec<(u64, SockActivity)> {
        let fd = self.sockets.map().fd().as_fd().as_raw_fd();
        let expected = self.last_len.load(Ordering::Relaxed);
        match lookup_batch(fd, expected + expected / 8) {
            Ok(entries) => {
                self.last_len.store(entries.len(), Ordering::Relaxed);
                entries
            }
            Err(error) => {
                tracing::debug!(%error, "BPF_MAP_LOOKUP_BATCH unavailable; iterating");
                self.sockets.iter().filter_map(Result::ok).collect()
            }
        }
    }

    /// Calls `f` for every live entry of the socket table, in no particular order, without
    /// collecting them first.
    pub fn for_each_socket(&self, f: &mut dyn FnMut(u64, &SockActivity)) {
        for (cookie, entry) in self.sockets() {
            f(cookie, &entry);
        }
    }

    /// Adds a socket that predates the agent, unless the kernel side already tracks it (its own
    /// data is fresher). Returns whether the entry was written.
    pub fn seed(&mut self, cookie: u64, entry: &SockActivity) -> Result<bool, MapError> {
        const BPF_NOEXIST: u64 = 1;
        match self.sockets.insert(cookie, entry, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes an entry (a seeded socket that closed before its entry was written).
    pub fn forget(&mut self, cookie: u64) {
        let _ = self.sockets.remove(&cookie);
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

/// Entries per BPF_MAP_LOOKUP_BATCH call.
const BATCH: usize = 4096;

/// The whole socket table through BPF_MAP_LOOKUP_BATCH, which aya 0.14 does not wrap: `bpf(2)`
/// with the `batch` member of `union bpf_attr`.
fn lookup_batch(map_fd: RawFd, expected: usize) -> std::io::Result<Vec<(u64, SockActivity)>> {
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    // `union bpf_attr`, batch member (include/uapi/linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    let mut entries = Vec::with_capacity(expected);
    let mut keys = vec![0u64; BATCH];
    let mut values = vec![SockActivity::zeroed(); BATCH];
    // Opaque position in the table (a bucket index for hash maps); `in_batch` 0 starts at the top.
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const token_in as u64 },
            out_batch: &raw mut token_out as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: map_fd as u32,
            ..Default::default()
        };
        // SAFETY: the buffers hold BATCH keys and values of the map's key and value sizes, and
        // the tokens are 8 bytes (the kernel writes a u32 bucket index for hash maps).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let error = (ret < 0).then(std::io::Error::last_os_error);
        let filled = attr.count as usize;
        entries.extend(
            keys[..filled]
                .iter()
                .copied()
                .zip(values[..filled].iter().copied()),
        );
        match error {
            None => {}
            // The end of the table (the last entries, if any, came with it).
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(entries),
            Some(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
}
