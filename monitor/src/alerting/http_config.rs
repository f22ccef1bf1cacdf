//! How the agent reaches Alertmanager over HTTPS: the part of Prometheus's `http_config` that a
//! push needs (`tls_config`: `ca_file`, `cert_file`, `key_file`, `insecure_skip_verify`;
//! `basic_auth`: `username`, `password_file`), so an operator can reuse what Prometheus uses.
//! Files are read once, at start ([`HttpConfig::load`]); the TLS stack is rustls (ring).

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// The settings, as paths (`alertmanager_*` config keys and flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpConfig {
    /// PEM CA certificates Alertmanager's certificate must chain to; None: the built-in public
    /// roots (Mozilla's, from `webpki-roots`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for TLS client authentication, with `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only, as in Prometheus).
    pub insecure_skip_verify: bool,
    pub basic_auth: Option<BasicAuth>,
}

/// `basic_auth`: the password comes from a file, never from a flag (it would show in `ps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    /// Read at start; surrounding whitespace (the trailing newline) is trimmed, as Prometheus
    /// does.
    pub password_file: PathBuf,
}

/// A file named by a setting that cannot be used; the message names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    #[error("{key} {}: cannot read", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} {}: {problem}", path.display())]
    Content {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
}

/// What [`HttpConfig::load`] read: ready to build clients from.
#[derive(Clone, Debug)]
pub struct LoadedHttpConfig {
    roots: Option<Vec<Certificate<'static>>>,
    client_cert: Option<ClientCert>,
    insecure_skip_verify: bool,
    /// The `Authorization` header value, `Basic …`.
    authorization: Option<String>,
}

impl HttpConfig {
    /// Reads and parses the files the settings name.
    ///
    /// # Errors
    /// A file that cannot be read, has no PEM certificate (CA, client certificate) or private key
    /// (key file) in it, or an empty password file.
    pub fn load(&self) -> Result<LoadedHttpConfig, HttpConfigError> {
        let roots = self
            .ca_file
            .as_ref()
            .map(|path| certificates("alertmanager_ca_file", path))
            .transpose()?;
        let client_cert = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(ClientCert::new_with_certs(
                &certificates("alertmanager_cert_file", cert)?,
                private_key("alertmanager_key_file", key)?,
            )),
            // config checks they come together; without both, no client certificate.
            _ => None,
        };
        let authorization = self.basic_auth.as_ref().map(basic_auth).transpose()?;
        Ok(LoadedHttpConfig {
            roots,
            client_cert,
            insecure_skip_verify: self.insecure_skip_verify,
            authorization,
        })
    }
}

impl LoadedHttpConfig {
    /// A client with these TLS settings whose every request ends within `timeout`; 4xx/5xx are
    /// answers, not errors (Alertmanager explains a rejection in the body).
    #[must_use]
    pub fn agent(&self, timeout: Duration) -> ureq::Agent {
        let mut tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .client_cert(self.client_cert.clone())
            .disable_verification(self.insecure_skip_verify);
        if let Some(roots) = &self.roots {
            tls = tls.root_certs(RootCerts::Specific(Arc::new(roots.clone())));
        }
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into()
    }

    /// The `Authorization` header to send, if basic auth is configured.
    #[must_use]
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, HttpConfigError> {
    fs::read(path).map_err(|source| HttpConfigError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn content(key: &'static str, path: &Path, problem: impl Into<String>) -> HttpConfigError {
    HttpConfigError::Content {
        key,
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Every certificate of a PEM file; at least one.
fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<Certificate<'static>>, HttpConfigError> {
    let pem = read(key, path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) =
            item.map_err(|e| content(key, path, format!("not PEM: {e}")))?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(content(key, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn private_key(key: &'static str, path: &Path) -> Result<PrivateKey<'static>, HttpConfigError> {
    let pem = read(key, path)?;
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::PrivateKey(private) =
            item.map_err(|e| content(key, path, format!("not PEM: {e}")))?
        {
            return Ok(private);
        }
    }
    Err(content(key, path, "no PEM private key in it"))
}

fn basic_auth(auth: &BasicAuth) -> Result<String, HttpConfigError> {
    let key = "alertmanager_password_file";
    let raw = read(key, &auth.password_file)?;
    let password =
        String::from_utf8(raw).map_err(|_| content(key, &auth.password_file, "not UTF-8 text"))?;
    let password = password.trim();
    if password.is_empty() {
        return Err(content(key, &auth.password_file, "empty"));
    }
    Ok(basic_header(&auth.username, password))
}

/// RFC 7617: `Basic base64(user:password)`.
fn basic_header(username: &str, password: &str) -> String {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {credentials}")
}

#[cfg(test)]
mod tests;
