//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, scraping the agent
//! every second with a given rule file, its TSDB in a temporary directory; killed on drop. Also
//! `promtool`, and reading the dashboards' queries.

pub(crate) mod dashboards;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use harness::{
    apt,
    privilege::{is_root, skip},
    server::LocalServer,
};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// `deploy/prometheus/<name>` in the repository.
pub(crate) fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus")
        .join(name)
}

pub(crate) struct Prometheus {
    _server: LocalServer,
    pub base: String,
}

impl Prometheus {
    /// Scrapes `target` (host:port) as job "tcp-liveness" every second and evaluates `rules` (the
    /// text of a rule file) every second.
    pub(crate) fn start(target: &str, rules: &str) -> Self {
        Self::start_scraping(target, rules, "")
    }

    /// As [`start`](Self::start), with more settings for the scrape job: YAML lines indented
    /// by four spaces, e.g. `scheme`, `tls_config`, `basic_auth`.
    pub(crate) fn start_scraping(target: &str, rules: &str, job_settings: &str) -> Self {
        install();
        let server = LocalServer::start(PROMETHEUS, |dir, _port| {
            std::fs::write(dir.join("rules.yml"), rules).expect("write rules");
            let config = format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [rules.yml]\n\
                 scrape_configs:\n  - job_name: tcp-liveness\n{job_settings}    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            );
            let config_path = dir.join("prometheus.yml");
            std::fs::write(&config_path, config).expect("write config");
            vec![
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
            ]
        })
        .expect("start Prometheus");
        let base = server.url();
        Self {
            _server: server,
            base,
        }
    }

    /// `GET /api/v1/<path>` with query parameters; the whole JSON answer, errors included (a
    /// query that does not parse answers 400 with `status: error` and the reason).
    pub(crate) fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
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
    pub(crate) fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
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
    pub(crate) fn alerts(&self) -> Vec<Value> {
        let answer = self.api("alerts", &[]);
        answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every rule Prometheus loaded, as `/api/v1/rules` lists it (with its parsed `query`).
    pub(crate) fn rules(&self) -> Vec<Value> {
        let answer = self.api("rules", &[]);
        let groups = answer["data"]["groups"].as_array().cloned();
        groups
            .unwrap_or_default()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Runs promtool with `args`, `stdin` on its standard input.
pub(crate) fn promtool(args: &[&str], stdin: &str) -> Output {
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
pub(crate) fn promtool_available(test: &str) -> bool {
    if Path::new(PROMTOOL).exists() {
        return true;
    }
    if is_root() {
        install();
        return true;
    }
    skip(
        test,
        &format!("{PROMTOOL} missing (`cargo xtask setup` installs it) and not root to install it"),
    )
}

/// Installs Debian's prometheus package (server and promtool) when missing.
fn install() {
    apt::ensure("prometheus", PROMETHEUS, "prometheus").expect("install Prometheus");
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} missing after install"
    );
}
