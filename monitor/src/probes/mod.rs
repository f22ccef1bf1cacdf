//! Loads and attaches the kernel programs, and gives typed access to their maps. The only module
//! that touches aya.
//!
//! Every hook is attached independently: a hook the kernel refuses is logged and reported as not
//! attached, and the agent runs with the rest.

#[cfg(feature = "bench")]
pub mod bench;
pub(crate) mod maps;
pub mod offsets;
mod source;

use std::{path::Path, sync::Arc};

use aya::{Btf, Ebpf, EbpfLoader, programs::BtfTracePoint};
use monitor_common::{FREE_SLOTS_MAP, INDEX_MAP, OFFSETS_GLOBAL, SLOTS_MAP};
use thiserror::Error;

pub use self::source::{FixedStatus, HookStatus, KernelCounters, KernelStatus, SocketSource};

pub use maps::KernelMaps;

/// The object built from `monitor-ebpf` by build.rs, embedded in the agent.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcp-liveness"));

/// Every hook: (program name in the object, BTF tracepoint it attaches to). They are the same
/// name, which is also the `hook` label in `tcp_liveness_hook_attached`.
pub const HOOKS: [&str; 9] = [
    "inet_sock_set_state",
    "sock_send_length",
    "sock_recv_length",
    "tcp_probe",
    "tcp_retransmit_skb",
    "tcp_receive_reset",
    "tcp_send_reset",
    "inet_sk_error_report",
    "tcp_destroy_sock",
];

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("reading kernel BTF: {0}")]
    Btf(String),
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("mapping {name} into memory: {source}")]
    Mmap {
        name: &'static str,
        source: std::io::Error,
    },
    /// Loading, attaching or inspecting one program (the benchmark loader, `bench`).
    #[error("{0}")]
    Program(String),
}

/// The loaded programs. Dropping it detaches every hook and frees the maps.
pub struct Probes {
    // Held for its Drop: it owns the program links.
    _ebpf: Ebpf,
    pub maps: KernelMaps,
    pub hooks: Vec<HookStatus>,
    pub capacity: u32,
    /// Messages the kernel programs log (aya-log), for the agent to forward; None when the
    /// object has no log buffer.
    pub kernel_log: Option<KernelLog>,
}

/// The kernel programs' log ring buffer; `flush` forwards its records to the `log` facade, which
/// the agent's tracing subscriber receives.
pub type KernelLog = aya_log::EbpfLogger<&'static dyn log::Log>;

impl Probes {
    /// Loads the programs with a table of `capacity` sockets and attaches every hook it can.
    pub fn load(capacity: u32) -> Result<Self, ProbeError> {
        let mut ebpf = load_object(capacity, &[])?;
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Btf(e.to_string()))?;
        let hooks = HOOKS
            .iter()
            .map(|&hook| {
                let error = attach(&mut ebpf, &btf, hook).err();
                match &error {
                    None => tracing::info!(hook, "hook attached"),
                    Some(error) => {
                        tracing::warn!(hook, %error, "hook not attached; running without it")
                    }
                }
                HookStatus {
                    hook,
                    attached: error.is_none(),
                    error,
                }
            })
            .collect();
        let kernel_log = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|error| tracing::warn!(%error, "kernel programs' log unavailable"))
            .ok();
        let maps = KernelMaps::take(&mut ebpf)?;
        Ok(Self {
            _ebpf: ebpf,
            maps,
            hooks,
            capacity,
            kernel_log,
        })
    }

    /// The socket table, read through its memory mapping without this value's lock, so a
    /// `/connections` request never waits for a scan (or the reverse).
    pub fn socket_source(&self) -> Arc<dyn SocketSource> {
        self.maps.reader()
    }
}

/// Loads the embedded object (maps created, no program loaded yet) with the kernel's offsets and a
/// table of `capacity` sockets; `map_sizes` overrides other maps' capacities.
fn load_object(capacity: u32, map_sizes: &[(&str, u32)]) -> Result<Ebpf, ProbeError> {
    raise_memlock_limit();
    let offsets = offsets::from_kernel(Path::new(offsets::VMLINUX_BTF))?;
    tracing::debug!(?offsets, "kernel structure offsets from BTF");
    let mut loader = EbpfLoader::new();
    loader
        .override_global(OFFSETS_GLOBAL, &offsets, true)
        .map_max_entries(SLOTS_MAP, capacity)
        .map_max_entries(INDEX_MAP, capacity)
        .map_max_entries(FREE_SLOTS_MAP, capacity);
    for &(map, size) in map_sizes {
        loader.map_max_entries(map, size);
    }
    let mut ebpf = loader.load(PROGRAMS)?;
    KernelMaps::provision_free_slots(&mut ebpf, capacity)?;
    Ok(ebpf)
}

fn attach(ebpf: &mut Ebpf, btf: &Btf, hook: &'static str) -> Result<(), String> {
    let program = ebpf
        .program_mut(hook)
        .ok_or_else(|| format!("program {hook} missing from the object"))?;
    let program: &mut BtfTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
    program.load(hook, btf).map_err(|e| error_chain(&e))?;
    program.attach().map_err(|e| error_chain(&e))?;
    Ok(())
}

/// The kernel accounts BPF memory by memcg on current kernels; where it still uses RLIMIT_MEMLOCK
/// the limit must be raised. Failing to raise it (no CAP_SYS_RESOURCE) is only a warning.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; fine on kernels that account BPF memory by memcg"
        );
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
