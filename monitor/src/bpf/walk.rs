//! The slot walk (`monitor-ebpf/src/walk.rs`): the kernel's own values of every socket the table
//! tracks, orphans and the accept queue included, read by a program that walks the table's
//! slots, run by the agent with `BPF_PROG_TEST_RUN` a [`WALK_CHUNK`] of slots at a time. Its cost
//! follows the tracked sockets (about 0.16 µs a slot here), where the descriptor pass
//! ([`super::task_file`]) costs about 0.6 µs a descriptor: the walk reads no holder, so the agent
//! runs the descriptor pass less often where it has the walk.
//!
//! Needs `bpf_loop` (Linux 5.17) and `bpf_rdonly_cast` (6.2): [`Programs::slot_walker`] loads it
//! only where the programs read `tcp_sock` through the cast ([`TcpSockReads::Cast`]).

use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
    sync::{Arc, Mutex},
};

use aya::programs::RawTracePoint;
use monitor_common::holders::{HeldSocket, SLOT_WALK_PROGRAM, WALK_CHUNK, WALK_RECORDS_MAP};

use super::{
    BpfError, Programs, TcpSockReads,
    maps::{Mapping, SocketTable},
};

/// The loaded walk program and its output array, mapped. One walk runs at a time (a second
/// caller waits): the program writes its records into the one array.
pub struct SlotWalker {
    program: OwnedFd,
    records: Mutex<Mapping>,
    table: Arc<SocketTable>,
}

impl std::fmt::Debug for SlotWalker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotWalker").finish_non_exhaustive()
    }
}

impl Programs {
    /// Loads (verifies) the slot walk program and maps its output.
    ///
    /// # Errors
    /// [`BpfError::Unsupported`] where the programs read `tcp_sock` with probe reads (no
    /// `bpf_rdonly_cast`: before Linux 6.2, where the walk would read nothing);
    /// [`BpfError::MissingProgram`]/[`BpfError::MissingMap`] for an object without it; the
    /// verifier's refusal ([`BpfError::Program`], e.g. no `bpf_loop` before 5.17);
    /// [`BpfError::Mmap`] when its records cannot be mapped.
    pub fn slot_walker(&mut self) -> Result<SlotWalker, BpfError> {
        if self.tcp_sock_reads != TcpSockReads::Cast {
            return Err(BpfError::Unsupported(
                "the slot walk needs bpf_rdonly_cast (Linux 6.2)",
            ));
        }
        let name = SLOT_WALK_PROGRAM;
        let program: &mut RawTracePoint = super::program_of(&mut self.ebpf, name)?;
        program.load().map_err(BpfError::program(name))?;
        let fd = program.fd().map_err(BpfError::program(name))?;
        let program = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| BpfError::KernelState {
                step: "dup of the walk program",
                source,
            })?;
        let map = super::maps::array_map(&mut self.ebpf, WALK_RECORDS_MAP)?;
        let records = Mapping::new(
            map.fd().as_fd(),
            0,
            WALK_CHUNK as usize * size_of::<HeldSocket>(),
        )
        .map_err(|source| BpfError::Mmap {
            name: WALK_RECORDS_MAP,
            source,
        })?;
        Ok(SlotWalker {
            program,
            records: Mutex::new(records),
            table: self.maps.reader(),
        })
    }
}

impl SlotWalker {
    /// Calls `f` with the record of every tracked socket the walk could read, in slot order
    /// ([`HeldSocket::slot`] set, `tgid`, `fd` and `netns` 0), now. Slots whose socket changed
    /// or went while the walk ran are left out; a socket added meanwhile may be.
    ///
    /// # Errors
    /// [`BpfError::KernelState`]: `BPF_PROG_TEST_RUN` failed; the records of the runs before
    /// have been passed to `f`.
    pub fn for_each(&self, mut f: impl FnMut(&HeldSocket)) -> Result<(), BpfError> {
        let records = crate::locks::lock(&self.records);
        let used = self.table.slots_handed_out();
        let mut first = 0;
        while first < used {
            let count = (used - first).min(WALK_CHUNK);
            sys::test_run_raw_tp(self.program.as_fd(), &[first.into(), count.into()]).map_err(
                |source| BpfError::KernelState {
                    step: "BPF_PROG_TEST_RUN of the slot walk",
                    source,
                },
            )?;
            #[expect(
                clippy::cast_ptr_alignment,
                reason = "mmap returns page-aligned memory"
            )]
            let base = records.ptr().cast::<HeldSocket>();
            for i in 0..count as usize {
                // SAFETY: `i < count <= WALK_CHUNK`, the mapping's length in records; the run
                // that wrote them has returned, and this thread holds the walk's lock.
                let record = unsafe { base.add(i).read_volatile() };
                if record.cookie != 0 {
                    f(&record);
                }
            }
            first += count;
        }
        Ok(())
    }
}

mod sys {
    use std::os::fd::{AsRawFd as _, BorrowedFd};

    use super::io;

    /// `BPF_PROG_TEST_RUN` (`enum bpf_cmd`).
    const BPF_PROG_TEST_RUN: libc::c_long = 10;

    /// The `test` member of `union bpf_attr`, up to `ctx_out`.
    #[repr(C)]
    #[derive(Default)]
    struct TestRun {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
    }

    /// Runs the raw tracepoint program `program` once on this CPU with `args` as its arguments.
    pub(super) fn test_run_raw_tp(program: BorrowedFd<'_>, args: &[u64]) -> io::Result<()> {
        let attr = TestRun {
            prog_fd: u32::try_from(program.as_raw_fd()).unwrap_or(u32::MAX),
            ctx_size_in: u32::try_from(size_of_val(args)).unwrap_or(u32::MAX),
            ctx_in: args.as_ptr() as u64,
            ..TestRun::default()
        };
        // SAFETY: `attr` is an initialised repr(C) prefix of `union bpf_attr` of the size passed;
        // `ctx_in` points to `ctx_size_in` readable bytes that outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                std::ptr::from_ref(&attr),
                size_of::<TestRun>(),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
