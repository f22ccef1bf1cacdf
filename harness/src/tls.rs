//! Test certificates made with the `openssl` command: a server certificate for `localhost` and
//! 127.0.0.1, and a client certificate, each signed by a CA of its own, plus a client
//! certificate signed by a CA the server does not trust.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The PEM files, all in the directory given to [`TestPki::create`].
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA that signed the server certificate (what a client trusts: `curl --cacert`).
    pub server_ca: PathBuf,
    /// Server certificate: `CN=localhost`, SANs `localhost` and 127.0.0.1.
    pub server_cert: PathBuf,
    /// Its key (PKCS#8).
    pub server_key: PathBuf,
    /// The CA that signed the client certificate (the server's `client_ca_file`).
    pub client_ca: PathBuf,
    /// Client certificate, `CN=prometheus`.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A client certificate signed by a CA nobody trusts.
    pub stranger_cert: PathBuf,
    /// Its key.
    pub stranger_key: PathBuf,
}

impl TestPki {
    /// Makes the CAs, certificates and keys in `dir` (P-256 keys, valid ten years).
    ///
    /// # Errors
    /// When `openssl` is missing or fails.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let path = |name: &str| dir.join(name);
        for ca in ["server-ca", "client-ca", "stranger-ca"] {
            ca_cert(dir, ca)?;
        }
        leaf(
            dir,
            "server",
            "server-ca",
            "localhost",
            "serverAuth",
            "DNS:localhost,IP:127.0.0.1",
        )?;
        leaf(
            dir,
            "client",
            "client-ca",
            "prometheus",
            "clientAuth",
            "DNS:prometheus",
        )?;
        leaf(
            dir,
            "stranger",
            "stranger-ca",
            "stranger",
            "clientAuth",
            "DNS:stranger",
        )?;
        Ok(Self {
            server_ca: path("server-ca.crt"),
            server_cert: path("server.crt"),
            server_key: path("server.key"),
            client_ca: path("client-ca.crt"),
            client_cert: path("client.crt"),
            client_key: path("client.key"),
            stranger_cert: path("stranger.crt"),
            stranger_key: path("stranger.key"),
        })
    }
}

/// Runs openssl quietly; its stderr is in the error when it fails.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn ca_cert(dir: &Path, name: &str) -> anyhow::Result<()> {
    let (key, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "3650",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

fn leaf(
    dir: &Path,
    name: &str,
    ca: &str,
    common_name: &str,
    usage: &str,
    sans: &str,
) -> anyhow::Result<()> {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage={usage}\nsubjectAltName={sans}\n"
        ),
    )?;
    let subject = format!("/CN={common_name}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    )?;
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "3650",
            "-extfile",
            &ext,
        ],
    )
}
