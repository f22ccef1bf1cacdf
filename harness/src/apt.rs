//! Debian packages the tests and tools use, installed when missing.

use std::{path::Path, process::Command};

use anyhow::bail;

use crate::command::{check, run_quietly};

/// `apt-get update`, then `apt-get install` of `packages` without recommends, non-interactive.
///
/// # Errors
/// When either cannot run or does not exit 0.
pub fn install(packages: &[&str]) -> anyhow::Result<()> {
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "--no-install-recommends"],
    ] {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        if args[0] == "install" {
            cmd.args(packages);
        }
        check(&mut cmd)?;
    }
    Ok(())
}

/// Stops and disables `service` where systemd runs: Debian starts the servers it installs
/// (Prometheus on :9090, Alertmanager on :9093), and nobody asked for them. Ours use free ports.
pub fn disable_service(service: &str) {
    if Path::new("/run/systemd/system").exists() {
        run_quietly("systemctl", &["disable", "--now", service]);
    }
}

/// Installs `package` when `binary` is missing (`cargo xtask setup` normally has), then
/// disables the `service` it started.
///
/// # Errors
/// When the install fails or leaves `binary` missing.
pub fn ensure(package: &str, binary: &str, service: &str) -> anyhow::Result<()> {
    if Path::new(binary).exists() {
        return Ok(());
    }
    eprintln!("installing {package}");
    install(&[package])?;
    disable_service(service);
    if !Path::new(binary).exists() {
        bail!("{binary} missing after installing {package}");
    }
    Ok(())
}
