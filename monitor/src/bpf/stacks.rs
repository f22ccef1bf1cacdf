//! The call stacks that opened connections (`[forensics] stacks`), as the kernel programs
//! record them (`monitor-ebpf/src/stacks.rs`): which stack each socket cookie has, the stacks'
//! return addresses, and the pruning of entries whose connection is gone. Symbolizing is
//! elsewhere (`crate::forensics`); this is only the maps and the programs' attachment.

use std::collections::HashSet;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap, MapData, StackTraceMap},
    programs::TracePoint,
};
use monitor_common::stacks::{
    CALL_STACKS_CAPACITY, CALL_STACKS_MAP, STACK_ACCEPT_PROGRAM, STACK_ACCEPT4_PROGRAM,
    STACK_CONNECT_PROGRAM, STACK_OF_ACCEPTED_CAPACITY, STACK_OF_ACCEPTED_MAP,
    STACK_OF_SOCKET_CAPACITY, STACK_OF_SOCKET_MAP, STACKS_ON_GLOBAL, StackOrigin,
};

use super::{BpfError, HookStatus, btf_tracepoint, hook_status, maps::take};

/// The stack maps taken out of the loaded object, with what the last prune left as
/// candidates (see [`StackTables::prune`]).
pub struct StackTables {
    stacks: StackTraceMap<MapData>,
    of_socket: HashMap<MapData, u64, StackOrigin>,
    of_accepted: HashMap<MapData, u64, StackOrigin>,
    /// Cookies and stack ids the last prune found unused: removed if still unused at the next.
    unused_cookies: HashSet<u64>,
    unused_stacks: HashSet<u32>,
}

/// Sizes the stack maps and sets the programs' switch: with `on` false the maps keep their
/// one entry and the descriptor pass's join is dead code the verifier removes.
#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "the loader keeps a reference to the global's value until it loads the object"
)]
pub(super) fn configure<'a>(loader: &mut EbpfLoader<'a>, on: &'a u32) {
    loader.override_global(STACKS_ON_GLOBAL, on, true);
    if *on != 0 {
        loader
            .map_max_entries(CALL_STACKS_MAP, CALL_STACKS_CAPACITY)
            .map_max_entries(STACK_OF_SOCKET_MAP, STACK_OF_SOCKET_CAPACITY)
            .map_max_entries(STACK_OF_ACCEPTED_MAP, STACK_OF_ACCEPTED_CAPACITY);
    }
}

/// Attaches the three stack programs (each reported as a hook), and takes the maps.
///
/// # Errors
/// A map missing from the object or of the wrong type. A program the kernel refuses is only
/// reported (its stacks are then not recorded).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    hooks: &mut Vec<HookStatus>,
) -> Result<StackTables, BpfError> {
    let connect = btf_tracepoint(ebpf, STACK_CONNECT_PROGRAM).and_then(|program| {
        let failed = BpfError::program(STACK_CONNECT_PROGRAM);
        program.load("inet_sock_set_state", btf).map_err(failed)?;
        let failed = BpfError::program(STACK_CONNECT_PROGRAM);
        program.attach().map(drop).map_err(failed)
    });
    hooks.push(hook_status(STACK_CONNECT_PROGRAM, connect.as_ref().err()));
    for (program, tracepoint) in [
        (STACK_ACCEPT4_PROGRAM, "sys_exit_accept4"),
        (STACK_ACCEPT_PROGRAM, "sys_exit_accept"),
    ] {
        let attached = attach_syscall_exit(ebpf, program, tracepoint);
        hooks.push(hook_status(program, attached.as_ref().err()));
    }
    Ok(StackTables {
        stacks: take(ebpf, CALL_STACKS_MAP)?,
        of_socket: take(ebpf, STACK_OF_SOCKET_MAP)?,
        of_accepted: take(ebpf, STACK_OF_ACCEPTED_MAP)?,
        unused_cookies: HashSet::new(),
        unused_stacks: HashSet::new(),
    })
}

/// Loads `program` and attaches it to the `syscalls/<tracepoint>` tracepoint.
fn attach_syscall_exit(
    ebpf: &mut Ebpf,
    program: &'static str,
    tracepoint: &str,
) -> Result<(), BpfError> {
    let found: &mut TracePoint = super::program_of(ebpf, program)?;
    found.load().map_err(BpfError::program(program))?;
    found
        .attach("syscalls", tracepoint)
        .map(drop)
        .map_err(BpfError::program(program))
}

impl StackTables {
    /// Where the stack of the socket `cookie` was recorded; None when none was (the socket
    /// predates the option, its opening was not in a process, a map was full) or, for an
    /// accepted socket, before the descriptor pass that joins it.
    #[must_use]
    pub fn origin(&self, cookie: u64) -> Option<StackOrigin> {
        self.of_socket.get(&cookie, 0).ok()
    }

    /// The return addresses of stack `stack_id`, innermost first; None when the stack is gone.
    #[must_use]
    pub fn addresses(&self, stack_id: u32) -> Option<Vec<u64>> {
        let trace = self.stacks.get(&stack_id, 0).ok()?;
        Some(trace.frames().iter().map(|frame| frame.ip).collect())
    }

    /// Removes the entries of connections that are gone: cookies not in `live` (and accepted
    /// descriptors of processes `alive` says are gone), then stacks no entry refers to. An entry
    /// is removed only when two prunes in a row find it unused: a connection opened while the
    /// scan that made `live` ran is in the next prune's. Returns how many entries were removed.
    pub fn prune(&mut self, live: &HashSet<u64>, alive: impl Fn(u32) -> bool) -> usize {
        let mut removed = 0;
        let mut referenced = HashSet::new();
        let mut unused = HashSet::new();
        let entries: Vec<(u64, StackOrigin)> = self.of_socket.iter().flatten().collect();
        for (cookie, origin) in entries {
            if live.contains(&cookie) {
                referenced.insert(origin.stack_id);
            } else if self.unused_cookies.contains(&cookie) {
                removed += usize::from(self.of_socket.remove(&cookie).is_ok());
            } else {
                unused.insert(cookie);
                referenced.insert(origin.stack_id);
            }
        }
        self.unused_cookies = unused;
        let accepted: Vec<(u64, StackOrigin)> = self.of_accepted.iter().flatten().collect();
        for (key, origin) in accepted {
            if alive(origin.tgid) {
                referenced.insert(origin.stack_id);
            } else {
                removed += usize::from(self.of_accepted.remove(&key).is_ok());
            }
        }
        let ids: Vec<u32> = self.stacks.stack_ids().flatten().collect();
        let mut unused = HashSet::new();
        for id in ids.into_iter().filter(|id| !referenced.contains(id)) {
            if self.unused_stacks.contains(&id) {
                removed += usize::from(self.stacks.remove(&id).is_ok());
            } else {
                unused.insert(id);
            }
        }
        self.unused_stacks = unused;
        removed
    }
}
