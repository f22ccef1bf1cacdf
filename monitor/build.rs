//! Builds the kernel programs (`monitor-ebpf`) with the nightly toolchain and bpf-linker, so that
//! `cargo build` yields one self-contained agent binary with the object embedded.
//!
//! With this crate's `bench` feature the object is built with `monitor-ebpf`'s `bench` feature
//! (the benchmark's floor programs); without it, the embedded object does not contain them.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "monitor-ebpf")
        .ok_or_else(|| anyhow!("monitor-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("monitor-ebpf manifest has no parent directory"))?;
    // Cargo tells a build script its package's features as CARGO_FEATURE_<NAME>; aya-build passes
    // `Package::features` to the nested `cargo build --features`. Each feature set of this crate
    // has its own OUT_DIR, so the two objects never overwrite each other.
    let features: &[&str] = if std::env::var_os("CARGO_FEATURE_BENCH").is_some() {
        &["bench"]
    } else {
        &[]
    };
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            features,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
