//! A cgroup v2 directory the test creates (under the hierarchy's mount, found in
//! `/proc/self/mountinfo`), and processes started inside it; removed on drop.

use std::{
    fs::{self, File},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::Command,
};

use anyhow::{Context as _, bail};

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup/unified` on hybrid hosts).
///
/// # Errors
/// `mountinfo` cannot be read or has no `cgroup2` mount.
pub fn v2_root() -> anyhow::Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    text.lines()
        .find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            (fs.split_whitespace().next()? == "cgroup2")
                .then(|| mount.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .context("no cgroup2 mount")
}

/// A cgroup `/NAME` directly below the root; its processes are moved back to the root and the
/// directory removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    root: PathBuf,
    name: String,
}

impl Cgroup {
    /// Creates `/NAME` (an existing one from an interrupted run is reused).
    ///
    /// # Errors
    /// No cgroup v2 hierarchy, or the directory cannot be created.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let root = v2_root()?;
        let dir = root.join(name);
        if !dir.is_dir() {
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self {
            root,
            name: name.to_owned(),
        })
    }

    /// The path as `/proc/PID/cgroup` and the agent's config write it: `/NAME`.
    #[must_use]
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// Makes `cmd` start inside this cgroup: the child moves itself there (writes `0` to
    /// `cgroup.procs`) before it `exec`s, so every socket it opens is the cgroup's.
    ///
    /// # Errors
    /// `cgroup.procs` cannot be opened.
    pub fn start_inside(&self, cmd: &mut Command) -> anyhow::Result<()> {
        let procs = File::options()
            .write(true)
            .open(self.root.join(&self.name).join("cgroup.procs"))
            .context("opening cgroup.procs")?;
        // SAFETY: between fork and exec only write(2) on a descriptor opened above runs
        // (async-signal-safe); the closure owns `procs`, so the descriptor stays open.
        unsafe {
            cmd.pre_exec(move || {
                let ret = libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1);
                if ret == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Ok(())
    }

    /// The pids in the cgroup now.
    ///
    /// # Errors
    /// `cgroup.procs` cannot be read.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let text = fs::read_to_string(self.root.join(&self.name).join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.parse().ok()).collect())
    }

    fn remove(&self) -> anyhow::Result<()> {
        for pid in self.pids().unwrap_or_default() {
            let _ = fs::write(self.root.join("cgroup.procs"), pid.to_string());
        }
        let dir = self.root.join(&self.name);
        // A killed process leaves its cgroup once reaped; give the kernel a moment.
        for _ in 0..50 {
            if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        bail!("cannot remove {}", dir.display())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(error) = self.remove() {
            eprintln!("cgroup cleanup: {error:#}");
        }
    }
}
