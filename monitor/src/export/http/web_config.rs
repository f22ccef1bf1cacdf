//! The web config file (`--web.config.file`): the Prometheus exporter-toolkit's format, as
//! `node_exporter` and `ebpf_exporter` read it, so operators reuse the file they have:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # relative paths are relative to this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt hash
//! ```
//!
//! Keys of the format that this agent does not implement are refused by name, unknown keys too:
//! a setting silently ignored would be a security setting that does not apply.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
    version::{TLS12, TLS13},
};
use serde::Deserialize;

/// What the web config file asks for, loaded and checked: certificates read, hashes parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WebConfig {
    /// Serve HTTPS with this; None: plain HTTP.
    pub(crate) tls: Option<Tls>,
    /// `basic_auth_users`: user name → bcrypt hash. Empty: no authentication.
    pub(crate) users: BTreeMap<String, String>,
}

/// The TLS side of a [`WebConfig`]: what the file said, and the rustls configuration built
/// from it (certificates and key read when the file was loaded).
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    pub(crate) settings: TlsSettings,
    pub(crate) server: Arc<ServerConfig>,
}

/// Equal when loaded from the same settings (the built rustls configuration has no equality).
impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for Tls {}

/// `tls_server_config` with paths made absolute and defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    /// Client certificates signed by these CAs are required (or checked when given).
    pub(crate) client_auth: ClientAuth,
    pub(crate) min_version: TlsVersion,
    pub(crate) max_version: TlsVersion,
}

/// `client_auth_type`, the values this agent implements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`: a client may come without a certificate; one it gives must
    /// be signed by `client_ca_file`.
    VerifyIfGiven(PathBuf),
    /// `RequireAndVerifyClientCert`: every client shows a certificate signed by `client_ca_file`.
    RequireAndVerify(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    Tls12,
    Tls13,
}

/// The file as written. Every key of the exporter-toolkit format is listed, so that the ones
/// this agent does not implement are refused by name ([`unsupported`]) rather than as unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    http_server_config: Option<serde_norway::Value>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    cert: Option<serde_norway::Value>,
    key: Option<serde_norway::Value>,
    client_ca: Option<serde_norway::Value>,
    client_allowed_sans: Option<serde_norway::Value>,
    cipher_suites: Option<serde_norway::Value>,
    curve_preferences: Option<serde_norway::Value>,
    prefer_server_cipher_suites: Option<serde_norway::Value>,
}

impl WebConfig {
    /// Reads and checks the file at `path`: YAML, keys, hashes, and the certificates and key
    /// it names (read now, so a bad one stops the agent before it starts).
    ///
    /// # Errors
    /// One line naming the problem (the caller adds the file's name).
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, dir)
    }

    /// [`load`](Self::load) of `text`; relative paths in it are taken from `dir`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub(crate) fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        // An empty file is valid YAML for "nothing": plain HTTP, as with no file.
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(text).map_err(|e| one_line(&e.to_string()))?
        };
        unsupported(&file)?;
        for (user, hash) in &file.basic_auth_users {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("basic_auth_users: {user}: not a bcrypt hash ({e})"))?;
        }
        let tls = match file.tls_server_config {
            Some(tls) => tls_settings(&tls, dir)?,
            None => None,
        };
        let tls = tls
            .map(|settings| {
                let server = server_config(&settings)?;
                Ok::<_, String>(Tls { settings, server })
            })
            .transpose()?;
        Ok(Self {
            tls,
            users: file.basic_auth_users,
        })
    }
}

/// serde's messages can carry a newline before the position; keep one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keys of the format this agent does not implement: refused, each with what to do instead.
fn unsupported(file: &File) -> Result<(), String> {
    let refuse =
        |key: &str, why: &str| Err(format!("{key} is not supported by tcp-liveness ({why})"));
    if file.http_server_config.is_some() {
        return refuse("http_server_config", "the agent serves HTTP/1.1 only");
    }
    if file.rate_limit.is_some() {
        return refuse(
            "rate_limit",
            "use --web.max-connections and --web.max-connections-per-client",
        );
    }
    let Some(tls) = &file.tls_server_config else {
        return Ok(());
    };
    let inline = "name files with cert_file, key_file and client_ca_file";
    let rustls = "rustls chooses them, modern ones only";
    let listed = [
        ("tls_server_config.cert", tls.cert.is_some(), inline),
        ("tls_server_config.key", tls.key.is_some(), inline),
        (
            "tls_server_config.client_ca",
            tls.client_ca.is_some(),
            inline,
        ),
        (
            "tls_server_config.client_allowed_sans",
            tls.client_allowed_sans.is_some(),
            "trust a CA that signs only the allowed clients",
        ),
        (
            "tls_server_config.cipher_suites",
            tls.cipher_suites.is_some(),
            rustls,
        ),
        (
            "tls_server_config.curve_preferences",
            tls.curve_preferences.is_some(),
            rustls,
        ),
        (
            "tls_server_config.prefer_server_cipher_suites",
            tls.prefer_server_cipher_suites.is_some(),
            rustls,
        ),
    ];
    match listed.iter().find(|(_, given, _)| *given) {
        Some((key, _, why)) => refuse(key, why),
        None => Ok(()),
    }
}

/// The checked settings; None when the section names neither certificate nor client auth
/// (exporter-toolkit serves plain HTTP then).
fn tls_settings(tls: &TlsFile, dir: &Path) -> Result<Option<TlsSettings>, String> {
    if tls.cert_file.is_empty()
        && tls.key_file.is_empty()
        && tls.client_auth_type.is_empty()
        && tls.client_ca_file.is_empty()
    {
        return Ok(None);
    }
    let key = |name: &str| format!("tls_server_config.{name}");
    if tls.cert_file.is_empty() {
        return Err(format!("{} is missing", key("cert_file")));
    }
    if tls.key_file.is_empty() {
        return Err(format!("{} is missing", key("key_file")));
    }
    let ca = (!tls.client_ca_file.is_empty()).then(|| dir.join(&tls.client_ca_file));
    let client_auth = match (tls.client_auth_type.as_str(), ca) {
        ("" | "NoClientCert", None) => ClientAuth::None,
        ("" | "NoClientCert", Some(_)) => {
            return Err(format!(
                "{} is set but client_auth_type is NoClientCert (use RequireAndVerifyClientCert)",
                key("client_ca_file")
            ));
        }
        ("RequireAndVerifyClientCert", Some(ca)) => ClientAuth::RequireAndVerify(ca),
        ("VerifyClientCertIfGiven", Some(ca)) => ClientAuth::VerifyIfGiven(ca),
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", None) => {
            return Err(format!(
                "{} {} needs client_ca_file",
                key("client_auth_type"),
                tls.client_auth_type
            ));
        }
        ("RequestClientCert" | "RequireAnyClientCert", _) => {
            return Err(format!(
                "{} {} is not supported by tcp-liveness (an unverified certificate proves nothing; use RequireAndVerifyClientCert)",
                key("client_auth_type"),
                tls.client_auth_type
            ));
        }
        (other, _) => {
            return Err(format!(
                "{}: unknown value {other:?} (NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                key("client_auth_type")
            ));
        }
    };
    let min_version = version(&tls.min_version, TlsVersion::Tls12, &key("min_version"))?;
    let max_version = version(&tls.max_version, TlsVersion::Tls13, &key("max_version"))?;
    if min_version > max_version {
        return Err(format!(
            "{} is above {}",
            key("min_version"),
            key("max_version")
        ));
    }
    Ok(Some(TlsSettings {
        cert_file: dir.join(&tls.cert_file),
        key_file: dir.join(&tls.key_file),
        client_auth,
        min_version,
        max_version,
    }))
}

fn version(text: &str, default: TlsVersion, key: &str) -> Result<TlsVersion, String> {
    match text {
        "" => Ok(default),
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        "TLS10" | "TLS11" => Err(format!(
            "{key} {text} is not supported by tcp-liveness (TLS 1.0 and 1.1 are broken; TLS12 or TLS13)"
        )),
        other => Err(format!("{key}: unknown version {other:?} (TLS12 or TLS13)")),
    }
}

/// The rustls configuration: certificate chain and key read now, HTTP/1.1 offered by ALPN.
fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(TlsVersion::Tls12, &TLS12), (TlsVersion::Tls13, &TLS13)]
            .into_iter()
            .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
            .map(|(_, v)| v)
            .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match &settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::VerifyIfGiven(ca) | ClientAuth::RequireAndVerify(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "client_ca_file")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match settings.client_auth {
                ClientAuth::VerifyIfGiven(_) => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = certificates(&settings.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| format!("key_file {}: {e}", settings.key_file.display()))?;
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "cert_file {} and key_file {}: {e}",
            settings.cert_file.display(),
            settings.key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let error = |e: &dyn std::fmt::Display| format!("{key} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(&e))?;
    if certs.is_empty() {
        return Err(error(&"no PEM certificate in it"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
