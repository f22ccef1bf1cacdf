//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, with a null
//! receiver, no clustering, and its state in a temporary directory; killed on drop.

use harness::{apt, server::LocalServer};
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
}

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
        }
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager currently holds (resolved ones drop out).
    pub(crate) fn alerts(&self) -> Vec<Value> {
        let body = ureq::get(&format!("{}/api/v2/alerts", self.base))
            .call()
            .expect("GET /api/v2/alerts")
            .body_mut()
            .read_to_string()
            .expect("read alerts");
        serde_json::from_str(&body).expect("alerts are JSON")
    }
}
