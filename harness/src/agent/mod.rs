//! The agent under test or benchmark: the `tcp-liveness` binary as a child process, asked over
//! HTTP, stopped with SIGTERM (it detaches its programs and exits 0).
//!
//! Start one with [`Launch`]. Queries that tests repeat many times ([`Agent::get`],
//! [`Agent::metric`], [`Agent::connections`]) panic on an HTTP failure; [`Agent::try_get`] is
//! the same GET as an error, for tools.

mod launch;

use std::{
    process::{Child, ExitStatus},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

pub use launch::{DEFAULT_SCAN_INTERVAL, Launch, TEST_SCAN_INTERVAL, run_confined, setpriv};

use crate::{http, metrics, wait};

/// How often start-up and shutdown are polled.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A running agent; stopped (SIGTERM, then SIGKILL after its stop timeout) on drop.
#[derive(Debug)]
pub struct Agent {
    /// None once stopped.
    child: Option<Child>,
    pid: u32,
    port: u16,
    url: String,
    ready_within: Duration,
    settle: Duration,
    stop_within: Duration,
    scan_interval: Duration,
    /// Its temporary `--runtime-dir`, removed after the agent stopped (fields drop after
    /// [`Drop::drop`]).
    _runtime_dir: Option<tempfile::TempDir>,
}

/// The agent reads the kernel's socket state with at most 1/this of a core: its
/// `scan::KERNEL_READ_SHARE_WALKING` while slot walks succeed, the smaller of its two shares
/// (`scan::KERNEL_READ_SHARE` otherwise), so the slower pace bounds a wait either way; the
/// integration tests check that the two agree.
pub const KERNEL_READ_SHARE: u32 = 1000;

/// How many scans a change may take to show in what the agent serves: the deadline of
/// [`Agent::wait_connections`], and a unit for the tests' own waits ([`Agent::scans`]). Generous
/// (10 s at the tests' 250 ms) because a 2-core machine running other builds delays scans.
pub const SCANS_TO_SHOW: u32 = 40;

/// The longest wait between two of the agent's passes over the held sockets (its
/// `scan::holders::HELD_READ_MAX_AGE`; the integration tests check that the two agree). The
/// passes are paced by their CPU time: on a busy machine they come this far apart, however
/// often the agent scans.
pub const HELD_READ_MAX_AGE: Duration = Duration::from_secs(15);

/// The longest wait between two of the agent's passes over every process's descriptors where
/// the slot walk brings the values between them (its `scan::holders::HOLDERS_READ_MAX_AGE`;
/// checked as [`HELD_READ_MAX_AGE`] is): the holders a pass reads come this far apart at most.
pub const HOLDERS_READ_MAX_AGE: Duration = Duration::from_mins(1);

impl Agent {
    fn new(
        child: Child,
        port: u16,
        (ready_within, settle, stop_within): (Duration, Duration, Duration),
        scan_interval: Duration,
        runtime_dir: Option<tempfile::TempDir>,
    ) -> Self {
        Self {
            pid: child.id(),
            child: Some(child),
            port,
            url: format!("http://127.0.0.1:{port}"),
            ready_within,
            settle,
            stop_within,
            scan_interval,
            _runtime_dir: runtime_dir,
        }
    }

    /// The loopback port it serves on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scan interval it was started with (`--scan-interval`, else the agent's default).
    #[must_use]
    pub fn scan_interval(&self) -> Duration {
        self.scan_interval
    }

    /// `n` scan intervals: a deadline in the agent's own cadence, for a wait on what its scans
    /// publish.
    #[must_use]
    pub fn scans(&self, n: u32) -> Duration {
        self.scan_interval * n
    }

    /// The deadline of a wait for a verdict (or any change) the agent's rules make `threshold`
    /// after its cause: `threshold` plus [`SCANS_TO_SHOW`] scans ([`Agent::scans`]) for a scan
    /// to see it and publish it on a busy machine. A wait, not a latency bound: pair it with an
    /// assertion that the verdict did not come before `threshold` (the flagged connection's own
    /// ages), which no slowness can break.
    #[must_use]
    pub fn after(&self, threshold: Duration) -> Duration {
        threshold + self.scans(SCANS_TO_SHOW)
    }

    /// The deadline of a wait for what only a pass over the held sockets shows, on its own or
    /// with a verdict due `threshold` after its cause (`Duration::ZERO`: no verdict): the later
    /// of the verdict's deadline ([`Agent::after`]) and the next pass (at most
    /// [`HOLDERS_READ_MAX_AGE`] after the last where the agent runs the slot walk, which brings
    /// the values at least every [`HELD_READ_MAX_AGE`]; at most that without it), plus
    /// [`SCANS_TO_SHOW`] scans to show it.
    ///
    /// Without `--per-packet-hooks` (as the tests run the agent), only a pass shows a socket's
    /// holders, hence the owner (`pid`, `comm`, `cgroup`, pod) of a socket its process did not
    /// `connect()` or `listen()` on (an accepted one) and the owner name of its alert groups, and
    /// an accepted descriptor's stack; the times of its last send and receive (`since_send`,
    /// `since_recv`, `idle`); and, for a socket a pass has seen, what the last pass read
    /// (`keepalive`, `user_timeout`, `unacked_bytes`, `send_queue_bytes`, `srtt`,
    /// `since_retrans_start`): options set, or bytes left unacknowledged, since the last pass
    /// show at the next. A verdict that needs one of those after its cause (`peer_unresponsive`
    /// needs the bytes the vanished peer left unacknowledged) waits for that pass too.
    #[must_use]
    pub fn held_pass_and(&self, threshold: Duration) -> Duration {
        threshold.max(HOLDERS_READ_MAX_AGE) + self.scans(SCANS_TO_SHOW)
    }

    /// Waits until the agent has completed `n` more passes over the held sockets than it had at
    /// the call (`tcp_liveness_held_socket_reads_total`, published by the scan that ran the
    /// pass, after it judged the sockets with it), within `n` × [`HOLDERS_READ_MAX_AGE`] plus
    /// [`SCANS_TO_SHOW`] scans: after it, what a pass reads of a socket as it was at the call
    /// (its holders, its times and options) is in `/connections`. `n` = 2: the pass in progress
    /// at the call may have read it before.
    ///
    /// # Panics
    /// When the passes do not come within that deadline (or the agent has no `iter/task_file`
    /// program: it publishes no such counter), or `/metrics` cannot be read.
    pub fn wait_held_passes(&self, n: u32) {
        let within = HOLDERS_READ_MAX_AGE * n + self.scans(SCANS_TO_SHOW);
        let what = format!("{n} more passes over the held sockets");
        self.wait_count("tcp_liveness_held_socket_reads_total", n, &what, within);
    }

    /// How long `n` more reads of the kernel's socket state may take at the agent's own pace:
    /// the agent reads at most every `KERNEL_READ_SHARE` times the CPU time a read used and never
    /// more often than a scan, so `n` reads come within `n` × max(scan interval,
    /// [`KERNEL_READ_SHARE`] × the mean wall time of its reads so far — wall time being at
    /// least the CPU time it paces by), plus two scans for the result to be published.
    ///
    /// # Panics
    /// When `/metrics` cannot be read.
    #[must_use]
    pub fn kernel_reads(&self, n: u32) -> Duration {
        let reads = self
            .metric("tcp_liveness_kernel_reads_total")
            .unwrap_or(0.0);
        let seconds = self
            .metric("tcp_liveness_kernel_read_seconds_total")
            .unwrap_or(0.0);
        let mean = if reads > 0.0 { seconds / reads } else { 0.0 };
        let pace = self
            .scan_interval
            .max(Duration::from_secs_f64(mean * f64::from(KERNEL_READ_SHARE)));
        pace * n + self.scans(2)
    }

    /// Waits until the agent has completed `n` more reads of the kernel's socket state than it
    /// had at the call (`tcp_liveness_kernel_reads_total`), within [`Agent::kernel_reads`]: after
    /// it, values only the kernel keeps (queues, options set without I/O) are in `/connections`.
    ///
    /// # Panics
    /// When the reads do not come within that deadline, or `/metrics` cannot be read.
    pub fn wait_kernel_reads(&self, n: u32) {
        let what = format!("{n} more kernel socket state reads");
        self.wait_count(
            "tcp_liveness_kernel_reads_total",
            n,
            &what,
            self.kernel_reads(n),
        );
    }

    /// Waits until the agent has published `n` more scans than it had at the call
    /// (`tcp_liveness_scan_duration_seconds_count`), within [`SCANS_TO_SHOW`] + `n` scans: after
    /// it, what a scan publishes from what it judged at the call (its metrics, `/alerts`) is
    /// out. `n` = 2: the scan in progress at the call may have judged before. Not every scan
    /// reads the held sockets (their holders, times and options): for those,
    /// [`Agent::wait_held_passes`].
    ///
    /// # Panics
    /// When the scans do not come within that deadline, or `/metrics` cannot be read.
    pub fn wait_scans(&self, n: u32) {
        let within = self.scans(SCANS_TO_SHOW + n);
        let what = format!("{n} more scans");
        self.wait_count("tcp_liveness_scan_duration_seconds_count", n, &what, within);
    }

    /// Waits until the counter `series` of `/metrics` has grown by `n` since the call.
    fn wait_count(&self, series: &str, n: u32, what: &str, within: Duration) {
        let count = || self.metric(series).unwrap_or(0.0);
        let target = count() + f64::from(n);
        wait::wait_for(what, within, || (count() >= target).then_some(()));
    }

    /// Polls `/connections?netns=INODE` until exactly `n` connections satisfy `matches`, and
    /// returns them; `what` names them in the failure. For what the hooks and the scans show;
    /// a value only a pass over the held sockets shows needs [`Agent::held_pass_and`].
    ///
    /// # Panics
    /// When that is not the case within [`SCANS_TO_SHOW`] scans, or `/connections` cannot be
    /// read.
    pub fn wait_connections(
        &self,
        netns_inode: u64,
        n: usize,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let what = format!("{n} {what} in /connections");
        wait::wait_for(&what, self.scans(SCANS_TO_SHOW), || {
            let found: Vec<Value> = self
                .connections_in(netns_inode)
                .into_iter()
                .filter(|c| matches(c))
                .collect();
            (found.len() == n).then_some(found)
        })
    }

    /// Waits until `GET /healthz` answers 200, then for the launch's settle time. Ok(false) when
    /// `cancelled()` turned true first (e.g. Ctrl-C).
    ///
    /// # Errors
    /// When the agent was stopped already, exits first (a healthy answer from another process on
    /// our port must not count), or does not answer within the launch's ready timeout.
    pub fn wait_ready(&mut self, cancelled: impl Fn() -> bool) -> anyhow::Result<bool> {
        let port = self.port;
        let child = self.child.as_mut().context("agent already stopped")?;
        let ready = wait::poll(self.ready_within, POLL_EVERY, || {
            if let Some(status) = child.try_wait()? {
                bail!("agent exited during start-up: {status}");
            }
            if cancelled() {
                return Ok(Some(false));
            }
            Ok(matches!(http::get(port, "/healthz"), Ok((200, _))).then_some(true))
        })?;
        let Some(ready) = ready else {
            bail!(
                "agent did not answer /healthz within {:?}",
                self.ready_within
            );
        };
        if ready {
            std::thread::sleep(self.settle);
        }
        Ok(ready)
    }

    /// The agent's pid (setpriv execs it, so also for a confined launch).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://127.0.0.1:PORT`: what `tcp-liveness check --agent` takes.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The body of `GET path` (e.g. `/metrics`).
    ///
    /// # Errors
    /// When the request fails or the status is not 2xx (the error has the status and body).
    pub fn try_get(&self, path: &str) -> anyhow::Result<String> {
        http::get_ok(self.port, path)
    }

    /// The body of `GET path`.
    ///
    /// # Panics
    /// When the request fails or the status is not 2xx.
    #[must_use]
    pub fn get(&self, path: &str) -> String {
        self.try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    /// The value of one sample of `/metrics`, e.g. `tcp_liveness_connections{state="listen"}`
    /// (series exactly as rendered); None when the agent does not publish it.
    ///
    /// # Panics
    /// When `/metrics` cannot be read.
    #[must_use]
    pub fn metric(&self, series: &str) -> Option<f64> {
        metrics::value(&self.get("/metrics"), series)
    }

    /// `/connections`: every connection the agent tracks, as JSON objects.
    ///
    /// # Panics
    /// When the request fails or the answer is not a JSON array.
    #[must_use]
    pub fn connections(&self) -> Vec<Value> {
        serde_json::from_str(&self.get("/connections")).expect("/connections is JSON")
    }

    /// `/connections?netns=INODE`: the connections of one network namespace.
    ///
    /// # Panics
    /// As [`connections`](Self::connections).
    #[must_use]
    pub fn connections_in(&self, netns_inode: u64) -> Vec<Value> {
        let body = self.get(&format!("/connections?netns={netns_inode}"));
        serde_json::from_str(&body).expect("/connections is JSON")
    }

    /// Sends SIGTERM and waits for the exit status.
    ///
    /// # Errors
    /// When the agent does not exit within the launch's stop timeout (it is killed then), was
    /// stopped already, or its status cannot be read.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("agent already stopped")?;
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill() on the pid of a child we spawned and have not reaped, so it cannot
        // have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let exited = wait::poll(self.stop_within, POLL_EVERY, || child.try_wait())?;
        exited.ok_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            anyhow!(
                "agent did not exit within {:?} of SIGTERM",
                self.stop_within
            )
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
