//! A containerd of the test's own with its CRI plugin serving `runtime.v1` on the same socket,
//! as on a Kubernetes node: snapshotter `native` (works on any filesystem the temporary
//! directory is on), no CNI (the tests' pods use the node's network), and the sandbox ("pause")
//! image a local one: the busybox root filesystem of [`Containerd`] packed as an OCI image and
//! imported into namespace `k8s.io`, so nothing is pulled. A sandbox's `oom_score_adj` is kept
//! no lower than the daemon's (a test machine that is itself a container may not lower it).

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::containerd::Containerd;

/// The image every CRI container and sandbox runs: busybox, its entrypoint `sleep 3600` (what a
/// sandbox runs; a container gives its own command).
pub const IMAGE: &str = "docker.io/library/tl-busybox:test";

/// The CRI plugin's section of containerd's config, for a daemon in `dir`.
fn cri_section(dir: &Path) -> String {
    let cni = dir.join("cni");
    format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{IMAGE}\"\n  \
         disable_apparmor = true\n  restrict_oom_score_adj = true\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"{bin}\"\n  conf_dir = \"{conf}\"\n",
        bin = cni.join("bin").display(),
        conf = cni.join("conf").display(),
    )
}

impl Containerd {
    /// As [`Containerd::start`] with the CRI plugin enabled, and [`IMAGE`] imported.
    ///
    /// # Errors
    /// As [`Containerd::start`]; when the image cannot be built or imported.
    pub fn start_with_cri() -> anyhow::Result<Self> {
        let containerd = Self::start_configured(Some(&cri_section))?;
        let archive = oci_archive(&containerd)?;
        let archive = archive.to_str().context("UTF-8 temporary path")?;
        containerd.ctr_output(&["images", "import", "--snapshotter", "native", archive])?;
        Ok(containerd)
    }
}

/// [`IMAGE`] as an OCI image layout archive in the daemon's directory: one uncompressed layer
/// (the busybox root filesystem), its config and manifest, and an index naming it.
fn oci_archive(containerd: &Containerd) -> anyhow::Result<std::path::PathBuf> {
    let rootfs = containerd.rootfs()?;
    let layout = containerd.dir().join("image");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layer = layout.join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let layer = blob(&blobs, &fs::read(&layer)?)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Entrypoint": ["/bin/sleep", "3600"] },
        "rootfs": { "type": "layers", "diff_ids": [layer["digest"]] },
    });
    let config = blob(&blobs, config.to_string().as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    });
    let manifest = blob(&blobs, manifest.to_string().as_bytes())?;
    let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    entry["annotations"] = json!({ "io.containerd.image.name": IMAGE });
    let index = json!({ "schemaVersion": 2, "manifests": [entry] });
    fs::write(layout.join("index.json"), index.to_string())?;
    fs::write(
        layout.join("oci-layout"),
        json!({ "imageLayoutVersion": "1.0.0" }).to_string(),
    )?;
    fs::remove_file(layout.join("layer.tar"))?;
    let archive = containerd.dir().join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."))?;
    Ok(archive)
}

/// Writes `content` as a blob named by its digest; its `{digest, size}`.
fn blob(blobs: &Path, content: &[u8]) -> anyhow::Result<serde_json::Value> {
    let tmp = blobs.join("incoming");
    fs::write(&tmp, content)?;
    let out = Command::new("sha256sum").arg(&tmp).output()?;
    if !out.status.success() {
        bail!("sha256sum failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let hex = text.split_whitespace().next().context("sha256sum output")?;
    fs::rename(&tmp, blobs.join(hex))?;
    Ok(json!({ "digest": format!("sha256:{hex}"), "size": content.len() }))
}

/// A descriptor of `blob` ([`blob`]'s answer) with `media_type`.
fn descriptor(media_type: &str, blob: &serde_json::Value) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": blob["digest"], "size": blob["size"] })
}

/// Runs `command`, an error unless it succeeds.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
