//! The agent's integration tests, one binary with a module per feature: one link instead of one
//! per file. Most need root and the kernel's BTF (namespaces, BPF programs, the agent as a
//! process); without them they skip, and under `CI=true` they fail instead. They share the
//! host's kernel, so `cargo xtask test` runs them one at a time (`--test-threads=1`).
//!
//! Each test's set-up is a [`harness::scenario::Scenario`] ([`common`]): its own namespaces,
//! subnet and agent port, removed when the test ends, passed or failed.

mod common;

// Servers from Debian's packages, shared by the modules that talk to them.
mod am;
mod prom;

mod alertmanager;
mod bounded_output;
mod btf_offsets;
mod cli_incident;
mod config_errors;
mod deploy_manifests;
mod destroy;
mod enforce;
mod enforce_cgroup;
mod enforce_config;
mod enforce_reported;
mod enforce_two_agents;
mod fd_forecast;
mod half_close;
mod holders;
mod host_conntrack;
mod http_server;
mod idle_metrics;
mod kernel;
mod kernel_state;
mod kubernetes;
mod kubernetes_cri;
mod layering;
mod loss;
mod owners;
mod package;
mod path_timeout;
mod privileges;
mod probe;
mod probe_journal;
mod prometheus_e2e;
mod query_sockets;
mod reload;
mod remediate;
mod remediate_loss;
mod scan_health;
mod seed;
mod silence;
mod sockopt;
mod stacks;
mod verdicts;
mod walk;
