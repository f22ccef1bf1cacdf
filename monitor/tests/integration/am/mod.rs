//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, with a null
//! receiver, no clustering, and its state in a temporary directory; killed on drop. Plain HTTP,
//! or HTTPS with a client certificate and basic auth through its own `--web.config.file`.

use std::{path::Path, process::Command};

use harness::{apt, server::LocalServer, tls::TestPki};
use serde_json::Value;

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// Only routing matters: the null receiver notifies nobody; `group_wait` is short so alerts are
/// processed quickly.
const CONFIG: &str = r#"
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"#;

pub(crate) struct Alertmanager {
    _server: LocalServer,
    pub base: String,
    /// For HTTPS: the curl arguments that reach it (CA, client certificate, basic auth).
    curl_auth: Option<Vec<String>>,
}

/// The basic auth user the HTTPS Alertmanager accepts.
pub(crate) const USER: &str = "tcp-liveness";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

impl Alertmanager {
    pub(crate) fn start() -> Self {
        apt::ensure("prometheus-alertmanager", BINARY, "prometheus-alertmanager")
            .expect("install Alertmanager");
        let server = LocalServer::start(BINARY, |dir, _port| {
            let config = dir.join("alertmanager.yml");
            std::fs::write(&config, CONFIG).expect("write config");
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", dir.join("data").display()),
                // Empty: no gossip listener, so parallel runs cannot join each other's cluster.
                "--cluster.listen-address=".into(),
            ]
        })
        .expect("start Alertmanager");
        let base = server.url();
        Self {
            _server: server,
            base,
            curl_auth: None,
        }
    }

    /// Alertmanager serving HTTPS with `pki`'s server certificate, requiring a client
    /// certificate signed by `pki`'s client CA and basic auth ([`USER`], [`PASSWORD`]): its own
    /// `--web.config.file` (exporter-toolkit's format).
    pub(crate) fn start_tls(pki: &TestPki) -> Self {
        apt::ensure("prometheus-alertmanager", BINARY, "prometheus-alertmanager")
            .expect("install Alertmanager");
        // The lowest cost bcrypt allows: the test checks the check, not the hash's strength.
        let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
        let web_config = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  {USER}: {hash}\n",
            text(&pki.server_cert),
            text(&pki.server_key),
            text(&pki.client_ca),
        );
        let curl_auth = vec![
            "--cacert".into(),
            text(&pki.server_ca).into(),
            "--cert".into(),
            text(&pki.client_cert).into(),
            "--key".into(),
            text(&pki.client_key).into(),
            "--user".into(),
            format!("{USER}:{PASSWORD}"),
        ];
        let ready_args = curl_auth.clone();
        let server = LocalServer::start_ready_when(
            BINARY,
            |dir, _port| {
                let config = dir.join("alertmanager.yml");
                std::fs::write(&config, CONFIG).expect("write config");
                let web = dir.join("web.yml");
                std::fs::write(&web, &web_config).expect("write web config");
                vec![
                    format!("--config.file={}", config.display()),
                    format!("--web.config.file={}", web.display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    "--cluster.listen-address=".into(),
                ]
            },
            |port| curl(&ready_args, &format!("https://127.0.0.1:{port}/-/ready")).is_some(),
        )
        .expect("start Alertmanager with TLS");
        let base = format!("https://127.0.0.1:{}", server.port());
        Self {
            _server: server,
            base,
            curl_auth: Some(curl_auth),
        }
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager currently holds (resolved ones drop out).
    pub(crate) fn alerts(&self) -> Vec<Value> {
        let url = format!("{}/api/v2/alerts", self.base);
        let body = match &self.curl_auth {
            Some(auth) => curl(auth, &url).expect("GET /api/v2/alerts over TLS"),
            None => ureq::get(&url)
                .call()
                .expect("GET /api/v2/alerts")
                .body_mut()
                .read_to_string()
                .expect("read alerts"),
        };
        serde_json::from_str(&body).expect("alerts are JSON")
    }
}

/// `curl ARGS URL`'s body when it answers 2xx, else None.
fn curl(args: &[String], url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["--silent", "--fail", "--max-time", "5"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A temporary file's path as text, for command lines and config files.
pub(crate) fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}
