//! Idempotent machine setup: each step checks before it installs.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use harness::{apt, command::run};

/// The nightly the eBPF crate builds with must use the same LLVM major as bpf-linker.
const LLVM_MAJOR: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// What `cargo xtask deb` packages with (its `[package.metadata.deb]` keys are this version's).
pub(crate) const CARGO_DEB_VERSION: &str = "3.8.0";

/// Debian packages: LLVM for bpf-linker, and the tools the kernel tests drive.
const PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "/usr/lib/llvm-22/lib/libLLVM.so"),
    ("libzstd-dev", "/usr/include/zstd.h"),
    ("zlib1g-dev", "/usr/include/zlib.h"),
    ("libxml2-dev", "/usr/include/libxml2/libxml/parser.h"),
    ("iptables", "/usr/sbin/iptables"),
    ("bpftool", "/usr/sbin/bpftool"),
    ("iproute2", "/usr/bin/ss"),
    ("python3", "/usr/bin/python3"),
    // The Alertmanager end-to-end test (monitor/tests/integration/alertmanager.rs).
    (
        "prometheus-alertmanager",
        "/usr/bin/prometheus-alertmanager",
    ),
    // Its HTTPS case: certificates made with openssl, Alertmanager asked with curl.
    ("openssl", "/usr/bin/openssl"),
    ("curl", "/usr/bin/curl"),
    // Prometheus and promtool for monitor/tests/integration/prometheus_e2e.rs (rules, the
    // dashboards' queries).
    ("prometheus", "/usr/bin/promtool"),
    // monitor/tests/integration/deploy_manifests.rs: the systemd unit's checks.
    ("systemd", "/usr/bin/systemd-analyze"),
    ("strace", "/usr/bin/strace"),
    // The same test installs its Python validators (Helm engine, schemas, hadolint) with pip.
    ("python3-pip", "/usr/bin/pip3"),
    // containerd-client and k8s-cri compile containerd's API and the CRI protos at build time
    // (prost-build runs protoc).
    ("protobuf-compiler", "/usr/bin/protoc"),
    // monitor/tests/integration/kubernetes.rs: a container runtime of the test's own, and the
    // static busybox its containers' root filesystem is made of.
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("busybox-static", "/bin/busybox"),
    // monitor/tests/integration/stacks.rs builds its leaking C program (`cc -O0 -g
    // -fno-omit-frame-pointer`).
    ("gcc", "/usr/bin/gcc"),
];

pub(crate) fn all() -> anyhow::Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    cargo_deb()?;
    tracefs()
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    apt::install(&missing)?;
    // Debian starts the servers it installs; the tests start their own on free ports, and a
    // stray system Prometheus (:9090), Alertmanager (:9093) or containerd (the node's socket) is
    // not ours to leave running.
    for service in ["prometheus", "prometheus-alertmanager", "containerd"] {
        apt::disable_service(service);
    }
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    let listing = String::from_utf8_lossy(&installed.stdout);
    if !installed.status.success() {
        eprintln!("setup: installing the nightly toolchain");
        run(
            "rustup",
            &[
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ],
        )?;
    } else if !listing.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        run(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = current
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR} (1-2 minutes)"
    );
    let prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    let feature = format!("llvm-{LLVM_MAJOR}");
    let status = Command::new("cargo")
        .args([
            "install",
            "--locked",
            "--force",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        ])
        .args(["--no-default-features", "--features", &feature])
        // bpf-linker's default feature wants LLVM 23, which Debian does not ship here.
        .env("LLVM_PREFIX", &prefix)
        .env(format!("LLVM_SYS_{LLVM_MAJOR}1_PREFIX"), &prefix)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    Ok(())
}

/// `cargo deb` for `cargo xtask deb` (and `test`, which installs the package it builds).
pub(crate) fn cargo_deb() -> anyhow::Result<()> {
    let current = Command::new("cargo-deb").arg("--version").output();
    if let Ok(out) = current
        && String::from_utf8_lossy(&out.stdout).contains(CARGO_DEB_VERSION)
    {
        return Ok(());
    }
    eprintln!("setup: installing cargo-deb {CARGO_DEB_VERSION} (about a minute)");
    run(
        "cargo",
        &[
            "install",
            "--locked",
            "--force",
            &format!("cargo-deb@{CARGO_DEB_VERSION}"),
        ],
    )
}

/// Tracepoint attachment needs tracefs, which a fresh machine does not mount.
fn tracefs() -> anyhow::Result<()> {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return Ok(());
    }
    eprintln!("setup: mounting tracefs at /sys/kernel/tracing");
    run(
        "mount",
        &["-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
    )
}
