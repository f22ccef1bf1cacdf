//! Typed handles on the kernel maps: read the socket table and the counters, write seed entries.

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, PerCpuArray},
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
        })
    }

    /// Every entry of the socket table. Entries deleted while we iterate are skipped.
    pub fn sockets(&self) -> Vec<(u64, SockActivity)> {
        self.sockets.iter().filter_map(Result::ok).collect()
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
