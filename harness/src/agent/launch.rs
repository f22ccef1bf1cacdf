//! How to start the agent: binary, port, arguments, log, confinement, timeouts.

use std::{
    fs::File,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use super::Agent;

/// A `tcp-liveness run --listen 127.0.0.1:PORT …` to start; [`start`](Self::start) runs it.
#[derive(Debug)]
pub struct Launch {
    binary: PathBuf,
    port: u16,
    listen_ip: String,
    args: Vec<String>,
    rust_log: Option<String>,
    log: Option<File>,
    capabilities: Option<String>,
    own_process_group: bool,
    ready_within: Duration,
    settle: Duration,
    stop_within: Duration,
    scan_interval: Duration,
    /// A temporary `--runtime-dir` (the probe journal) unless the arguments give one.
    own_runtime_dir: bool,
}

/// The scan interval of [`Launch::test`]: short, so tests see changes within a second.
pub const TEST_SCAN_INTERVAL: &str = "250ms";

/// The agent's own scan interval when no `--scan-interval` is given (its CLI default).
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(5);

impl Launch {
    /// `binary run --listen 127.0.0.1:port` with the agent's own defaults otherwise:
    /// `RUST_LOG=warn`, stderr inherited, ready within 60 s, stopped within 15 s of SIGTERM.
    pub fn new(binary: impl Into<PathBuf>, port: u16) -> Self {
        Self {
            binary: binary.into(),
            port,
            listen_ip: "127.0.0.1".into(),
            args: Vec::new(),
            rust_log: Some("warn".into()),
            log: None,
            capabilities: None,
            own_process_group: false,
            ready_within: Duration::from_mins(1),
            settle: Duration::ZERO,
            stop_within: Duration::from_secs(15),
            scan_interval: DEFAULT_SCAN_INTERVAL,
            own_runtime_dir: false,
        }
    }

    /// What the kernel tests run: [`new`](Self::new) scanning every [`TEST_SCAN_INTERVAL`],
    /// `RUST_LOG` from the environment (default `warn`), and once ready, 600 ms more (one more
    /// scan) so the published snapshot postdates anything the test set up before. Unless the
    /// arguments give a `--runtime-dir`, the agent gets a temporary one, removed with the
    /// [`Agent`]: a test's probe journal never reaches the host's `/run/tcp-liveness`.
    pub fn test(binary: impl Into<PathBuf>, port: u16) -> Self {
        let mut launch = Self::new(binary, port).args(&["--scan-interval", TEST_SCAN_INTERVAL]);
        launch.rust_log = Some(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
        launch.settle = Duration::from_millis(600);
        launch.own_runtime_dir = true;
        launch
    }

    /// More `run` arguments (thresholds, `--config`, `--alertmanager-url`, …). A
    /// `--scan-interval` among them (`250ms`, `2s`) becomes the [`Agent::scan_interval`] the
    /// waits derive their deadlines from; an interval set in a `--config` file is not seen.
    ///
    /// # Panics
    /// When a `--scan-interval` value is neither whole milliseconds (`ms`) nor whole seconds (`s`).
    #[must_use]
    pub fn args(mut self, args: &[&str]) -> Self {
        if let Some(at) = args.iter().position(|a| *a == "--scan-interval")
            && let Some(value) = args.get(at + 1)
        {
            self.scan_interval = parse_interval(value)
                .unwrap_or_else(|| panic!("--scan-interval {value}: not `Nms` or `Ns`"));
        }
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// `n` scan intervals of the agent this launch starts (as [`Agent::scans`]): for a test
    /// that derives an argument (a threshold) from the agent's cadence before starting it.
    #[must_use]
    pub fn scans(&self, n: u32) -> Duration {
        self.scan_interval * n
    }

    /// Listens on `ip` (e.g. `0.0.0.0`, for clients in other namespaces) instead of 127.0.0.1;
    /// the harness still asks it on 127.0.0.1, so `ip` must include loopback.
    #[must_use]
    pub fn listen_on(mut self, ip: &str) -> Self {
        ip.clone_into(&mut self.listen_ip);
        self
    }

    /// `RUST_LOG` for the agent; None leaves the caller's environment as it is.
    #[must_use]
    pub fn rust_log(mut self, filter: Option<&str>) -> Self {
        self.rust_log = filter.map(str::to_owned);
        self
    }

    /// Writes the agent's log (stderr) to `file` instead of the caller's stderr.
    #[must_use]
    pub fn log_to(mut self, file: File) -> Self {
        self.log = Some(file);
        self
    }

    /// Runs the agent as `nobody` with exactly `capabilities` (setpriv's syntax,
    /// `+bpf,+perfmon,…`) in its effective, inheritable, ambient and bounding sets and
    /// `no_new_privs` set: what a systemd unit with those capabilities gives it. setpriv execs the
    /// agent, so the child's pid is the agent's.
    #[must_use]
    pub fn confined(mut self, capabilities: &str) -> Self {
        self.capabilities = Some(capabilities.to_owned());
        self
    }

    /// Starts the agent in a process group of its own: the terminal's Ctrl-C reaches only the
    /// caller, which then stops everything in order (the demo).
    #[must_use]
    pub fn own_process_group(mut self) -> Self {
        self.own_process_group = true;
        self
    }

    /// How long the agent may take to answer `/healthz` (default 60 s).
    #[must_use]
    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.ready_within = timeout;
        self
    }

    /// How long the agent may take to exit after SIGTERM before it is killed (default 15 s).
    #[must_use]
    pub fn stop_within(mut self, timeout: Duration) -> Self {
        self.stop_within = timeout;
        self
    }

    /// Spawns the agent and waits until it serves ([`Agent::wait_ready`]).
    ///
    /// # Errors
    /// When the agent cannot be spawned, exits first, or does not serve within the ready timeout;
    /// it is stopped then.
    pub fn start(self) -> anyhow::Result<Agent> {
        let mut agent = self.spawn()?;
        agent.wait_ready(|| false)?;
        Ok(agent)
    }

    /// Spawns the agent without waiting for it: call [`Agent::wait_ready`] next.
    ///
    /// # Errors
    /// When the binary (or `setpriv`, for a confined launch) cannot be spawned.
    pub fn spawn(self) -> anyhow::Result<Agent> {
        let listen = format!("{}:{}", self.listen_ip, self.port);
        let mut cmd = match &self.capabilities {
            Some(caps) => {
                let mut setpriv = setpriv(caps);
                setpriv.arg(&self.binary);
                setpriv
            }
            None => Command::new(&self.binary),
        };
        cmd.args(["run", "--listen", &listen])
            .args(&self.args)
            .stdout(Stdio::null());
        let given = self
            .args
            .iter()
            .any(|a| a == "--runtime-dir" || a.starts_with("--runtime-dir="));
        let runtime_dir = if self.own_runtime_dir && !given {
            let dir = tempfile::tempdir().context("temporary --runtime-dir")?;
            cmd.arg("--runtime-dir").arg(dir.path());
            Some(dir)
        } else {
            None
        };
        if let Some(filter) = &self.rust_log {
            cmd.env("RUST_LOG", filter);
        }
        if let Some(file) = self.log {
            cmd.stderr(file);
        }
        if self.own_process_group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(Agent::new(
            child,
            self.port,
            (self.ready_within, self.settle, self.stop_within),
            self.scan_interval,
            runtime_dir,
        ))
    }
}

/// `250ms` or `2s` as a duration; None for any other form (the agent accepts more, the tests
/// use these two).
fn parse_interval(value: &str) -> Option<Duration> {
    if let Some(ms) = value.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    value
        .strip_suffix('s')?
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `setpriv` as nobody with exactly `caps` (`+bpf,+perfmon,…`), `no_new_privs`: the program and
/// its arguments follow. What [`Launch::confined`] runs, for a test that runs the binary itself.
#[must_use]
pub fn setpriv(caps: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--no-new-privs",
    ])
    .arg(format!("--inh-caps=-all,{caps}"))
    .arg(format!("--ambient-caps=-all,{caps}"))
    .arg(format!("--bounding-set=-all,{caps}"));
    cmd
}

/// Runs `AGENT run --listen 127.0.0.1:PORT EXTRA…` through [`setpriv`] with exactly `caps`, for
/// a test of what the agent refuses at start; returns its exit code and stderr.
///
/// # Panics
/// `setpriv` cannot run, or the agent is still running after 30 s (it started: it is killed and
/// the test fails, with its stderr).
#[must_use]
pub fn run_confined(agent: &str, caps: &str, port: u16, extra: &[&str]) -> (Option<i32>, String) {
    let listen = format!("127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = setpriv(caps)
        .arg(agent)
        .args(["run", "--listen", &listen])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("setpriv runs");
    let exited = crate::wait::poll(Duration::from_secs(30), crate::wait::POLL_EVERY, || {
        child.try_wait()
    })
    .expect("wait for the agent");
    let stderr = std::fs::read_to_string(log.path()).expect("agent log");
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("started with {caps} and still running after 30 s: {stderr}");
    };
    (status.code(), stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_interval_follows_the_arguments() {
        let test = Launch::test("tcp-liveness", 1);
        assert_eq!(test.scan_interval, Duration::from_millis(250));
        let slow = Launch::test("tcp-liveness", 1).args(&["--scan-interval", "2s"]);
        assert_eq!(slow.scan_interval, Duration::from_secs(2));
        assert_eq!(
            Launch::new("tcp-liveness", 1).scan_interval,
            DEFAULT_SCAN_INTERVAL
        );
        assert_eq!(parse_interval("1m"), None);
    }
}
