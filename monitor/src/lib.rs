//! tcp-liveness agent.
//!
//! Rooms, bottom up; a module imports only from rooms below it (checked by the import-graph test
//! in `tests/integration/layering.rs`, whose `LEVELS` are this picture):
//!
//! ```text
//! model, clock, memory,       the vocabulary (Connection, Reason, label words, owner grouping,
//!   locks, periodic,          wire views), time, giving freed heap back, the one way to take a
//!   privileges, netns         lock, paced threads, capabilities, entering network namespaces
//!   ← verdict, bpf,           pure rules (Connection + Policy → reasons); the kernel's
//!     sock_diag, conntrack,   programs and maps (the only aya user); netlink dumps, exact
//!     kubernetes              queries and SOCK_DESTROY, tcp_info, /proc owners; one flow's
//!                             conntrack entry (ctnetlink); pods from cgroup paths and the
//!                             container runtime's labels
//!   ← scan                    table + counters → one Snapshot (pipeline, features, summary)
//!   ← act, forensics          what changes sockets: [probe], [[enforce]], [[remediate]];
//!                             the call stacks that opened suspect connections
//!   ← alerting                new/cleared suspects, alert groups, the Alertmanager push
//!   ← export                  /metrics, /connections, /alerts, /healthz
//!   ← config                  flags + file → validated settings
//!   ← error                   the agent's error (wraps config's and bpf's)
//!   ← agent                   the daemon: load, seed, wire the features, scan loop, serve, stop
//!   ← cli                     the command line (with main.rs, the only user of anyhow)
//! ```
//!
//! Rooms on one line are one level: they do not import each other.
//!
//! Only what `main.rs`, `examples/`, `tests/` and `xtask` use is `pub`; the rest is `pub(crate)`.

pub mod act;
mod agent;
pub mod alerting;
pub mod bpf;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conntrack;
mod error;
pub mod export;
pub mod forensics;
pub mod kubernetes;
mod locks;
mod memory;
pub mod model;
pub mod netns;
mod periodic;
mod privileges;
pub mod scan;
pub mod sock_diag;
pub mod verdict;
