//! A server from Debian's packages (Prometheus, Alertmanager) started by a test on a free loopback
//! port with its state in a temporary directory, ready when `/-/ready` answers; killed on drop.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::wait_for;

pub struct LocalServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    // Removed on drop, after the process is gone (field order).
    dir: tempfile::TempDir,
}

impl LocalServer {
    /// Runs `binary` with `args(state_dir, port)` plus `--web.listen-address` and waits until ready.
    pub fn start(binary: &str, args: impl FnOnce(&Path, u16) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(binary)
            .args(args(dir.path(), port))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        wait_for(
            &format!("{binary} /-/ready"),
            Duration::from_secs(30),
            || ureq::get(&format!("{}/-/ready", server.base)).call().ok(),
        );
        server
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now (the kernel picks it; a race with another process is unlikely enough).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Installs a Debian package when `binary` is missing (`cargo xtask setup` normally has done it).
/// On a machine that runs systemd the package also enables and starts a system service nobody
/// asked for (`service`, e.g. Prometheus on :9090): stop it. Our instances use free ports.
pub fn apt_install(package: &str, binary: &str, service: &str) {
    if Path::new(binary).exists() {
        return;
    }
    eprintln!("installing {package}");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "--no-install-recommends", package],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(status.success(), "apt-get {args:?} failed");
    }
    if Path::new("/run/systemd/system").exists() {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", service])
            .status();
    }
    assert!(
        Path::new(binary).exists(),
        "{binary} missing after installing {package}"
    );
}
