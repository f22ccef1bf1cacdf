//! Network namespaces the benchmark creates (and deletes on drop), and worker processes inside them.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{Context as _, bail};

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd}"))?;
    if !status.success() {
        bail!("{cmd} {args:?} failed ({status})");
    }
    Ok(())
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("tlbench-{tag}-{}", std::process::id());
        let _ = run("ip", &["netns", "del", &name]);
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Starts `xtask bench --worker ARGS…` in this namespace with the hard RLIMIT_NOFILE as its
    /// soft limit, and waits for its first output line.
    pub fn worker(&self, args: &[&str]) -> anyhow::Result<Worker> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c"])
            .arg(r#"ulimit -n "$(ulimit -Hn)"; exec "$0" "$@""#)
            .arg(exe)
            .args(["bench", "--worker"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        if first.is_empty() {
            let status = child.wait()?;
            bail!("worker {args:?} exited before answering: {status}");
        }
        Ok(Worker {
            child,
            stdin,
            stdout,
            first: first.trim().to_owned(),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Two namespaces joined by a veth pair: `server` 10.S.0.1, `client` 10.S.0.2.
pub struct Pair {
    pub server: Netns,
    pub client: Netns,
    pub server_ip: String,
}

impl Pair {
    pub fn new(subnet: u8) -> anyhow::Result<Self> {
        let server = Netns::new("srv")?;
        let client = Netns::new("cli")?;
        let (vs, vc) = (format!("tlbs{subnet}"), format!("tlbc{subnet}"));
        run(
            "ip",
            &[
                "link",
                "add",
                &vs,
                "netns",
                &server.name,
                "type",
                "veth",
                "peer",
                "name",
                &vc,
                "netns",
                &client.name,
            ],
        )?;
        for (ns, dev, host) in [(&server, &vs, 1), (&client, &vc, 2)] {
            let addr = format!("10.{subnet}.0.{host}/24");
            run("ip", &["-n", &ns.name, "addr", "add", &addr, "dev", dev])?;
            run("ip", &["-n", &ns.name, "link", "set", dev, "up"])?;
        }
        Ok(Self {
            server,
            client,
            server_ip: format!("10.{subnet}.0.1"),
        })
    }
}

/// A worker process: its first output line, a command channel, killed on drop.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub first: String,
}

impl Worker {
    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    pub fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_owned())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // EOF on stdin ends a worker; kill in case it is blocked elsewhere.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
