//! The HTTP sides of the configuration: Alertmanager over HTTPS (`http_config`'s TLS and basic
//! auth) and the agent's own web settings (`--web.config.file`), as files `load` reads.

use super::{
    tests::{defaults, file_error, resolve},
    *,
};

/// HTTPS with Prometheus's `http_config` options: accepted as paths (read by `load`, not by the
/// pure `resolve`); the parts that only work together are checked to come together.
#[test]
fn https_alertmanager_with_tls_and_basic_auth() {
    let c = resolve(
        &RunArgs {
            alertmanager_password_file: Some("/etc/am/password".into()),
            ..RunArgs::default()
        },
        r#"
        alertmanager_url = "https://am.example:9093"
        alertmanager_ca_file = "/etc/am/ca.pem"
        alertmanager_cert_file = "/etc/am/client.pem"
        alertmanager_key_file = "/etc/am/client-key.pem"
        alertmanager_username = "tcp-liveness"
        "#,
    )
    .unwrap();
    assert_eq!(
        c.alertmanager_url.as_deref(),
        Some("https://am.example:9093")
    );
    let http = &c.alertmanager_http;
    assert_eq!(http.ca_file.as_deref(), Some(Path::new("/etc/am/ca.pem")));
    assert_eq!(
        http.key_file.as_deref(),
        Some(Path::new("/etc/am/client-key.pem"))
    );
    assert!(!http.insecure_skip_verify);
    let auth = http.basic_auth.as_ref().unwrap();
    assert_eq!(auth.username, "tcp-liveness");
    assert_eq!(auth.password_file, Path::new("/etc/am/password"));
    assert_eq!(
        defaults().alertmanager_http,
        crate::alerting::HttpConfig::default()
    );

    for (text, message) in [
        (
            r#"alertmanager_cert_file = "/c.pem""#,
            "alertmanager_cert_file is set without alertmanager_key_file (a client certificate needs its key)",
        ),
        (
            r#"alertmanager_username = "u""#,
            "alertmanager_username is set without alertmanager_password_file (basic auth needs both)",
        ),
        (
            r#"alertmanager_password_file = "/p""#,
            "alertmanager_password_file is set without alertmanager_username (basic auth needs both)",
        ),
    ] {
        assert_eq!(file_error(text), message);
    }
}

/// `load` reads the files the settings name, so a missing CA stops the agent with one line
/// (exit 2: a `ConfigError`) before anything is loaded.
#[test]
fn load_reads_the_alertmanager_files() {
    let args = RunArgs {
        alertmanager_url: Some("https://am:9093".into()),
        alertmanager_ca_file: Some("/nonexistent/ca.pem".into()),
        ..RunArgs::default()
    };
    let err = load(&args).unwrap_err().to_string();
    assert!(
        err.starts_with("alertmanager_ca_file /nonexistent/ca.pem: cannot read: "),
        "{err}"
    );
    let unused = RunArgs {
        alertmanager_url: Some(String::new()),
        ..args
    };
    assert!(
        load(&unused).is_ok(),
        "no Alertmanager: the files are not needed"
    );
}

#[test]
fn web_settings_from_defaults_file_and_flags() {
    let c = defaults();
    assert_eq!(
        (
            c.web_config_file.as_deref(),
            c.max_connections,
            c.max_connections_per_client
        ),
        (None, 512, 32)
    );
    assert_eq!(c.web, WebConfig::default(), "plain HTTP, no users");

    let text = "web_config_file = \"/etc/web.yml\"\nweb_max_connections = 100\n";
    let c = resolve(&RunArgs::default(), text).unwrap();
    assert_eq!(
        c.web_config_file.as_deref(),
        Some(Path::new("/etc/web.yml"))
    );
    assert_eq!(c.max_connections, 100);
    let flags = RunArgs {
        web_config_file: Some(String::new()),
        web_max_connections_per_client: Some("4".into()),
        ..RunArgs::default()
    };
    let c = resolve(&flags, text).unwrap();
    assert_eq!(
        c.web_config_file, None,
        "an empty flag turns off the file's"
    );
    assert_eq!((c.max_connections, c.max_connections_per_client), (100, 4));

    let err = resolve(&RunArgs::default(), "web_max_connections = 0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config /etc/x.toml: web_max_connections: 0 is out of range: must be between 1 and 65536"
    );
    assert_eq!(flag_name("web_config_file"), "web.config.file");
    assert_eq!(flag_name("close_wait_after"), "close-wait-after");
}

/// `load` reads the web config file after the rest, and names it in errors.
#[test]
fn load_reads_the_web_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(&path, format!("basic_auth_users:\n  prom: {hash}\n")).unwrap();
    let args = RunArgs {
        web_config_file: Some(path.display().to_string()),
        ..RunArgs::default()
    };
    let c = load(&args).unwrap();
    assert_eq!(c.web.users.keys().collect::<Vec<_>>(), ["prom"]);
    assert!(c.web.tls.is_none());

    std::fs::write(&path, "basic_auth_users: [prom]\n").unwrap();
    let err = load(&args).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "web config {}: basic_auth_users: ",
            path.display()
        )),
        "{err}"
    );
}
