//! The agent's error: every way `tcp-liveness run` can fail, each keeping its cause as
//! [`source`](std::error::Error::source) (printed as a `: `-separated chain on one line).
//! Rooms below keep their own error enums ([`ConfigError`], [`BpfError`], `netns::NetnsError`,
//! `sock_diag::SockDiagError`, `alerting::client::PushError`); `anyhow` appears only in `main.rs`
//! and the command-line front end (`cli`).

use std::{io, net::SocketAddr};

use crate::{bpf::BpfError, config::ConfigError};

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A bad flag or config value (the binary exits 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The kernel refused the programs as a whole (one refused hook is not an error).
    #[error("loading the kernel programs")]
    Bpf(#[from] BpfError),
    /// Start-up lacks a capability (named), or the kernel refused to lower them.
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    /// The `--listen` address is in use or not on this host.
    #[error("--listen {addr}: cannot bind")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Alerting could not start: an unusable CA, certificate, key or password file, or its thread.
    #[error("setting up alerting")]
    Alerting(#[from] crate::alerting::AlertingError),
    /// A helper thread (named) could not be started.
    #[error("starting the {name} thread")]
    Thread {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    /// The tokio runtime or its signal handlers could not be set up.
    #[error("setting up the async runtime")]
    Runtime(#[source] io::Error),
    /// The HTTP server failed while serving.
    #[error("serving HTTP")]
    Http(#[source] io::Error),
    /// A task of the agent panicked.
    #[error("a task of the agent stopped unexpectedly")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Whether the operator's input is at fault, not the host: a bad setting, a `--listen`
    /// address in use or not on this host, or a capability the service was not given. The binary
    /// exits 2 on these, as clap does for a bad command line, so a supervisor can tell them from
    /// a failure worth retrying.
    pub(crate) fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Config(_)
                | Self::Bind { .. }
                | Self::Privileges(crate::privileges::PrivilegeError::Missing(_))
        )
    }
}
