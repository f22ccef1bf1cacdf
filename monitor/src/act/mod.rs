//! The actuators: the features that change other processes' sockets, above the scan that only
//! reads them. [`probe`] (`[probe]`: keepalive probes of quiet connections) and [`enforce`]
//! (`[[enforce]]`: keepalive and user-timeout policies) join the scans' pipeline as
//! [`Feature`](crate::scan::Feature)s; [`remediate`] (`[[remediate]]`: `SOCK_DESTROY` of
//! confirmed-dead connections) runs on each snapshot's suspects after the scan. Each keeps its
//! pure policy matcher beside it (`policy.rs`).
//!
//! A new feature is one folder here and one registration line where the agent is wired.

pub mod enforce;
pub mod probe;
pub mod remediate;
