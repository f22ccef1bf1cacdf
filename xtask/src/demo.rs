//! `cargo xtask demo`: the agent finding a leak and a dead peer, live, next to a healthy connection.
//!
//! Two network namespaces joined by a veth pair hold three connections made by
//! monitor/tests/support/tcp_peer.py: a busy echo (healthy, never flagged), a server that never
//! closes after its client did (CLOSE_WAIT leak), and a client sending to a server that vanished
//! (iptables DROP in the server's namespace). The agent runs with 5 s thresholds, and its own
//! commands (`connections`, `check`) are printed every few seconds until the verdicts appear.
//! Everything it made is removed on exit: normal end, error or Ctrl-C (the guard's Drop).

use std::{
    io::{BufRead as _, BufReader},
    net::TcpListener,
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

const SERVER_NS: &str = "tl-demo-server";
const CLIENT_NS: &str = "tl-demo-client";
/// Addresses exist only inside the two namespaces this demo creates.
const SERVER_IP: &str = "10.250.0.1";
const CLIENT_IP: &str = "10.250.0.2";
const SUBNET_PREFIX: &str = "10.250.0.";
const BUSY_PORT: u16 = 7001;
const LEAK_PORT: u16 = 7002;
const VANISH_PORT: u16 = 7003;
const THRESHOLD: &str = "5s";
const REPORT_EVERY: Duration = Duration::from_secs(4);

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds; Ctrl-C stops earlier. The demo fails if by then the leak or
    /// the dead peer was not reported, or the healthy connection was.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    duration: u64,
    /// Agent port on 127.0.0.1; a free one is used when it is taken.
    #[arg(long, default_value_t = 9977)]
    port: u16,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        bail!("the demo needs root: it loads eBPF programs and creates network namespaces");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    crate::setup::all()?;
    crate::cargo(&["build", "--release", "--package", "monitor"])?;
    let root = workspace_root();
    let agent_bin = root.join("target/release/tcp-liveness");
    let mut demo = Demo::default();
    demo.network()?;
    let port = free_port(args.port)?;
    let url = format!("http://127.0.0.1:{port}");
    let log = root.join("target/demo-agent.log");
    demo.start_agent(&agent_bin, port, &log)?;
    println!(
        "agent: {url} (scan every 1s, close_wait_after and unresponsive_after {THRESHOLD}), log: {}",
        log.display()
    );
    demo.wait_healthy(&url, &stop)?;
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    demo.connections(&root.join("monitor/tests/support/tcp_peer.py"))?;

    // One scan after the connections exist, so the first table shows them.
    sleep_unless(&stop, Duration::from_millis(1500));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let mut seen = Seen::default();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let at = start.elapsed().as_secs();
        println!("\n=== {at}s: tcp-liveness connections (demo namespaces only) ===");
        let table = agent_output(&agent_bin, "connections", &url)?;
        for (i, line) in table.lines().enumerate() {
            if i == 0 || line.contains(SUBNET_PREFIX) {
                println!("{line}");
                seen.update(line, at);
            }
        }
        println!("=== {at}s: tcp-liveness check (every alert group on this host) ===");
        print!("{}", agent_output(&agent_bin, "check", &url)?);
        sleep_unless(
            &stop,
            REPORT_EVERY.min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    let interrupted = stop.load(Ordering::SeqCst);
    println!("\n=== summary ===\n{}", seen.summary());
    if !interrupted && !seen.all_as_expected() {
        bail!(
            "the agent did not report what the demo set up (agent log: {})",
            log.display()
        );
    }
    Ok(())
}

/// What the demo saw, by connection: when each verdict first appeared.
#[derive(Default)]
struct Seen {
    close_wait: Option<u64>,
    unresponsive: Option<u64>,
    busy_flagged: Option<u64>,
}

impl Seen {
    /// One line of the `connections` table; its last column lists the suspect reasons.
    fn update(&mut self, line: &str, at: u64) {
        let reasons = line.split_whitespace().last().unwrap_or("-");
        let leak = format!("{SERVER_IP}:{LEAK_PORT}");
        let vanished = format!("{SERVER_IP}:{VANISH_PORT}");
        let busy = format!("{SERVER_IP}:{BUSY_PORT}");
        if line.starts_with("close_wait")
            && line.contains(&leak)
            && reasons.contains("close_wait_stuck")
        {
            self.close_wait.get_or_insert(at);
        }
        if line.contains(&vanished) && reasons.contains("peer_unresponsive") {
            self.unresponsive.get_or_insert(at);
        }
        if line.contains(&busy) && reasons != "-" {
            self.busy_flagged.get_or_insert(at);
        }
    }

    fn all_as_expected(&self) -> bool {
        self.close_wait.is_some() && self.unresponsive.is_some() && self.busy_flagged.is_none()
    }

    fn summary(&self) -> String {
        let when =
            |t: Option<u64>| t.map_or("not reported".to_owned(), |t| format!("reported at {t}s"));
        format!(
            "CLOSE_WAIT leak, server port {LEAK_PORT}:  close_wait_stuck {}\n\
             dead peer, server port {VANISH_PORT}:        peer_unresponsive {}\n\
             healthy, server port {BUSY_PORT}:          {}",
            when(self.close_wait),
            when(self.unresponsive),
            self.busy_flagged
                .map_or("never flagged".to_owned(), |t| format!("FLAGGED at {t}s")),
        )
    }
}

/// Everything the demo started or created; Drop removes it all, in reverse order.
#[derive(Default)]
struct Demo {
    namespaces: Vec<&'static str>,
    peers: Vec<Child>,
    agent: Option<Child>,
}

impl Demo {
    fn network(&mut self) -> anyhow::Result<()> {
        for ns in [SERVER_NS, CLIENT_NS] {
            // Leftovers of a run that was killed before it could clean up.
            let _ = quiet(Command::new("ip").args(["netns", "del", ns]));
            crate::setup::run("ip", &["netns", "add", ns])?;
            self.namespaces.push(ns);
        }
        crate::setup::run(
            "ip",
            &[
                "link", "add", "tldemo0", "netns", SERVER_NS, "type", "veth", "peer", "name",
                "tldemo1", "netns", CLIENT_NS,
            ],
        )?;
        for (ns, dev, ip) in [
            (SERVER_NS, "tldemo0", SERVER_IP),
            (CLIENT_NS, "tldemo1", CLIENT_IP),
        ] {
            crate::setup::run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            )?;
            crate::setup::run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            crate::setup::run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn start_agent(&mut self, bin: &Path, port: u16, log: &Path) -> anyhow::Result<()> {
        let log =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--scan-interval",
                "1s",
            ])
            .args([
                "--close-wait-after",
                THRESHOLD,
                "--unresponsive-after",
                THRESHOLD,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: the terminal's Ctrl-C reaches only xtask, which then
            // stops everything in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.agent = Some(child);
        Ok(())
    }

    fn connections(&mut self, script: &Path) -> anyhow::Result<()> {
        let script = script.to_str().context("peer script path is not UTF-8")?;
        let port = |p: u16| p.to_string();
        println!("\nconnections, {CLIENT_NS} ({CLIENT_IP}) -> {SERVER_NS} ({SERVER_IP}):");
        self.peer(
            SERVER_NS,
            script,
            &["server", SERVER_IP, &port(BUSY_PORT), "echo"],
        )?;
        self.peer(
            CLIENT_NS,
            script,
            &["client", SERVER_IP, &port(BUSY_PORT), "busy"],
        )?;
        println!("  :{BUSY_PORT}  healthy: the client sends and reads echoes nonstop");
        self.peer(
            SERVER_NS,
            script,
            &["server", SERVER_IP, &port(LEAK_PORT), "no-close"],
        )?;
        self.peer(
            CLIENT_NS,
            script,
            &["client", SERVER_IP, &port(LEAK_PORT), "close"],
        )?;
        println!(
            "  :{LEAK_PORT}  leak: the client closed, the server never calls close() (CLOSE_WAIT)"
        );
        self.peer(
            SERVER_NS,
            script,
            &["server", SERVER_IP, &port(VANISH_PORT), "echo"],
        )?;
        self.peer(
            CLIENT_NS,
            script,
            &["client", SERVER_IP, &port(VANISH_PORT), "send"],
        )?;
        crate::setup::run(
            "ip",
            &[
                "netns",
                "exec",
                SERVER_NS,
                "iptables",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                &port(VANISH_PORT),
                "-j",
                "DROP",
            ],
        )?;
        println!(
            "  :{VANISH_PORT}  dead peer: the client keeps sending, the server's host drops everything (iptables)"
        );
        Ok(())
    }

    /// Until /healthz answers 200; an error if the agent exits first or takes a minute.
    fn wait_healthy(&mut self, url: &str, stop: &AtomicBool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if let Some(agent) = self.agent.as_mut()
                && let Ok(Some(status)) = agent.try_wait()
            {
                bail!("the agent exited ({status}) before serving (see its log)");
            }
            let ok = Command::new("curl")
                .args([
                    "-sf",
                    "-m",
                    "2",
                    "-o",
                    "/dev/null",
                    &format!("{url}/healthz"),
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("the agent did not become healthy at {url}/healthz (see its log)")
    }

    /// Starts tcp_peer.py in `ns` and waits for its "ready" line.
    fn peer(&mut self, ns: &str, script: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-u", script])
            .args(args)
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("starting tcp_peer.py")?;
        let stdout = child.stdout.take().context("peer stdout")?;
        self.peers.push(child);
        // On a thread, so that a peer that never gets ready is an error, not a hang.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) if line.trim() == "ready" => Ok(()),
            other => bail!("tcp_peer.py {args:?} in {ns} did not start (said {other:?})"),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Newest first: each client goes before its server, which would otherwise break its pipe.
        for peer in self.peers.iter_mut().rev() {
            let _ = peer.kill();
            let _ = peer.wait();
        }
        if let Some(mut agent) = self.agent.take() {
            // SIGTERM: the agent detaches its programs and exits 0.
            let _ = quiet(Command::new("kill").args(["-TERM", &agent.id().to_string()]));
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(agent.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
        // Deleting a namespace removes its veth end and its iptables rules too.
        for ns in self.namespaces.drain(..).rev() {
            let _ = quiet(Command::new("ip").args(["netns", "del", ns]));
        }
        println!(
            "demo: stopped the agent and the peers, removed namespaces {SERVER_NS} and {CLIENT_NS}"
        );
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// `wanted` if nothing listens there, else any free port.
fn free_port(wanted: u16) -> anyhow::Result<u16> {
    if TcpListener::bind(("127.0.0.1", wanted)).is_ok() {
        return Ok(wanted);
    }
    let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
    println!("port {wanted} is taken; using {port}");
    Ok(port)
}

/// stdout of `tcp-liveness <command> --agent <url>`; `check` exits 1 when it lists alerts.
fn agent_output(bin: &Path, command: &str, url: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args([command, "--agent", url])
        .output()
        .with_context(|| format!("running tcp-liveness {command}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0 | 1) => Ok(text),
        _ => bail!(
            "tcp-liveness {command} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn quiet(cmd: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_verdicts_from_connection_lines() {
        let mut seen = Seen::default();
        // Lines as `tcp-liveness connections` prints them (suspect reasons last).
        seen.update("close_wait   10.250.0.1:7002  10.250.0.2:43072  1/python3  5s  5s  5s  5s  5s  0  0  -", 1);
        seen.update("established  10.250.0.1:7001  10.250.0.2:45930  1/python3  5s  0ms  0ms  0ms  0ms  4  0  -", 1);
        assert!(!seen.all_as_expected());
        seen.update("close_wait   10.250.0.1:7002  10.250.0.2:43072  1/python3  9s  9s  9s  9s  9s  0  0  close_wait_stuck", 4);
        seen.update("established  10.250.0.2:59140  10.250.0.1:7003  2/python3  9s  27ms  27ms  -  9s  4448  4  peer_unresponsive", 8);
        assert_eq!((seen.close_wait, seen.unresponsive), (Some(4), Some(8)));
        assert!(seen.all_as_expected());
        seen.update("established  10.250.0.2:45930  10.250.0.1:7001  3/python3  9s  9s  9s  9s  9s  4  0  idle_no_keepalive", 12);
        assert_eq!(seen.busy_flagged, Some(12));
        assert!(!seen.all_as_expected());
    }
}
