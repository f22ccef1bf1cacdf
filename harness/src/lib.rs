//! Dev-only support shared by tcp-liveness's kernel tests (`monitor/tests`), the benchmark
//! (`cargo xtask bench`) and the demo (`cargo xtask demo`): one copy of everything they need to
//! set up a host, drive real connections and read the agent.
//!
//! - [`scenario`]: one kernel test's set-up: the gate, namespaces with allocated names and
//!   subnet, peers, and agents on free ports; removed on drop.
//! - [`privilege`]: the one gate: root, kernel BTF or a tool, or skip with a message; under
//!   `CI=true` a missing one fails instead.
//! - [`netns`]: network namespaces and veth pairs, iptables DROP rules; removed on drop.
//! - [`agent`]: the `tcp-liveness` binary as a child process: start (optionally confined to a
//!   capability set), wait until it serves, HTTP GET, metrics, stop with SIGTERM.
//! - [`peer`]: `tcp_peer.py`, the TCP peers the tests and the demo run inside namespaces.
//! - [`ss`]: the kernel's own view of sockets (`ss`), the tests' oracle.
//! - [`bpf`]: the BPF maps a process holds (fdinfo, bpftool).
//! - [`cgroup`]: a cgroup v2 directory the test creates, and peers started inside it.
//! - [`containerd`]: a containerd of the test's own, and containers shaped as a Kubernetes
//!   node's (CRI labels, systemd-driver cgroup paths) in the test's network namespaces.
//! - [`capabilities`]: the capability sets of each thread of a process (`/proc/PID/task`).
//! - [`server`]: a server from Debian's packages (Prometheus, Alertmanager) on a free port.
//! - [`tls`]: test certificates (a CA, server and client certificates), made with `openssl`.
//! - [`http`], [`metrics`], [`ports`], [`wait`], [`command`], [`apt`]: the small pieces the
//!   others are made of.
//!
//! The harness drives the agent as a process and never links the `monitor` crate. Errors are
//! `anyhow` (xtask reports them); test-only conveniences that panic say so in their docs.
//! Every guard (namespace, process, server) removes what it created in `Drop`, so a failing
//! assertion or an error still cleans up.

// Every public item says what it takes, returns and fails with: the harness serves three users.
#![warn(missing_docs)]

pub mod agent;
pub mod apt;
pub mod bpf;
pub mod capabilities;
pub mod cgroup;
pub mod command;
pub mod containerd;
pub mod containerd_cri;
pub mod http;
pub mod metrics;
pub mod netns;
pub mod peer;
pub mod ports;
pub mod privilege;
pub mod scenario;
pub mod server;
pub mod ss;
pub mod tls;
pub mod wait;
