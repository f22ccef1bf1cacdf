use std::io::Write as _;

use super::*;

/// A self-signed EC certificate and its key (`openssl req -x509 -newkey ec`), for parsing only.
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBjjCCATWgAwIBAgIUU2VEyZkeTV5Zm8VZT50GcQwaLHIwCgYIKoZIzj0EAwIw\nHDEaMBgGA1UEAwwRdGNwLWxpdmVuZXNzIHRlc3QwIBcNMjYxMTMwMjMzMTMxWhgP\nMjEyNjExMDYyMzMxMzFaMBwxGjAYBgNVBAMMEXRjcC1saXZlbmVzcyB0ZXN0MFkw\nEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8bWyvE4QypC0z+CwouIZVyu4+nwvqsQP\nIG8v6mFL3IHtK87dHRMiZWfeGPqoeAU+3Aaurden8C/LAhPns7ob+qNTMFEwHQYD\nVR0OBBYEFC8a4/n/7HO4mn0fUAszoTZCBEhPMB8GA1UdIwQYMBaAFC8a4/n/7HO4\nmn0fUAszoTZCBEhPMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg\nPrK3BzONyYkyktzHbjEOQf3Z3xuh3AjNDIA2rQ4/VqkCIDAF8/jNi/tQf8NRvPc0\ngziJN5r3tF77CPRsmsRFZJ97\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgUj6/PNnBUxu7RvnL\nOs+5x4gy12DHmbf+PAgZezhIzFqhRANCAATxtbK8ThDKkLTP4LCi4hlXK7j6fC+q\nxA8gby/qYUvcge0rzt0dEyJlZ94Y+qh4BT7cBq6t16fwL8sCE+ezuhv6\n-----END PRIVATE KEY-----\n";

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn error(config: &HttpConfig) -> String {
    crate::model::format::error_chain(&config.load().unwrap_err())
}

#[test]
fn basic_auth_header_is_rfc_7617() {
    assert_eq!(
        basic_header("martin", "secret"),
        "Basic bWFydGluOnNlY3JldA=="
    );
}

#[test]
fn loads_ca_client_certificate_and_trimmed_password() {
    let (cert, key, password) = (file(CERT), file(KEY), file("  s3cret\n"));
    let config = HttpConfig {
        ca_file: Some(cert.path().into()),
        cert_file: Some(cert.path().into()),
        key_file: Some(key.path().into()),
        insecure_skip_verify: false,
        basic_auth: Some(BasicAuth {
            username: "am".into(),
            password_file: password.path().into(),
        }),
    };
    let loaded = config.load().unwrap();
    assert_eq!(loaded.roots.as_ref().map(Vec::len), Some(1));
    assert!(loaded.client_cert.is_some());
    assert_eq!(
        loaded.authorization(),
        Some(basic_header("am", "s3cret").as_str())
    );
    let _ = loaded.agent(Duration::from_secs(1));
    assert!(
        HttpConfig::default()
            .load()
            .unwrap()
            .authorization()
            .is_none()
    );
}

/// Each unusable file is named with its setting, on one line.
#[test]
fn unusable_files_name_the_setting() {
    let (cert, key, empty) = (file(CERT), file(KEY), file(" \n"));
    let with = |f: fn(&mut HttpConfig, PathBuf), path: &std::path::Path| {
        let mut config = HttpConfig::default();
        f(&mut config, path.into());
        error(&config)
    };
    let missing = std::path::Path::new("/nonexistent/ca.pem");
    let ca = with(|c, p| c.ca_file = Some(p), missing);
    assert!(
        ca.starts_with("alertmanager_ca_file /nonexistent/ca.pem: cannot read: "),
        "{ca}"
    );
    let ca = with(|c, p| c.ca_file = Some(p), key.path());
    assert!(ca.ends_with(": no PEM certificate in it"), "{ca}");
    let mut config = HttpConfig {
        cert_file: Some(cert.path().into()),
        key_file: Some(cert.path().into()),
        ..HttpConfig::default()
    };
    let no_key = error(&config);
    assert!(
        no_key.starts_with("alertmanager_key_file ")
            && no_key.ends_with("no PEM private key in it"),
        "{no_key}"
    );
    config = HttpConfig {
        basic_auth: Some(BasicAuth {
            username: "am".into(),
            password_file: empty.path().into(),
        }),
        ..HttpConfig::default()
    };
    let password = error(&config);
    assert!(
        password.starts_with("alertmanager_password_file ") && password.ends_with(": empty"),
        "{password}"
    );
    for message in [ca, no_key, password] {
        assert!(!message.contains('\n'), "{message}");
    }
}
