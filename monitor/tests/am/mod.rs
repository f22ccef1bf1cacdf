//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, with a null
//! receiver, no clustering, and its state in a temporary directory; killed on drop.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::support::wait_for;

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// Only routing matters: the null receiver notifies nobody; group_wait is short so alerts are
/// processed quickly.
const CONFIG: &str = r#"
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"#;

pub struct Alertmanager {
    child: Child,
    pub base: String,
    // Removed on drop, after the process is gone (field order).
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start() -> Self {
        install();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write config");
        let port = free_port();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no gossip listener, so parallel runs cannot join each other's cluster.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn prometheus-alertmanager");
        let am = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        wait_for("alertmanager /-/ready", Duration::from_secs(30), || {
            ureq::get(&format!("{}/-/ready", am.base)).call().ok()
        });
        am
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager currently holds (resolved ones drop out).
    pub fn alerts(&self) -> Vec<Value> {
        let body = ureq::get(&format!("{}/api/v2/alerts", self.base))
            .call()
            .expect("GET /api/v2/alerts")
            .body_mut()
            .read_to_string()
            .expect("read alerts");
        serde_json::from_str(&body).expect("alerts are JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now (the kernel picks it; a race with another process is unlikely enough).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Installs the Debian package when missing (`cargo xtask setup` normally has done it).
fn install() {
    if Path::new(BINARY).exists() {
        return;
    }
    eprintln!("installing prometheus-alertmanager");
    for args in [
        &["update", "-qq"][..],
        &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "prometheus-alertmanager",
        ],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(status.success(), "apt-get {args:?} failed");
    }
    assert!(Path::new(BINARY).exists(), "{BINARY} missing after install");
}
