//! Loads and attaches the kernel programs, and gives typed access to their maps. The only module
//! that touches aya.
//!
//! Every hook is attached independently: a hook the kernel refuses is logged and reported as not
//! attached, and the agent runs with the rest. The `iter/tcp` iterator ([`kernel_state`]) is one
//! more program, reported the same way.

#[cfg(feature = "bench")]
pub mod bench;
pub mod cgroup;
pub mod enforce;
pub mod kernel_state;
mod kfunc;
pub(crate) mod maps;
mod misses;
pub mod offsets;
pub mod sockopt;
mod source;
pub mod stacks;
pub mod task_file;
pub mod walk;

use std::{
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{BtfTracePoint, ProgramError},
};
use monitor_common::{
    FREE_SLOTS_MAP, INDEX_MAP, OFFSETS_GLOBAL, SLOTS_MAP,
    enforce::{ENFORCE_OFFSETS_GLOBAL, EnforceOffsets},
    holders::{ITER_TASK_FILE_PROGRAM, SOCKET_ADDRS_MAP},
    kernel_state::{ITER_TCP_PROGRAM, ITER_TCP_TABLE_PROGRAM},
};
use thiserror::Error;

use crate::model::format::error_chain;

pub use self::source::{FixedStatus, HookStatus, KernelCounters, KernelStatus, SocketSource};

pub use enforce::EnforceRecords;
pub use kernel_state::KernelStateReader;
pub use maps::KernelMaps;
pub use sockopt::SockoptControl;

/// The object built from `monitor-ebpf` by build.rs, embedded in the agent.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcp-liveness"));

/// The object as embedded, before its kfunc calls are resolved ([`kfunc::resolve`]).
#[cfg(test)]
pub(crate) fn embedded_object() -> &'static [u8] {
    PROGRAMS
}

/// How the `iter/task_file` program reads the `tcp_sock` fields of each socket it visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpSockReads {
    /// A load per field through `bpf_rdonly_cast` (Linux 6.2 and later): the default where the
    /// kernel has it.
    Cast,
    /// One `bpf_probe_read_kernel` per field: kernels without `bpf_rdonly_cast`.
    Probe,
}

/// Every hook: (program name in the object, BTF tracepoint it attaches to). They are the same
/// name, which is also the `hook` label in `tcp_liveness_hook_attached`. The agent attaches
/// those of [`hooks`].
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

/// The hooks that run for every packet or every `send()`/`recv()` of every process on the host:
/// attached only on request (`--per-packet-hooks`). What they record the kernel keeps per
/// socket too, and the scans read it there.
pub const PER_PACKET_HOOKS: [&str; 3] = ["sock_send_length", "sock_recv_length", "tcp_probe"];

/// The hooks [`Programs::load`] attaches, in [`HOOKS`] order: the rare events (state changes,
/// retransmits, resets, socket errors, destruction), and the [`PER_PACKET_HOOKS`] when
/// `per_packet`.
pub fn hooks(per_packet: bool) -> impl Iterator<Item = &'static str> {
    HOOKS
        .into_iter()
        .filter(move |hook| per_packet || !PER_PACKET_HOOKS.contains(hook))
}

/// Why the programs, a map or a program could not be used. Each variant keeps its cause as
/// `source()`; [`error_chain`] prints the whole chain on one line.
#[derive(Debug, Error)]
pub enum BpfError {
    /// `/sys/kernel/btf/vmlinux` (or the given file) cannot be read or parsed for the offsets.
    #[error("reading kernel BTF {}", path.display())]
    BtfFile {
        path: PathBuf,
        #[source]
        source: btf_rs::Error,
    },
    /// The kernel's BTF lacks a field, or has it where the programs cannot load it.
    #[error("kernel BTF: {what}")]
    BtfLayout { what: String },
    /// aya cannot read the kernel's BTF (needed to load BTF tracepoints).
    #[error("reading kernel BTF")]
    KernelBtf(#[source] aya::BtfError),
    #[error("loading the eBPF object")]
    Load(#[from] aya::EbpfError),
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("mapping {name} into memory")]
    Mmap {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(String),
    /// Loading (verifying), attaching, detaching or inspecting one program.
    #[error("program {name}")]
    Program {
        name: String,
        #[source]
        source: ProgramError,
    },
    /// Reading one program's information (`BPF_OBJ_GET_INFO_BY_FD`).
    #[error("program {name}: reading its information")]
    ProgramInfo {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Turning on the kernel's per-program run-time statistics (benchmarks).
    #[error("BPF_ENABLE_STATS")]
    Stats(#[source] aya::sys::SyscallError),
    /// Finding or opening the cgroup v2 hierarchy, or a cgroup in it (`[[enforce]]`).
    #[error("cgroup v2 hierarchy: {step}")]
    Cgroup {
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel lacks what a program needs (the message says what).
    #[error("{0}")]
    Unsupported(&'static str),
    /// Linking, creating or reading the `iter/tcp` iterator (`step` names the call), or output
    /// that is not a whole number of records.
    #[error("kernel socket state iterator: {step}")]
    KernelState {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl BpfError {
    fn program(name: &str) -> impl FnOnce(ProgramError) -> Self + '_ {
        move |source| Self::Program {
            name: name.to_owned(),
            source,
        }
    }
}

/// The loaded programs. Dropping it detaches every hook and frees the maps.
pub struct Programs {
    // Owns the program links: dropping it detaches every hook.
    ebpf: Ebpf,
    pub maps: KernelMaps,
    pub hooks: Vec<HookStatus>,
    pub capacity: u32,
    /// Messages the kernel programs log (aya-log), for the agent to forward; None when the
    /// object has no log buffer.
    pub kernel_log: Option<KernelLog>,
    /// The `iter/tcp` table refresh program (`iter_tcp_table`): writes the kernel's own values
    /// of every tracked socket of a namespace into its slot, and yields the other sockets as
    /// records. None when the kernel refused it (its [`HookStatus`] in `hooks` says why).
    pub table_refresh: Option<KernelStateReader>,
    /// The `iter/task_file` program (`iter_task_file`): which processes hold each socket, in one
    /// pass over every namespace. None when the kernel refused it (its [`HookStatus`] in `hooks`
    /// says why).
    pub holders: Option<task_file::TaskFileReader>,
    /// The maps of the call stacks that opened connections, when they are recorded
    /// (`[forensics] stacks`, [`Programs::load_recording_stacks`]); the agent takes them.
    pub stacks: Option<stacks::StackTables>,
    /// The `iter_tcp_sockopt` program once loaded ([`Programs::sockopt_control`]).
    sockopt: Option<Arc<SockoptControl>>,
    /// Why `[[enforce]]` cannot attach on this kernel, found when the object was loaded.
    enforce_unavailable: Option<BpfError>,
    /// How the `iter/task_file` program reads `tcp_sock` fields on this kernel.
    pub tcp_sock_reads: TcpSockReads,
}

/// The kernel programs' log ring buffer; `flush` forwards its records to the `log` facade, which
/// the agent's tracing subscriber receives.
pub type KernelLog = aya_log::EbpfLogger<&'static dyn log::Log>;

impl Programs {
    /// Loads the programs with a table of `capacity` sockets and attaches every hook of
    /// [`hooks`]`(per_packet)` it can (a hook the kernel refuses is logged and reported in
    /// [`Programs::hooks`]; the others are not loaded at all), then the
    /// `iter/tcp` table refresh iterator and the `iter/task_file` holders iterator (reported
    /// there too, as hooks `iter_tcp_table` and `iter_task_file`).
    ///
    /// # Errors
    /// The kernel BTF cannot be read, the object or its maps cannot be created, or the table
    /// cannot be mapped into memory.
    pub fn load(capacity: u32, per_packet: bool) -> Result<Self, BpfError> {
        Self::load_recording_stacks(capacity, per_packet, false)
    }

    /// As [`load`](Self::load), and with `stacks` the programs that record the user-space call
    /// stack of each connection's `connect()` and `accept()` too (reported in
    /// [`Programs::hooks`] as `stack_at_connect`, `stack_at_accept4`, `stack_at_accept`; their
    /// maps in [`Programs::stacks`]). Without `stacks` it is [`load`](Self::load).
    ///
    /// # Errors
    /// As [`load`](Self::load), or a stack map missing from the object.
    pub fn load_recording_stacks(
        capacity: u32,
        per_packet: bool,
        stacks: bool,
    ) -> Result<Self, BpfError> {
        Self::load_reading(capacity, per_packet, stacks, TcpSockReads::Cast)
    }

    /// As [`load`](Self::load) with the per-packet hooks off, reading `tcp_sock` fields with
    /// probe reads even where the kernel has `bpf_rdonly_cast`: what kernels before 6.2 run,
    /// so that tests compare the two ways.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with_probe_reads(capacity: u32) -> Result<Self, BpfError> {
        Self::load_reading(capacity, false, false, TcpSockReads::Probe)
    }

    /// As [`load_recording_stacks`](Self::load_recording_stacks), reading `tcp_sock` fields as
    /// `prefer` says where the kernel can ([`Programs::tcp_sock_reads`] says how they are).
    fn load_reading(
        capacity: u32,
        per_packet: bool,
        stacks: bool,
        prefer: TcpSockReads,
    ) -> Result<Self, BpfError> {
        let (mut ebpf, loaded) = load_object(capacity, &[], stacks, prefer)?;
        let Loaded {
            enforce_unavailable,
            tcp_sock_reads,
        } = loaded;
        let btf = Btf::from_sys_fs().map_err(BpfError::KernelBtf)?;
        let mut hooks: Vec<HookStatus> = hooks(per_packet)
            .map(|hook| hook_status(hook, attach(&mut ebpf, &btf, hook).err().as_ref()))
            .collect();
        let stacks = if stacks {
            Some(stacks::attach(&mut ebpf, &btf, &mut hooks)?)
        } else {
            None
        };
        let table_refresh = KernelStateReader::load(&mut ebpf, &btf, ITER_TCP_TABLE_PROGRAM);
        hooks.push(hook_status(
            ITER_TCP_TABLE_PROGRAM,
            table_refresh.as_ref().err(),
        ));
        let table_refresh = table_refresh.ok();
        let kernel_log = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|error| tracing::warn!(%error, "kernel programs' log unavailable"))
            .ok();
        let maps = KernelMaps::take(&mut ebpf)?;
        let mut programs = Self {
            ebpf,
            maps,
            hooks,
            capacity,
            kernel_log,
            table_refresh,
            holders: None,
            stacks,
            sockopt: None,
            enforce_unavailable,
            tcp_sock_reads,
        };
        let holders = programs.holders_reader();
        let status = hook_status(ITER_TASK_FILE_PROGRAM, holders.as_ref().err());
        programs.hooks.push(status);
        programs.holders = holders.ok();
        Ok(programs)
    }

    /// Loads the `iter_tcp` program, which writes one record per socket of a namespace (every
    /// socket, tracked or not, with every field): the whole view for tools and tests. The agent
    /// itself uses [`Programs::table_refresh`].
    ///
    /// # Errors
    /// The kernel BTF cannot be read, or as [`KernelStateReader::load`].
    pub fn records_reader(&mut self) -> Result<KernelStateReader, BpfError> {
        let btf = Btf::from_sys_fs().map_err(BpfError::KernelBtf)?;
        KernelStateReader::load(&mut self.ebpf, &btf, ITER_TCP_PROGRAM)
    }

    /// Loads the `iter_tcp_sockopt` program and takes its request map, for the features that
    /// change sockets' options (`[probe]`, `[[enforce]]`). Loaded only on demand: without those
    /// features the kernel never verifies it; loaded once, every caller shares it. Needs `CAP_BPF`
    /// the first time (call it before privileges drop).
    ///
    /// # Errors
    /// The kernel BTF cannot be read, or as [`SockoptControl::load`].
    pub fn sockopt_control(&mut self) -> Result<Arc<SockoptControl>, BpfError> {
        if let Some(control) = &self.sockopt {
            return Ok(Arc::clone(control));
        }
        let btf = Btf::from_sys_fs().map_err(BpfError::KernelBtf)?;
        let control = Arc::new(SockoptControl::load(&mut self.ebpf, &btf)?);
        self.sockopt = Some(Arc::clone(&control));
        Ok(control)
    }

    /// `(hook, runs the kernel skipped)` for every attached hook (`recursion_misses`, see
    /// [`misses`]).
    ///
    /// # Errors
    /// The kernel refused the program information of one hook.
    pub fn recursion_misses(&self) -> Result<Vec<(&'static str, u64)>, BpfError> {
        let attached = self.hooks.iter().filter(|h| h.attached).map(|h| h.hook);
        attached
            .map(|hook| {
                let program = self
                    .ebpf
                    .program(hook)
                    .ok_or_else(|| BpfError::MissingProgram(hook.to_owned()))?;
                let fd = program.fd().map_err(BpfError::program(hook))?;
                misses::recursion_misses(fd.as_fd())
                    .map(|n| (hook, n))
                    .map_err(|source| BpfError::ProgramInfo { name: hook, source })
            })
            .collect()
    }

    /// The socket table, read through its memory mapping without this value's lock, so a
    /// `/connections` request never waits for a scan (or the reverse).
    #[must_use]
    pub fn socket_source(&self) -> Arc<dyn SocketSource> {
        self.maps.reader()
    }
}

/// What loading the object found out about the kernel.
struct Loaded {
    /// Why `[[enforce]]` cannot work here: the kernel's BTF lacks the cgroup fields its program
    /// follows (the object is then loaded with zero offsets for them).
    enforce_unavailable: Option<BpfError>,
    /// How the `iter/task_file` program reads `tcp_sock` fields.
    tcp_sock_reads: TcpSockReads,
}

/// Loads the embedded object (maps created, no program loaded yet) with the kernel's offsets and a
/// table of `capacity` sockets; `map_sizes` overrides other maps' capacities; `stacks` sizes the
/// call-stack maps and turns their recording on (`[forensics] stacks`); `prefer`: how
/// `tcp_sock` fields are read where the kernel can ([`kfunc`] resolves the calls).
fn load_object(
    capacity: u32,
    map_sizes: &[(&str, u32)],
    stacks: bool,
    prefer: TcpSockReads,
) -> Result<(Ebpf, Loaded), BpfError> {
    // No RLIMIT_MEMLOCK raise here: kernels from 5.11 charge BPF memory to the memory cgroup
    // instead, and on older ones aya raises the limit itself when the kernel refuses a map for
    // it. Raising it unconditionally failed, with a warning, on every start under the shipped
    // unit (no CAP_SYS_RESOURCE).
    let btf = offsets::read_btf(Path::new(offsets::VMLINUX_BTF))?;
    let offsets = offsets::from_btf(&btf)?;
    tracing::debug!(?offsets, "kernel structure offsets from BTF");
    // Zeros when the BTF lacks them: `[[enforce]]` then refuses to attach (`Programs::enforce`).
    let (enforce_offsets, enforce_unavailable) = match offsets::enforce_from_btf(&btf) {
        Ok(offsets) => (offsets, None),
        Err(why) => (EnforceOffsets::default(), Some(why)),
    };
    let kfuncs = kfunc::KfuncIds::of(&btf).filter(|_| prefer == TcpSockReads::Cast);
    drop(btf);
    let (object, calls) = kfunc::resolve(PROGRAMS, kfuncs);
    let tcp_sock_reads = if kfuncs.is_some() {
        TcpSockReads::Cast
    } else {
        TcpSockReads::Probe
    };
    tracing::info!(
        kfunc_calls = calls,
        ?tcp_sock_reads,
        "how iter_task_file reads tcp_sock fields (Cast: bpf_rdonly_cast, Probe: probe reads)"
    );
    let tcp_sock_type = kfuncs.map_or(0, |ids| ids.tcp_sock);
    let mut loader = EbpfLoader::new();
    loader
        .override_global(OFFSETS_GLOBAL, &offsets, true)
        .override_global(ENFORCE_OFFSETS_GLOBAL, &enforce_offsets, true)
        .override_global(kfunc::TCP_SOCK_TYPE_ID_GLOBAL, &tcp_sock_type, true)
        .map_max_entries(SLOTS_MAP, capacity)
        .map_max_entries(INDEX_MAP, capacity)
        .map_max_entries(FREE_SLOTS_MAP, capacity)
        .map_max_entries(SOCKET_ADDRS_MAP, capacity);
    let stacks_on = u32::from(stacks);
    stacks::configure(&mut loader, &stacks_on);
    for &(map, size) in map_sizes {
        loader.map_max_entries(map, size);
    }
    let mut ebpf = loader.load(object.bytes())?;
    KernelMaps::provision_free_slots(&mut ebpf, capacity)?;
    Ok((
        ebpf,
        Loaded {
            enforce_unavailable,
            tcp_sock_reads,
        },
    ))
}

/// The slot walk's [`HookStatus`] (`walk_slots`), logged as a hook's is: `refused` is why
/// [`Programs::slot_walker`] could not load it.
#[must_use]
pub fn walk_status(refused: Option<&BpfError>) -> HookStatus {
    hook_status(monitor_common::holders::SLOT_WALK_PROGRAM, refused)
}

/// Logs whether `hook` could be attached, and says so as its [`HookStatus`].
fn hook_status(hook: &'static str, refused: Option<&BpfError>) -> HookStatus {
    let error = refused.map(|e| error_chain(e));
    match &error {
        None => tracing::info!(hook, "hook attached"),
        Some(error) => tracing::warn!(hook, %error, "hook not attached; running without it"),
    }
    HookStatus {
        hook,
        attached: error.is_none(),
        error,
    }
}

/// Loads (verifies) the program named `hook` and attaches it to the BTF tracepoint of that name.
fn attach(ebpf: &mut Ebpf, btf: &Btf, hook: &'static str) -> Result<(), BpfError> {
    let program = btf_tracepoint(ebpf, hook)?;
    program.load(hook, btf).map_err(BpfError::program(hook))?;
    program.attach().map_err(BpfError::program(hook))?;
    Ok(())
}

/// The BTF tracepoint program `name` of the object.
fn btf_tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut BtfTracePoint, BpfError> {
    program_of(ebpf, name)
}

/// The program `name` of the object, as the program type `T` it must be.
///
/// # Errors
/// [`BpfError::MissingProgram`], or [`BpfError::Program`] when it is of another type.
fn program_of<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| BpfError::MissingProgram(name.to_owned()))?
        .try_into()
        .map_err(BpfError::program(name))
}
