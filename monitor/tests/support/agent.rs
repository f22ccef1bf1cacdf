//! The agent binary under test, with its HTTP endpoints.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::{wait_for, wait_for_optional};

pub struct Agent {
    child: Option<Child>,
    pub base: String,
}

impl Agent {
    /// Starts `tcp-liveness run` on 127.0.0.1:`port` with a fast scan, and waits until it serves.
    pub fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Same, with extra `run` arguments (thresholds, Alertmanager URL, ...).
    pub fn start_with(port: u16, extra_args: &[&str]) -> Self {
        Self::spawn(port, extra_args, Stdio::inherit())
    }

    /// Same, with the agent's log (stderr) written to `log` for the test to read.
    pub fn start_logged(port: u16, extra_args: &[&str], log: std::fs::File) -> Self {
        Self::spawn(port, extra_args, Stdio::from(log))
    }

    fn spawn(port: u16, extra_args: &[&str], stderr: Stdio) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_tcp-liveness"))
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--scan-interval",
                "250ms",
            ])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn agent");
        let agent = Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_for("agent /healthz", Duration::from_secs(60), || {
            ureq::get(&format!("{}/healthz", agent.base))
                .call()
                .ok()
                .map(|_| ())
        });
        // One more scan so the published snapshot postdates anything the caller set up.
        std::thread::sleep(Duration::from_millis(600));
        agent
    }

    pub fn get(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .with_config()
            // A host with many sockets (e.g. a benchmark running beside the tests) makes a
            // full /connections listing large.
            .limit(1 << 30)
            .read_to_string()
            .expect("read body")
    }

    pub fn connections(&self) -> Vec<Value> {
        serde_json::from_str(&self.get("/connections")).expect("/connections is JSON")
    }

    /// Connections in namespace `inode`.
    pub fn connections_in(&self, inode: u64) -> Vec<Value> {
        let body = self.get(&format!("/connections?netns={inode}"));
        serde_json::from_str(&body).expect("/connections is JSON")
    }

    /// Value of one sample line of /metrics, e.g. `tcp_liveness_connections{state="listen"}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        self.get("/metrics").lines().find_map(|line| {
            let rest = line.strip_prefix(sample)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    /// SIGTERM, then the exit status.
    /// The first 8 bytes of element 0 of the agent's BPF map `name`, as the kernel reports it
    /// (bpftool), found through the map ids in the agent's /proc/PID/fdinfo.
    pub fn map_u64(&self, name: &str) -> Option<u64> {
        let pid = self.child.as_ref().expect("agent running").id();
        let fdinfo = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
        let ids = fdinfo.filter_map(|f| {
            let text = std::fs::read_to_string(f.ok()?.path()).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .map(|id| id.trim().to_owned())
        });
        for id in ids {
            let bpftool = |what: &str| -> Option<Value> {
                let out = Command::new("bpftool")
                    .args(["-j", "map", what, "id", &id])
                    .output()
                    .expect("bpftool");
                serde_json::from_slice(&out.stdout).ok()
            };
            if bpftool("show").is_none_or(|map| map["name"] != name) {
                continue;
            }
            let dump = bpftool("dump")?;
            // Without BTF, bpftool prints the value as hex byte strings.
            let bytes: Vec<u8> = dump[0]["value"]
                .as_array()?
                .iter()
                .filter_map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
                .collect();
            return Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?));
        }
        None
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("agent running");
        // SAFETY: kill on a pid we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let exited = wait_for_optional(Duration::from_secs(15), || child.try_wait().ok().flatten());
        exited.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("agent did not exit within 15 s of SIGTERM");
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
