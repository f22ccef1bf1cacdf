//! `tcp_peer.py`: the TCP peers the kernel tests and the demo run inside namespaces, each mode
//! one connection behaviour the agent must classify (see the script's docstring for the modes).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{cgroup::Cgroup, command::ChildGuard, netns::Netns};

/// The script, located through this crate's manifest directory (the harness is dev-only and
/// runs from the source tree).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tcp_peer.py");

/// How long a peer may take to print "ready" (listening, or connected and in its mode).
pub const READY_WITHIN: Duration = Duration::from_secs(15);

/// A `tcp_peer.py` process inside a namespace; killed on drop.
#[derive(Debug)]
pub struct Peer {
    child: ChildGuard,
    /// What it prints after "ready", line by line (reports such as `error ECONNABORTED`,
    /// `options ...` or `eof`).
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `tcp_peer.py ARGS…` in `ns` (e.g. `["server", ip, "7000", "echo"]`) and waits for
    /// its "ready" line.
    ///
    /// # Errors
    /// When it cannot start or is not ready within [`READY_WITHIN`]; the process is killed then.
    pub fn start(ns: &Netns, args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(ns, args, false, None, None)
    }

    /// [`start`](Self::start) inside `cgroup`: the process is in it before it opens any socket.
    ///
    /// # Errors
    /// As [`start`](Self::start), or the cgroup cannot be entered.
    pub fn start_in_cgroup(ns: &Netns, args: &[&str], cgroup: &Cgroup) -> anyhow::Result<Self> {
        Self::spawn(ns, args, false, None, Some(cgroup))
    }

    /// Sends the peer `SIGUSR1` (`recv-report` prints its socket options, `idle-report` sets its
    /// own `TCP_KEEPCNT` to 5).
    ///
    /// # Errors
    /// The signal cannot be sent.
    pub fn signal_usr1(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGUSR1)
    }

    /// Sends signal `signal` to the peer (what it does depends on the mode: see `tcp_peer.py`).
    ///
    /// # Errors
    /// kill(2) failed (the peer exited).
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid")?;
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// [`start`](Self::start) with the process renamed to `comm` (`prctl(PR_SET_NAME)`, any
    /// bytes: control characters and invalid UTF-8 included; the kernel keeps 15) before it
    /// opens any socket.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_named(ns: &Netns, args: &[&str], comm: &[u8]) -> anyhow::Result<Self> {
        Self::spawn(ns, args, false, Some(comm), None)
    }

    /// [`start`](Self::start) in a process group of its own: the terminal's Ctrl-C reaches only
    /// the caller, which then stops everything in order (the demo).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_in_own_group(ns: &Netns, args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(ns, args, true, None, None)
    }

    fn spawn(
        ns: &Netns,
        args: &[&str],
        own_group: bool,
        comm: Option<&[u8]>,
        cgroup: Option<&Cgroup>,
    ) -> anyhow::Result<Self> {
        let mut cmd = ns.command("python3");
        cmd.args(["-u", SCRIPT]).args(args).stdout(Stdio::piped());
        if let Some(comm) = comm {
            let hex = comm.iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
            cmd.env("TCP_PEER_COMM_HEX", hex);
        }
        if own_group {
            cmd.process_group(0);
        }
        if let Some(cgroup) = cgroup {
            cgroup.start_inside(&mut cmd)?;
        }
        let spawned = cmd.spawn().context("starting tcp_peer.py")?;
        let mut child = ChildGuard::new(spawned);
        let stdout = child.child_mut().stdout.take().context("peer stdout")?;
        // Read lines on a thread, so that a peer that never gets to "ready" is an error, not a
        // hang. The thread ends when the peer does (its stdout closes).
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let peer = Self { child, lines: rx };
        let line = peer.lines.recv_timeout(READY_WITHIN).unwrap_or_default();
        if line.trim() != "ready" {
            bail!(
                "tcp_peer.py {args:?} in {} did not start (said {line:?})",
                ns.name()
            );
        }
        Ok(peer)
    }

    /// The pid of the Python process, which owns the peer's sockets (`ip netns exec` execs it).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines the peer printed after "ready" since the last call, in order.
    #[must_use]
    pub fn take_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The next line the peer prints after "ready", waiting at most `within`; None when it
    /// prints nothing by then (or has exited).
    #[must_use]
    pub fn next_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Kills the peer now (its sockets close: a server's clients see a reset or FIN).
    pub fn stop(&mut self) {
        self.child.kill();
    }
}
