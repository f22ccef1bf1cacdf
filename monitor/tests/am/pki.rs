//! A throwaway PKI for TLS tests, made with the `openssl` command in a temporary directory: a CA,
//! a server certificate for 127.0.0.1 and a client certificate signed by it, and a second,
//! unrelated CA (the "wrong CA").

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    pub(crate) fn create() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for ca in ["ca", "other-ca"] {
            let key = format!("{ca}-key.pem");
            let cert = format!("{ca}.pem");
            let subject = format!("/CN=tcp-liveness test {ca}");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(EC);
            args.extend(["-keyout", &key, "-out", &cert, "-subj", &subject]);
            openssl(d, &args);
        }
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let key = format!("{name}-key.pem");
            let csr = format!("{name}.csr");
            let cert = format!("{name}.pem");
            let ext = format!("{name}.ext");
            let san = if name == "server" {
                "subjectAltName=IP:127.0.0.1\n"
            } else {
                ""
            };
            std::fs::write(d.join(&ext), format!("{san}extendedKeyUsage={usage}\n"))
                .expect("write extensions");
            let subject = format!("/CN=tcp-liveness test {name}");
            let mut args = vec!["req", "-nodes"];
            args.extend(EC);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            openssl(d, &args);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca-key.pem",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &cert,
                ],
            );
        }
        Self { dir }
    }

    /// `ca.pem`, `other-ca.pem`, `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem`.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`path`](Self::path) as text, for command lines and config files.
    pub(crate) fn file(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("UTF-8 temp path")
            .to_owned()
    }
}
