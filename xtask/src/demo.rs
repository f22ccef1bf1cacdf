//! `cargo xtask demo`: the agent finding a leak and a dead peer, live, next to a healthy connection.
//!
//! Two network namespaces joined by a veth pair hold three connections made by
//! `harness/tcp_peer.py`: a busy echo (healthy, never flagged), a server that never closes after
//! its client did (`CLOSE_WAIT` leak), and a client sending to a server that vanished (iptables
//! DROP in the server's namespace). The agent runs with 5 s thresholds, and its own commands
//! (`connections`, `check`) are printed every few seconds until the verdicts appear.
//! Everything it made is removed on exit: normal end, error or Ctrl-C (the guards' Drop).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use harness::{
    agent::{Agent, Launch},
    netns::NetPair,
    peer::Peer,
    ports::free_port_preferring,
    privilege::require_root,
};

const SERVER_NS: &str = "tl-demo-server";
const CLIENT_NS: &str = "tl-demo-client";
/// Addresses exist only inside the two namespaces this demo creates: 10.SUBNET.0.1 and .2.
const SUBNET: u8 = 250;
const SERVER_IP: &str = "10.250.0.1";
const CLIENT_IP: &str = "10.250.0.2";
const SUBNET_PREFIX: &str = "10.250.0.";
const BUSY_PORT: u16 = 7001;
const LEAK_PORT: u16 = 7002;
const VANISH_PORT: u16 = 7003;
const THRESHOLD: &str = "5s";
const REPORT_EVERY: Duration = Duration::from_secs(4);

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Stop after this many seconds; Ctrl-C stops earlier. The demo fails if by then the leak or
    /// the dead peer was not reported, or the healthy connection was.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    duration: u64,
    /// Agent port on 127.0.0.1; a free one is used when it is taken.
    #[arg(long, default_value_t = 9977)]
    port: u16,
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    require_root(
        "the demo",
        "it loads eBPF programs and creates network namespaces",
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    crate::setup::all()?;
    crate::cargo(&["build", "--release", "--package", "monitor"])?;
    let root = workspace_root();
    let agent_bin = root.join("target/release/tcp-liveness");
    let mut demo = Demo::default();
    let net = demo
        .net
        .insert(NetPair::create_named(SERVER_NS, CLIENT_NS, SUBNET)?);
    // Seen matches the table's lines by these constants.
    debug_assert_eq!(
        (net.server_ip.as_str(), net.client_ip.as_str()),
        (SERVER_IP, CLIENT_IP)
    );
    let port = free_port_preferring(args.port)?;
    if port != args.port {
        println!("port {} is taken; using {port}", args.port);
    }
    let log = root.join("target/demo-agent.log");
    let agent = demo.start_agent(&agent_bin, port, &log)?;
    let url = agent.url().to_owned();
    println!(
        "agent: {url} (scan every 1s, close_wait_after and unresponsive_after {THRESHOLD}), log: {}",
        log.display()
    );
    let ready = agent
        .wait_ready(|| stop.load(Ordering::SeqCst))
        .with_context(|| format!("the agent did not serve (see its log: {})", log.display()))?;
    if !ready || stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    demo.connections()?;

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
    net: Option<NetPair>,
    peers: Vec<Peer>,
    agent: Option<Agent>,
}

impl Demo {
    /// Spawns the agent (not yet serving: see `Agent::wait_ready`), its log (stderr) in `log`.
    fn start_agent(&mut self, bin: &Path, port: u16, log: &Path) -> anyhow::Result<&mut Agent> {
        let log =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let launch = Launch::new(bin, port)
            .args(&["--scan-interval", "1s"])
            .args(&[
                "--close-wait-after",
                THRESHOLD,
                "--unresponsive-after",
                THRESHOLD,
            ])
            // The agent's own default log level: the log file is for the curious.
            .rust_log(None)
            .log_to(log)
            // Its own process group: the terminal's Ctrl-C reaches only xtask, which then
            // stops everything in order.
            .own_process_group()
            .stop_within(Duration::from_secs(10));
        Ok(self.agent.insert(launch.spawn()?))
    }

    fn connections(&mut self) -> anyhow::Result<()> {
        let net = self.net.as_ref().context("no namespaces")?;
        let port = |p: u16| p.to_string();
        println!("\nconnections, {CLIENT_NS} ({CLIENT_IP}) -> {SERVER_NS} ({SERVER_IP}):");
        let mut start = |ns, args: &[&str]| -> anyhow::Result<()> {
            self.peers.push(Peer::start_in_own_group(ns, args)?);
            Ok(())
        };
        start(
            &net.server,
            &["server", SERVER_IP, &port(BUSY_PORT), "echo"],
        )?;
        start(
            &net.client,
            &["client", SERVER_IP, &port(BUSY_PORT), "busy"],
        )?;
        println!("  :{BUSY_PORT}  healthy: the client sends and reads echoes nonstop");
        start(
            &net.server,
            &["server", SERVER_IP, &port(LEAK_PORT), "no-close"],
        )?;
        start(
            &net.client,
            &["client", SERVER_IP, &port(LEAK_PORT), "close"],
        )?;
        println!(
            "  :{LEAK_PORT}  leak: the client closed, the server never calls close() (CLOSE_WAIT)"
        );
        start(
            &net.server,
            &["server", SERVER_IP, &port(VANISH_PORT), "echo"],
        )?;
        start(
            &net.client,
            &["client", SERVER_IP, &port(VANISH_PORT), "send"],
        )?;
        net.server.drop_input_to_port(VANISH_PORT)?;
        println!(
            "  :{VANISH_PORT}  dead peer: the client keeps sending, the server's host drops everything (iptables)"
        );
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Newest first: each client goes before its server, which would otherwise break its pipe.
        while let Some(peer) = self.peers.pop() {
            drop(peer);
        }
        // SIGTERM: the agent detaches its programs and exits 0.
        drop(self.agent.take());
        // Deleting a namespace removes its veth end and its iptables rules too.
        drop(self.net.take());
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
