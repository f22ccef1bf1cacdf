//! A containerd of the test's own (its own root, state, socket and config under a temporary
//! directory, no CRI plugin), and containers in it shaped as a Kubernetes node's: containerd
//! namespace `k8s.io`, the CRI labels kubelet sets, cgroup paths of the systemd cgroup driver,
//! each in a network namespace the test created. No image is pulled: the root filesystem is
//! Debian's static busybox copied into a directory, with one symlink per applet used.
//!
//! Everything is removed on drop, a failing assertion included: [`Container`] kills and deletes
//! its task and container and removes the pod's cgroup slices; [`Containerd`] deletes what is
//! left in its namespace, stops the daemon and removes its directory.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{command::ChildGuard, netns::Netns, wait};

/// The containerd namespace kubelet's CRI plugin creates its containers in.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// The static busybox Debian's `busybox-static` installs: the containers' only binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets the rootfs links to busybox (`/bin/NAME`).
const APPLETS: &[&str] = &["sh", "sleep", "nc", "cat"];

/// Directories the runc shim makes under `/run/containerd` whatever containerd's own `--state`
/// (its state and its sockets), deepest first: removed when empty once the daemon stopped. A
/// node's own containerd keeps them in use, and a non-empty directory stays.
const SHIM_DIRS: &[&str] = &[
    "/run/containerd/runc/k8s.io",
    "/run/containerd/runc",
    "/run/containerd/s",
    "/run/containerd",
];

/// How long containerd may take to answer on its socket after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Containers created by this process so far: part of each container id.
static CONTAINERS: AtomicU32 = AtomicU32::new(0);

/// A running `containerd` with everything under one temporary directory; stopped, and its
/// directory removed, on drop.
#[derive(Debug)]
pub struct Containerd {
    daemon: ChildGuard,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Writes a config (root, state, gRPC and ttrpc sockets under a new temporary directory, the
    /// CRI plugin disabled), starts `containerd --config` with its log in that directory, and
    /// waits until `ctr version` answers on the socket.
    ///
    /// # Errors
    /// When `containerd` cannot be started, exits, or does not answer within 30 s (the error
    /// carries its log's tail); it is stopped then.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_configured(None)
    }

    /// As [`start`](Self::start), with `cri` (the CRI plugin's config section, made from the
    /// daemon's directory) instead of the CRI plugin disabled.
    pub(crate) fn start_configured(cri: Option<&dyn Fn(&Path) -> String>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tl-containerd-")
            .tempdir()
            .context("temporary directory for containerd")?;
        let path = dir.path();
        let (disabled, plugin) = match cri {
            Some(section) => (String::new(), section(path)),
            None => (
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".into(),
                String::new(),
            ),
        };
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{disabled}\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n{plugin}",
            root = path.join("root").display(),
            state = path.join("state").display(),
            sock = path.join("containerd.sock").display(),
        );
        fs::write(path.join("config.toml"), config).context("writing containerd's config")?;
        let log = fs::File::create(path.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(path.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (Debian package containerd)")?;
        let mut containerd = Self {
            daemon: ChildGuard::new(child),
            dir,
        };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let answered = wait::poll(READY_WITHIN, wait::POLL_EVERY, || {
            if let Some(status) = self.daemon.child_mut().try_wait()? {
                bail!("containerd exited ({status}): {}", self.log_tail());
            }
            let out = self.ctr(&["version"]).output()?;
            anyhow::Ok(out.status.success().then_some(()))
        })?;
        if answered.is_none() {
            bail!(
                "containerd did not answer within {READY_WITHIN:?}: {}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of containerd's log, for error messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// The daemon's own directory (its root, state, sockets, log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The gRPC socket: what the agent's `--containerd-socket` takes.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr --address SOCKET --namespace k8s.io ARGS…`, for the caller to run.
    #[must_use]
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .args(["--namespace", K8S_NAMESPACE])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn ctr_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .ctr(args)
            .output()
            .with_context(|| format!("running ctr {args:?} (Debian package containerd)"))?;
        if !out.status.success() {
            bail!(
                "ctr {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// A busybox root filesystem in the daemon's directory (made on first use): `/bin/busybox`
    /// and one symlink per applet the tests run, plus the empty mount points runc needs.
    pub(crate) fn rootfs(&self) -> anyhow::Result<PathBuf> {
        let rootfs = self.dir.path().join("rootfs");
        if rootfs.join("bin/busybox").exists() {
            return Ok(rootfs);
        }
        for dir in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(dir))?;
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .with_context(|| format!("copying {BUSYBOX} (Debian package busybox-static)"))?;
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        Ok(rootfs)
    }

    /// Runs `command` (absolute paths: the rootfs has no `PATH`) detached, stdio to /dev/null,
    /// as container `container` of pod `pod`: the CRI labels set, in the pod's cgroup
    /// ([`Pod::cgroup_path`]), joined to network namespace `netns`.
    ///
    /// # Errors
    /// When `ctr run` fails or the task's pid cannot be read; what was created is removed.
    pub fn run(
        &self,
        pod: &Pod,
        container: &str,
        netns: &Netns,
        command: &[&str],
    ) -> anyhow::Result<Container<'_>> {
        let rootfs = self.rootfs()?;
        let n = CONTAINERS.fetch_add(1, Ordering::Relaxed);
        // 64 hex digits, as containerd's own ids: what the agent finds in cgroup paths.
        let id = format!("{:032x}{:032x}", std::process::id(), n);
        let cgroup = pod.cgroup_path(&id);
        let labels = [
            format!("io.kubernetes.pod.name={}", pod.name),
            format!("io.kubernetes.pod.namespace={}", pod.namespace),
            format!("io.kubernetes.pod.uid={}", pod.uid),
            format!("io.kubernetes.container.name={container}"),
        ];
        let with_ns = format!("network:{}", netns.path().display());
        let mut args = vec!["run", "--detach", "--null-io", "--rootfs"];
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        args.extend(["--cgroup", &cgroup, "--with-ns", &with_ns]);
        let rootfs = rootfs.to_string_lossy();
        args.extend([rootfs.as_ref(), id.as_str()]);
        args.extend_from_slice(command);
        // The guard exists before `ctr run`: a failure half-way still removes what was made.
        let mut made = Container {
            containerd: self,
            id: id.clone(),
            pid: 0,
            cgroup: cgroup.clone(),
        };
        self.ctr_output(&args)?;
        made.pid = self.task_pid(&id)?;
        Ok(made)
    }

    /// The host pid of container `id`'s task (`ctr task ls`).
    fn task_pid(&self, id: &str) -> anyhow::Result<u32> {
        let out = self.ctr_output(&["task", "ls"])?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == id).then(|| words.next()?.parse().ok())?
            })
            .with_context(|| format!("no task {id} in ctr task ls"))
    }

    /// Kills and deletes every task and container left in [`K8S_NAMESPACE`].
    fn remove_all(&self) {
        let Ok(out) = self.ctr_output(&["containers", "ls", "--quiet"]) else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            remove_container(self, id);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_all();
        let pid = libc::pid_t::try_from(self.daemon.id()).unwrap_or(0);
        // SAFETY: kill(2) of the daemon this guard started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let child = self.daemon.child_mut();
        let _ =
            wait::wait_for_optional(Duration::from_secs(10), || child.try_wait().ok().flatten());
        self.daemon.kill();
        for dir in SHIM_DIRS {
            let _ = fs::remove_dir(dir);
        }
        // The TempDir removes the daemon's own directory.
    }
}

/// A pod as kubelet describes it to the runtime: the names behind the CRI labels.
#[derive(Clone, Debug)]
pub struct Pod {
    /// `io.kubernetes.pod.namespace`.
    pub namespace: String,
    /// `io.kubernetes.pod.name`.
    pub name: String,
    /// `io.kubernetes.pod.uid`: a UUID with `-`.
    pub uid: String,
}

impl Pod {
    /// A pod `namespace/name` with a UUID made from this process's pid and `n`.
    #[must_use]
    pub fn new(namespace: &str, name: &str, n: u32) -> Self {
        let pid = std::process::id();
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("{pid:08x}-0000-4000-8000-{n:012x}"),
        }
    }

    /// The cgroup slice of a `BestEffort` pod under the systemd cgroup driver:
    /// `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid, - as _>.slice`.
    #[must_use]
    pub fn slice(&self) -> String {
        let uid = self.uid.replace('-', "_");
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice")
    }

    /// The cgroup parent of a `BestEffort` pod under the cgroupfs cgroup driver:
    /// `/kubepods/besteffort/pod<uid>`.
    #[must_use]
    pub fn cgroupfs_parent(&self) -> String {
        format!("/kubepods/besteffort/pod{}", self.uid)
    }

    /// Container `id`'s cgroup: `<slice>/cri-containerd-<id>.scope`, as `/proc/PID/cgroup`
    /// shows it.
    #[must_use]
    pub fn cgroup_path(&self, id: &str) -> String {
        format!("{}/cri-containerd-{id}.scope", self.slice())
    }
}

/// A container with a running task; killed and deleted on drop, with the pod's cgroup slices.
#[derive(Debug)]
pub struct Container<'a> {
    containerd: &'a Containerd,
    id: String,
    pid: u32,
    cgroup: String,
}

impl Container<'_> {
    /// The container id (64 hex digits).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host pid of the task's first process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The cgroup path, as `/proc/PID/cgroup` shows it.
    #[must_use]
    pub fn cgroup(&self) -> &str {
        &self.cgroup
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        remove_container(self.containerd, &self.id);
        remove_empty_slices(&self.cgroup);
    }
}

/// `ctr task kill -a -s SIGKILL`, `task delete --force`, `containers delete`: errors ignored
/// (any of them may have nothing to remove).
fn remove_container(containerd: &Containerd, id: &str) {
    for args in [
        &["task", "kill", "--all", "--signal", "SIGKILL", id][..],
        &["task", "delete", "--force", id],
        &["containers", "delete", id],
    ] {
        let _ = containerd
            .ctr(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes `cgroup` and each of its parents that is empty, in every mounted cgroup hierarchy
/// (v1 controllers and the v2 tree): runc removes only the container's own directory. A
/// directory still in use (another pod's slice, a real node's) fails `rmdir` and stays.
pub fn remove_empty_slices(cgroup: &str) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mounts = mountinfo.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        fs.starts_with("cgroup")
            .then(|| mount.split_whitespace().nth(4).map(PathBuf::from))?
    });
    for mount in mounts {
        let mut dir = Path::new(cgroup.trim_start_matches('/'));
        while !dir.as_os_str().is_empty() {
            let _ = fs::remove_dir(mount.join(dir));
            dir = dir.parent().unwrap_or(Path::new(""));
        }
    }
}
