//! tcp-liveness agent.
//!
//! Rooms, bottom up; a module imports only from rooms below it (checked by the import-graph test
//! in `tests/layering.rs`):
//!
//! ```text
//! model                       Connection, Reason, label words, owner grouping, wire views
//!   ← verdict                 pure rules: Connection + Policy → reasons
//!   ← probes, seed, clock     the kernel: programs and maps (the only aya user), sock_diag, time
//!   ← scan                    table + counters → one Snapshot (pipeline, summary, /proc owners)
//!   ← alerting                new/cleared suspects, alert groups, the Alertmanager push
//!   ← export                  /metrics, /connections, /alerts, /healthz
//!   ← config                  flags + file → validated settings
//!   ← error                   the agent's error (wraps config's and probes')
//!   ← agent                   the daemon: load, seed, scan loop, serve, stop
//!   ← cli                     the command line (with main.rs, the only user of anyhow)
//! ```
//!
//! `memory` (giving freed heap back), `locks` (the one way to take a lock) and `privileges`
//! (capabilities: the start-up check and the per-thread drop) sit beside `clock` at the bottom.

//!
//! Only what `main.rs`, `examples/`, `tests/` and `xtask` use is `pub`; the rest is `pub(crate)`.

mod agent;
pub mod act;
pub mod alerting;
pub mod cli;
pub mod clock;
pub mod config;
mod error;
pub mod export;
mod locks;
mod memory;
pub mod model;
mod periodic;
mod privileges;
pub mod bpf;
pub mod scan;
pub mod netns;
pub mod sock_diag;
pub mod verdict;
