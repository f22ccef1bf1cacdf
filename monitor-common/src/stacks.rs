//! The user-space call stack that opened each connection (`[forensics] stacks`): the programs
//! record one stack id per connection into a `BPF_MAP_TYPE_STACK_TRACE` map (identical stacks
//! share one id), keyed by socket cookie; the agent reads and symbolizes the stacks of the
//! connections an operator looks at.
//!
//! - Active opens: `connect()`, at the socket's `CLOSE → SYN_SENT` transition, which runs in the
//!   calling process ([`STACK_CONNECT_PROGRAM`]), straight into [`STACK_OF_SOCKET_MAP`].
//! - Passive opens: the exit of `accept4()`/`accept()` ([`STACK_ACCEPT4_PROGRAM`],
//!   [`STACK_ACCEPT_PROGRAM`]) knows the new descriptor, not the socket: the stack goes into
//!   [`STACK_OF_ACCEPTED_MAP`] by (tgid, fd), and the `iter/task_file` pass, which visits every
//!   (process, descriptor, socket), moves it to [`STACK_OF_SOCKET_MAP`] under the socket's
//!   cookie when [`STACKS_ON_GLOBAL`] is set.
//!
//! With the option off nothing is attached, the maps are created with one entry each, and the
//! pass's branch is removed by the verifier (the global is read-only and 0).

/// The `tp_btf/inet_sock_set_state` program that records `connect()`'s stack.
pub const STACK_CONNECT_PROGRAM: &str = "stack_at_connect";
/// The `syscalls/sys_exit_accept4` tracepoint program that records `accept4()`'s stack.
pub const STACK_ACCEPT4_PROGRAM: &str = "stack_at_accept4";
/// The `syscalls/sys_exit_accept` tracepoint program that records `accept()`'s stack.
pub const STACK_ACCEPT_PROGRAM: &str = "stack_at_accept";

/// `BPF_MAP_TYPE_STACK_TRACE`: stack id → up to 127 user-space return addresses.
pub const CALL_STACKS_MAP: &str = "CALL_STACKS";
/// socket cookie → [`StackOrigin`].
pub const STACK_OF_SOCKET_MAP: &str = "STACK_OF_SOCKET";
/// [`accepted_key`] (tgid, fd) → [`StackOrigin`], until the next pass over the descriptors.
pub const STACK_OF_ACCEPTED_MAP: &str = "STACK_OF_ACCEPTED";
/// Name of the read-only `u32` global: non-zero when stacks are recorded (the descriptor pass
/// then joins accepted descriptors to their sockets).
pub const STACKS_ON_GLOBAL: &str = "STACKS_ON";

/// `BPF_F_USER_STACK` (include/uapi/linux/bpf.h): `bpf_get_stackid` walks the user stack.
pub const BPF_F_USER_STACK: u64 = 1 << 8;

/// Capacities of the maps when the option is on: distinct stacks, connections with a recorded
/// stack, and accepted descriptors waiting for a pass. A full map loses the new stack (the
/// connection then shows none); the agent prunes entries of connections that are gone.
pub const CALL_STACKS_CAPACITY: u32 = 8_192;
/// See [`CALL_STACKS_CAPACITY`].
pub const STACK_OF_SOCKET_CAPACITY: u32 = 65_536;
/// See [`CALL_STACKS_CAPACITY`].
pub const STACK_OF_ACCEPTED_CAPACITY: u32 = 16_384;

/// Words of the user stack copied from the stack pointer at the system call (see
/// [`StackOrigin::near_sp`]).
pub const NEAR_SP_WORDS: usize = 8;

/// Where a connection's stack was recorded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackOrigin {
    /// Id in [`CALL_STACKS_MAP`] (what `bpf_get_stackid` returned).
    pub stack_id: u32,
    /// The process whose stack it is (its addresses are in that process's mappings).
    pub tgid: u32,
    /// The first words of the user stack at the system call (0 where unreadable). The
    /// kernel's frame-pointer walk skips the caller of a system-call wrapper built without
    /// frame pointers (the C library's `connect`, `accept4`): that return address is in these
    /// words, and the agent looks for it there.
    pub near_sp: [u64; NEAR_SP_WORDS],
}

const _: () = assert!(size_of::<StackOrigin>() == 8 + 8 * NEAR_SP_WORDS);

/// The [`STACK_OF_ACCEPTED_MAP`] key of descriptor `fd` of process `tgid`.
#[must_use]
pub const fn accepted_key(tgid: u32, fd: u32) -> u64 {
    ((tgid as u64) << 32) | fd as u64
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers only, no padding (asserted above).
    unsafe impl aya::Pod for super::StackOrigin {}
}
