//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, scraping the agent
//! every second with a given rule file, its TSDB in a temporary directory; killed on drop. Also
//! `promtool`, and reading the dashboards' queries.

pub mod dashboards;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::support::wait_for;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// `deploy/prometheus/<name>` in the repository.
pub fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus")
        .join(name)
}

pub struct Prometheus {
    child: Child,
    pub base: String,
    // Removed on drop, after the process is gone (field order).
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (host:port) as job "tcp-liveness" every second and evaluates `rules` (the
    /// text of a rule file) every second.
    pub fn start(target: &str, rules: &str) -> Self {
        install();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rules.yml"), rules).expect("write rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: tcp-liveness\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let prom = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        wait_for("prometheus /-/ready", Duration::from_secs(30), || {
            ureq::get(&format!("{}/-/ready", prom.base)).call().ok()
        });
        prom
    }

    /// `GET /api/v1/<path>` with query parameters; the whole JSON answer, errors included (a
    /// query that does not parse answers 400 with `status: error` and the reason).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut request = ureq::get(&format!("{}/api/v1/{path}", self.base))
            .config()
            .http_status_as_error(false)
            .build();
        for (key, value) in params {
            request = request.query(*key, *value);
        }
        let body = request
            .call()
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: {e}"))
            .body_mut()
            .read_to_string()
            .expect("read API answer");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/v1/{path}: {e}: {body}"))
    }

    /// An instant query at the current time: `Ok(result)` (the `data.result` array), or the
    /// error Prometheus gave.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self.api("query", &[("query", expr)]);
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Alerts pending or firing now (`/api/v1/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        let answer = self.api("alerts", &[]);
        answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every rule Prometheus loaded, as `/api/v1/rules` lists it (with its parsed `query`).
    pub fn rules(&self) -> Vec<Value> {
        let answer = self.api("rules", &[]);
        let groups = answer["data"]["groups"].as_array().cloned();
        groups
            .unwrap_or_default()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs promtool with `args`, `stdin` on its standard input.
pub fn promtool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    // promtool reads stdin only for `check metrics`; for the others the write may hit a closed
    // pipe, which is fine.
    let _ = child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for promtool")
}

/// True when promtool is there, installing it if we may (root). Without it the non-root test
/// skips, except under CI=true, where a missing tool must not pass as a skip.
pub fn promtool_available(test: &str) -> bool {
    if Path::new(PROMTOOL).exists() {
        return true;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        install();
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {PROMTOOL} missing (`cargo xtask setup` installs it); CI=true makes this a failure"
    );
    eprintln!("SKIPPED {test}: {PROMTOOL} missing and not root to install it");
    false
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
    if Path::new(PROMETHEUS).exists() && Path::new(PROMTOOL).exists() {
        return;
    }
    eprintln!("installing prometheus");
    for args in [
        &["update", "-qq"][..],
        &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "prometheus",
        ],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(status.success(), "apt-get {args:?} failed");
    }
    // On a machine that runs systemd (and no policy-rc.d forbidding it), the package enables and
    // starts a system Prometheus on :9090 that nobody asked for: stop it. Our own instance uses a
    // free port either way.
    if Path::new("/run/systemd/system").exists() {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "prometheus"])
            .status();
    }
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} missing after install"
    );
}
