//! The BPF maps and programs a process holds, as the kernel reports them: ids and sizes from
//! `/proc/PID/fdinfo`, names, contents and statistics from `bpftool`.

use std::process::Command;

use serde_json::Value;

/// One BPF map file descriptor of a process (fdinfo fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFd {
    /// The kernel's map id (`bpftool map show id N`).
    pub id: u64,
    /// `enum bpf_map_type` number.
    pub map_type: u64,
    /// Capacity in entries, as created.
    pub max_entries: u64,
    /// Kernel memory charged to the map, bytes.
    pub memlock: u64,
}

/// Every BPF map `pid` holds a file descriptor to, largest memlock first; descriptors closed
/// while we look are skipped.
///
/// # Errors
/// When `/proc/PID/fdinfo` cannot be listed (no such process, or not ours to read).
pub fn maps_of(pid: u32) -> anyhow::Result<Vec<MapFd>> {
    let mut maps = Vec::new();
    for info in fdinfos(pid)? {
        let field = |name: &str| fdinfo_field(&info, name);
        // Only map descriptors carry both (a struct_ops link has a map_id, no map_type).
        let (Some(id), Some(map_type)) = (field("map_id:"), field("map_type:")) else {
            continue;
        };
        maps.push(MapFd {
            id,
            map_type,
            max_entries: field("max_entries:").unwrap_or(0),
            memlock: field("memlock:").unwrap_or(0),
        });
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.memlock));
    Ok(maps)
}

/// The ids of the BPF programs `pid` holds a descriptor to, directly or through a link,
/// ascending and without repeats.
///
/// # Errors
/// When `/proc/PID/fdinfo` cannot be listed (no such process, or not ours to read).
pub fn program_ids_of(pid: u32) -> anyhow::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fdinfos(pid)?
        .iter()
        .filter_map(|info| fdinfo_field(info, "prog_id:"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// `bpftool prog show id ID` as JSON (`name`, `run_cnt`, `recursion_misses`, …; bpftool leaves
/// a statistic out while it is 0); None when bpftool cannot say.
#[must_use]
pub fn program(id: u64) -> Option<Value> {
    bpftool_json(&["prog", "show", "id", &id.to_string()])
}

/// The text of every `/proc/PID/fdinfo/*` entry; descriptors closed while we look are skipped.
fn fdinfos(pid: u32) -> anyhow::Result<Vec<String>> {
    let mut infos = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        if let Ok(info) = std::fs::read_to_string(entry?.path()) {
            infos.push(info);
        }
    }
    Ok(infos)
}

/// The number after `name` (`"map_id:"`) in one fdinfo text.
fn fdinfo_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// bpftool's JSON answer; None when it fails (it then prints `{"error": …}`, which is no
/// answer: a program or map that no longer exists, for one).
fn bpftool_json(args: &[&str]) -> Option<Value> {
    let out = Command::new("bpftool").arg("-j").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The map's name (as the kernel truncates it, 15 bytes); None when bpftool cannot say.
#[must_use]
pub fn map_name(id: u64) -> Option<String> {
    let map = bpftool_json(&["map", "show", "id", &id.to_string()])?;
    Some(map["name"].as_str()?.to_owned())
}

/// The first map named `name` that `pid` holds.
#[must_use]
pub fn map_named(pid: u32, name: &str) -> Option<MapFd> {
    let maps = maps_of(pid).ok()?;
    maps.into_iter()
        .find(|m| map_name(m.id).as_deref() == Some(name))
}

/// The first 8 bytes of element 0 of map `id`, little-endian, as `bpftool map dump` shows it.
#[must_use]
pub fn first_u64(id: u64) -> Option<u64> {
    let dump = bpftool_json(&["map", "dump", "id", &id.to_string()])?;
    // Without BTF, bpftool prints the value as hex byte strings.
    let bytes: Vec<u8> = dump[0]["value"]
        .as_array()?
        .iter()
        .filter_map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
        .collect();
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}
