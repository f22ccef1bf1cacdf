//! Kernel side of tcp-liveness: BTF tracepoints that keep one `SockActivity` per TCP socket (a
//! slot of an array the agent maps into its memory, found by socket cookie through an index),
//! aggregated in place (no per-event records reach userspace).
//!
//! Each entry point is a thin wrapper; the work is in the modules:
//! - `state`: `inet_sock_set_state` — creates, updates and deletes table entries;
//! - `io`: `sock_send_length` / `sock_recv_length` — application send/receive and the owner;
//! - `peer`: `tcp_probe`, `tcp_retransmit_skb`, resets, socket errors, `tcp_destroy_sock`;
//! - `iter`: the `iter/tcp` iterator — the kernel's own state of every TCP socket of a network
//!   namespace, one record per socket, when the agent reads it (not on the packet path);
//! - `task_file`: the `iter/task_file` iterator — every TCP socket descriptor of every process,
//!   with its holder and the socket's own times and counters, in one pass over all namespaces;
//! - `sockopt`: the `iter/tcp` program that applies the agent's socket option changes
//!   (`bpf_setsockopt`; probes and keepalive enforcement);
//! - `stacks` (attached only with `[forensics] stacks`): the user-space call stack of each
//!   connection's `connect()` or `accept()`;
//! - `enforce`: the `sock_ops` program that gives new connections the keepalive timers and user
//!   timeout of their `[[enforce]]` policy;
//! - `maps`: every map, the slot protocol on the socket table (take, fill, index, publish,
//!   release; the used-slot counter) and the counters;
//! - `kfunc`: the kernel functions the programs call (`bpf_rdonly_cast`), as raw calls the agent
//!   resolves at load;
//! - `socket`: reads of kernel socket fields (BTF-typed loads at offsets from the `OFFSETS`
//!   global) and the socket cookie;
//! - `floor` (only with the `bench` feature): the benchmark's floor programs, which the agent's
//!   object does not contain.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![expect(
    internal_features,
    reason = "`atomic_xadd` (maps.rs): the BPF target has no compare-and-swap, so \
              `AtomicU64::fetch_add` is not offered; an atomic add whose result is unused is the \
              BPF_XADD instruction every kernel has"
)]
#![expect(
    clippy::inline_always,
    reason = "every helper is inlined into its program: each program stays one BPF function, with \
              no BPF-to-BPF call on the per-event path and no dependence on LLVM's heuristics"
)]

mod enforce;
#[cfg(feature = "bench")]
mod floor;
mod io;
mod iter;
mod kfunc;
mod maps;
mod peer;
mod socket;
mod sockopt;
mod stacks;
mod state;
mod task_file;
mod walk;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Never runs: a program that could reach it would not load (the verifier rejects the loop).
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
