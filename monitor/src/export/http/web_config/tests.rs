use harness::tls::TestPki;

use super::*;

fn pki() -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path()).unwrap();
    (dir, pki)
}

fn error(text: &str) -> String {
    let message = WebConfig::parse(text, Path::new("/nonexistent")).unwrap_err();
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

#[test]
fn empty_file_or_no_sections_is_plain_http_without_users() {
    for text in [
        "",
        "\n",
        "basic_auth_users: {}\n",
        "tls_server_config: {}\n",
    ] {
        assert_eq!(
            WebConfig::parse(text, Path::new("/")).unwrap(),
            WebConfig::default(),
            "{text:?}"
        );
    }
}

#[test]
fn node_exporter_file_loads_with_paths_relative_to_it() {
    let (dir, pki) = pki();
    let hash = bcrypt::hash("secret", 4).unwrap();
    let text = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: {}\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n  \
         min_version: TLS13\n\
         basic_auth_users:\n  prometheus: {hash}\n",
        pki.server_key.display()
    );
    let path = dir.path().join("web.yml");
    std::fs::write(&path, text).unwrap();
    let config = WebConfig::load(&path).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(
        tls.settings,
        TlsSettings {
            cert_file: pki.server_cert.clone(),
            key_file: pki.server_key.clone(),
            client_auth: ClientAuth::RequireAndVerify(pki.client_ca.clone()),
            min_version: TlsVersion::Tls13,
            max_version: TlsVersion::Tls13,
        }
    );
    assert_eq!(tls.server.alpn_protocols, [b"http/1.1".to_vec()]);
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.users["prometheus"], hash);
}

#[test]
fn unknown_and_unsupported_keys_are_named() {
    assert!(
        error("tls_server_config:\n  cert_fle: a\n").contains("unknown field `cert_fle`"),
        "{}",
        error("tls_server_config:\n  cert_fle: a\n")
    );
    assert!(error("basic_auth_user:\n  a: b\n").contains("unknown field `basic_auth_user`"));
    assert_eq!(
        error("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
        "tls_server_config.cipher_suites is not supported by tcp-liveness (rustls chooses them, modern ones only)"
    );
    assert_eq!(
        error("http_server_config:\n  http2: false\n"),
        "http_server_config is not supported by tcp-liveness (the agent serves HTTP/1.1 only)"
    );
}

#[test]
fn bad_values_are_named() {
    assert!(
        error("basic_auth_users:\n  bob: plaintext\n")
            .starts_with("basic_auth_users: bob: not a bcrypt hash (")
    );
    assert_eq!(
        error("tls_server_config:\n  key_file: k\n"),
        "tls_server_config.cert_file is missing"
    );
    assert_eq!(
        error("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n"),
        "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert (use RequireAndVerifyClientCert)"
    );
    assert_eq!(
        error(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n"
        ),
        "tls_server_config.client_auth_type RequireAndVerifyClientCert needs client_ca_file"
    );
    assert!(
        error("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n")
            .starts_with("tls_server_config.min_version TLS10 is not supported")
    );
    assert_eq!(
        error(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n"
        ),
        "tls_server_config.min_version is above tls_server_config.max_version"
    );
}

#[test]
fn certificates_that_cannot_be_used_are_refused_at_load() {
    let (dir, pki) = pki();
    let parse = |cert: &Path, key: &Path| {
        let text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        );
        WebConfig::parse(&text, dir.path())
    };
    assert!(parse(&pki.server_cert, &pki.server_key).is_ok());
    let missing = dir.path().join("absent.crt");
    let err = parse(&missing, &pki.server_key).unwrap_err();
    assert!(
        err.starts_with(&format!("cert_file {}: ", missing.display())),
        "{err}"
    );
    // A key that is not the certificate's.
    let err = parse(&pki.server_cert, &pki.client_key).unwrap_err();
    assert!(err.starts_with("cert_file "), "{err}");
    // A file with no certificate in it.
    let err = parse(&pki.server_key, &pki.server_key).unwrap_err();
    assert!(err.ends_with("no PEM certificate in it"), "{err}");
}
