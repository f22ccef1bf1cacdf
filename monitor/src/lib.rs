//! tcp-liveness agent. The data path, in module order:
//! `probes` (load and attach the kernel programs; the only module touching aya) →
//! `seed` (sock_diag: sockets that predate the agent, listeners) →
//! `table` (kernel entry → [`table::Connection`] → [`table::Snapshot`]: one pipeline, pure data) →
//! `export` (Prometheus metrics, HTTP routes, JSON views) ;
//! `agent` runs the loop, `cli` parses the command line, `config` validates settings, `memory`
//! gives freed heap back after start-up and after each scan.

pub mod agent;
pub mod cli;
pub mod config;
pub mod export;
pub mod memory;
pub mod probes;
pub mod seed;
pub mod table;
pub mod verdict;
