//! For `cargo xtask bench` only; compiled with the `bench` feature, which also puts the floor
//! programs into the embedded object (the agent's default build has neither). Loads the object,
//! attaches a chosen set of programs in a chosen order — the real hooks and the `floor_*`
//! programs (`monitor-ebpf/src/floor.rs`: one cookie, one hash lookup, one timestamp store, in
//! their own map) — and reads the kernel's per-program statistics (run time and count, kept while
//! `BPF_ENABLE_STATS` is held) and instruction counts.

use std::os::fd::OwnedFd;

use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, tp_btf::BtfTracePointLinkId},
    sys::{Stats, enable_stats},
};

use super::{BpfError, HOOKS, btf_tracepoint, load_object};

/// The floor programs' map (`FLOOR` in floor.rs) and the capacity the benchmark gives it.
pub const FLOOR_MAP: &str = "FLOOR";
pub const FLOOR_CAPACITY: u32 = 1 << 17;

/// The floor program of `hook` (of [`HOOKS`]), when floor.rs has one: `floor_` + hook.
#[must_use]
pub fn floor_name(hook: &str) -> String {
    format!("floor_{hook}")
}

/// The empty program of `hook`, when floor.rs has one: `empty_` + hook (it returns at once).
#[must_use]
pub fn empty_name(hook: &str) -> String {
    format!("empty_{hook}")
}

/// One program's kernel statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgramStats {
    pub id: u32,
    pub run_time_ns: u64,
    pub run_count: u64,
    /// Instructions after the verifier's rewrites (`bpftool prog dump xlated`).
    pub xlated_insns: u32,
    /// Instructions the verifier walked.
    pub verified_insns: u32,
    pub jited_bytes: u32,
}

/// Every real and floor program loaded (verified) once; attached and detached at will.
pub struct BenchPrograms {
    ebpf: Ebpf,
    /// The floor programs the object has, by name, in [`HOOKS`] order (floor.rs has one for
    /// the hooks the benchmark times, not for the rare reset and error hooks), then the empty
    /// programs (one for each rare hook).
    floors: Vec<String>,
    links: Vec<(String, BtfTracePointLinkId)>,
    // Keeps run-time statistics on while the programs live.
    _stats: OwnedFd,
}

impl BenchPrograms {
    /// Loads the object with a table of `capacity` sockets and verifies every real and floor
    /// program, attaching none; keeps run-time statistics on until dropped.
    ///
    /// # Errors
    /// Statistics refused (`CAP_SYS_ADMIN`), kernel BTF unreadable, or a program the verifier
    /// rejects.
    pub fn load(capacity: u32) -> Result<Self, BpfError> {
        let stats = enable_stats(Stats::RunTime).map_err(BpfError::Stats)?;
        let (mut ebpf, _) = load_object(
            capacity,
            &[(FLOOR_MAP, FLOOR_CAPACITY)],
            false,
            super::TcpSockReads::Cast,
        )?;
        let btf = Btf::from_sys_fs().map_err(BpfError::KernelBtf)?;
        let mut floors = Vec::new();
        for name_of in [floor_name, empty_name] {
            for hook in HOOKS {
                let name = name_of(hook);
                if ebpf.program(&name).is_none() {
                    continue;
                }
                btf_tracepoint(&mut ebpf, &name)?
                    .load(hook, &btf)
                    .map_err(BpfError::program(&name))?;
                floors.push(name);
            }
        }
        for hook in HOOKS {
            btf_tracepoint(&mut ebpf, hook)?
                .load(hook, &btf)
                .map_err(BpfError::program(hook))?;
        }
        Ok(Self {
            ebpf,
            floors,
            links: Vec::new(),
            _stats: stats,
        })
    }

    /// Names of every program (real hooks, then the floor and the empty programs).
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        HOOKS
            .iter()
            .map(|h| (*h).to_owned())
            .chain(self.floors.iter().cloned())
            .collect()
    }

    /// Detaches everything, then attaches `names` in this order (programs on one tracepoint run
    /// in attach order, so the benchmark alternates which one runs first).
    ///
    /// # Errors
    /// A name not in the object, or a program the kernel refuses to attach.
    pub fn attach(&mut self, names: &[String]) -> Result<(), BpfError> {
        self.detach_all();
        for name in names {
            let link = btf_tracepoint(&mut self.ebpf, name)?
                .attach()
                .map_err(BpfError::program(name))?;
            self.links.push((name.clone(), link));
        }
        Ok(())
    }

    pub fn detach_all(&mut self) {
        for (name, link) in std::mem::take(&mut self.links) {
            if let Ok(program) = btf_tracepoint(&mut self.ebpf, &name) {
                let _ = program.detach(link);
            }
        }
    }

    /// The kernel's statistics of program `name` (`bpf_prog_info`).
    ///
    /// # Errors
    /// A name not in the object, or the kernel refusing `BPF_OBJ_GET_INFO_BY_FD`.
    pub fn stats(&self, name: &str) -> Result<ProgramStats, BpfError> {
        let program: &BtfTracePoint = self
            .ebpf
            .program(name)
            .ok_or_else(|| BpfError::MissingProgram(name.to_owned()))?
            .try_into()
            .map_err(BpfError::program(name))?;
        let info = program.info().map_err(BpfError::program(name))?;
        Ok(ProgramStats {
            id: info.id(),
            run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            run_count: info.run_count(),
            xlated_insns: info.size_translated().unwrap_or(0) / 8,
            verified_insns: info.verified_instruction_count().unwrap_or(0),
            jited_bytes: info.size_jitted(),
        })
    }
}
