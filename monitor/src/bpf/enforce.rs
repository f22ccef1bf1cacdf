//! Loads and attaches the `sock_ops_enforce` program (`monitor-ebpf/src/enforce.rs`) for
//! `[[enforce]]`: fills its policy slots, attaches it to the root of the cgroup v2 hierarchy
//! (every connection of the host passes it at establishment), and reads back which sockets it
//! enforced. The attachment lasts as long as [`Programs`](super::Programs): the agent's exit detaches
//! it; sockets keep the options it set.

use std::{path::Path, sync::Mutex};

use aya::{
    maps::{Array, HashMap, MapData},
    programs::{CgroupAttachMode, SockOps},
};
use monitor_common::enforce::{
    ENFORCE_POLICIES_MAP, ENFORCE_SLOTS, ENFORCED_CAPACITY, ENFORCED_MAP, EnforceSlot,
    EnforcedSocket, SOCK_OPS_ENFORCE_PROGRAM,
};

use super::{BpfError, Programs, maps::take};

/// The attached program's record of the sockets it enforced, and its policy slots. `Send +
/// Sync`.
pub struct EnforceRecords {
    enforced: Mutex<HashMap<MapData, u64, EnforcedSocket>>,
    policies: Mutex<Array<MapData, EnforceSlot>>,
}

impl std::fmt::Debug for EnforceRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnforceRecords")
            .field("enforced", &self.enforced)
            .finish_non_exhaustive()
    }
}

impl EnforceRecords {
    /// Every socket the program enforced and has not seen close: (cookie, what it did).
    #[must_use]
    pub fn all(&self) -> Vec<(u64, EnforcedSocket)> {
        let map = crate::locks::lock(&self.enforced);
        // Two syscalls per entry (next key, lookup). An entry deleted during the walk can make
        // the kernel start over: bounded by the capacity; the next scan reads the rest.
        map.iter()
            .map_while(Result::ok)
            .take(ENFORCED_CAPACITY as usize)
            .collect()
    }
}

impl EnforceRecords {
    /// Whether the program enforced socket `cookie` and has not seen it close.
    #[must_use]
    pub fn contains(&self, cookie: u64) -> bool {
        crate::locks::lock(&self.enforced).get(&cookie, 0).is_ok()
    }

    /// Makes slot `slot` compare cgroup id `cgroup_id` (a directory's inode number;
    /// `WAITING_CGROUP_ID` matches no connection) from the next established connection on.
    /// Needs no privilege: the map's descriptor was opened at start.
    ///
    /// # Errors
    /// The slot cannot be read or written ([`BpfError::Map`]).
    pub fn set_cgroup_id(&self, slot: usize, cgroup_id: u64) -> Result<(), BpfError> {
        let map_error = |source| BpfError::Map {
            name: ENFORCE_POLICIES_MAP,
            source,
        };
        let index = u32::try_from(slot).unwrap_or(ENFORCE_SLOTS);
        let mut policies = crate::locks::lock(&self.policies);
        let mut value = policies.get(&index, 0).map_err(map_error)?;
        // The program may read the slot while this writes it: only the id differs, so a
        // connection established meanwhile is at worst not matched, and the scan's fallback
        // applies its policy.
        value.cgroup_id = cgroup_id;
        policies.set(index, value, 0).map_err(map_error)
    }
}

/// Says so when another agent's `sock_ops_enforce` program is loaded besides ours (`ours`:
/// our program's id): a rolling upgrade, or a second copy started by hand. Both run at every
/// establishment, and where both agents' policies match a connection the one that runs last
/// sets its options.
fn warn_of_other_enforcers(ours: Option<u32>) {
    let loaded = aya::programs::loaded_programs().filter_map(Result::ok);
    let others = other_enforcers(
        ours,
        loaded
            .filter(|p| p.program_type() == aya::programs::ProgramType::SockOps.into())
            .map(|p| (p.id(), p.name_as_str().map(str::to_owned))),
    );
    if !others.is_empty() {
        tracing::warn!(
            program_ids = ?others,
            "enforce: another tcp-liveness agent's sock_ops program is loaded (a rolling upgrade              or a second copy?): where both agents' policies match a connection, the program              that runs last sets its options; each agent reports `enforced` only while a              connection's options are its own policy's"
        );
    }
}

/// The ids of the `sock_ops` programs among `loaded` (id, name as the kernel keeps it: at most
/// 15 bytes) that are an enforcement program other than `ours`. Pure.
fn other_enforcers(
    ours: Option<u32>,
    loaded: impl Iterator<Item = (u32, Option<String>)>,
) -> Vec<u32> {
    // The kernel keeps BPF_OBJ_NAME_LEN - 1 = 15 bytes of a program's name.
    let kept = &SOCK_OPS_ENFORCE_PROGRAM[..SOCK_OPS_ENFORCE_PROGRAM.len().min(15)];
    loaded
        .filter(|(id, name)| Some(*id) != ours && name.as_deref() == Some(kept))
        .map(|(id, _)| id)
        .collect()
}

impl Programs {
    /// Writes `slots` (config order, at most `ENFORCE_SLOTS`) into the program's policy map,
    /// loads it and attaches it to `cgroup_root` (the cgroup v2 mount). Needs `CAP_BPF` and
    /// `CAP_NET_ADMIN` (or `CAP_SYS_ADMIN`) to attach: call it before privileges drop.
    ///
    /// # Errors
    /// The kernel's BTF lacks the cgroup fields the program follows, a map or the program is
    /// missing or refused, or the cgroup directory cannot be opened or attached to.
    pub fn enforce(
        &mut self,
        slots: &[EnforceSlot],
        cgroup_root: &Path,
    ) -> Result<EnforceRecords, BpfError> {
        // The object was loaded with zero offsets if the BTF lacked them: refuse to attach.
        if let Some(why) = self.enforce_unavailable.take() {
            return Err(why);
        }
        let mut policies: Array<MapData, EnforceSlot> = take(&mut self.ebpf, ENFORCE_POLICIES_MAP)?;
        let map_error = |source| BpfError::Map {
            name: ENFORCE_POLICIES_MAP,
            source,
        };
        for (i, slot) in (0..ENFORCE_SLOTS).zip(slots) {
            policies.set(i, slot, 0).map_err(map_error)?;
        }
        let enforced = take(&mut self.ebpf, ENFORCED_MAP)?;
        let name = SOCK_OPS_ENFORCE_PROGRAM;
        let program: &mut SockOps = super::program_of(&mut self.ebpf, name)?;
        program.load().map_err(BpfError::program(name))?;
        let cgroup = std::fs::File::open(cgroup_root).map_err(|source| BpfError::Cgroup {
            step: format!("opening {}", cgroup_root.display()),
            source,
        })?;
        // A BPF link (kernels from 5.7): the kernel refuses flags on it (EINVAL) and always
        // attaches it beside what is there, so other tools' sock_ops programs keep running.
        program
            .attach(&cgroup, CgroupAttachMode::Single)
            .map_err(BpfError::program(name))?;
        warn_of_other_enforcers(program.info().ok().map(|info| info.id()));
        Ok(EnforceRecords {
            enforced: Mutex::new(enforced),
            policies: Mutex::new(policies),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_agents_enforcement_program_is_found_by_its_kept_name() {
        let loaded = [
            (10, Some("sock_ops_enforc".to_owned())),
            (11, Some("sock_ops_enforc".to_owned())),
            (12, Some("cilium_sockops".to_owned())),
            (13, None),
        ];
        assert_eq!(other_enforcers(Some(10), loaded.iter().cloned()), [11]);
        assert_eq!(other_enforcers(None, loaded.iter().cloned()), [10, 11]);
        assert!(other_enforcers(Some(11), loaded[1..].iter().cloned()).is_empty());
    }
}
