//! A server from Debian's packages (Prometheus, Alertmanager) started on a free loopback port
//! with its state in a temporary directory, ready when `/-/ready` answers; killed on drop.

use std::{path::Path, process::Command, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};

use crate::{command::ChildGuard, http, ports::free_port, wait};

/// How long a server may take to answer `/-/ready`.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running server; killed, then its directory removed, on drop.
#[derive(Debug)]
pub struct LocalServer {
    // Held for its Drop. Fields drop in order: the process goes before its directory.
    _child: ChildGuard,
    port: u16,
    dir: tempfile::TempDir,
}

impl LocalServer {
    /// Runs `binary` with `args(state_dir, port)` plus `--web.listen-address=127.0.0.1:PORT`
    /// and `--log.level=warn`, and waits until `GET /-/ready` answers 2xx.
    ///
    /// # Errors
    /// When no temporary directory or free port is available, or the server cannot start or is
    /// not ready within [`READY_WITHIN`] (it is killed then).
    pub fn start(
        binary: &str,
        args: impl FnOnce(&Path, u16) -> Vec<String>,
    ) -> anyhow::Result<Self> {
        Self::start_ready_when(binary, args, |port| http::get_ok(port, "/-/ready").is_ok())
    }

    /// [`start`](Self::start) for a server that plain HTTP cannot ask (TLS, basic auth):
    /// `ready(port)` says when it is ready.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_ready_when(
        binary: &str,
        args: impl FnOnce(&Path, u16) -> Vec<String>,
        ready: impl Fn(u16) -> bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let port = free_port()?;
        let child = Command::new(binary)
            .args(args(dir.path(), port))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {binary}"))?;
        let server = Self {
            _child: ChildGuard::new(child),
            port,
            dir,
        };
        let ready = wait::wait_for_optional(READY_WITHIN, || ready(port).then_some(()));
        if ready.is_none() {
            bail!("{binary} was not ready within {READY_WITHIN:?}");
        }
        Ok(server)
    }

    /// The port it listens on (loopback).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's state directory (removed on drop).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
