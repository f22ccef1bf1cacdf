//! `xtask bench --worker …`: processes the benchmark starts inside its namespaces (through
//! `ip netns exec`), controlled over stdin/stdout. EOF on stdin ends them. [`spawn`] starts one
//! and gives the benchmark its [`Worker`] handle; [`main`] is the worker's side.
//!
//! - `hold PORT COUNT`: listen on 127.0.0.1:PORT, open COUNT connections to it and keep both ends
//!   (2 × COUNT sockets); prints `ready COUNT`.
//! - `server ADDR:PORT`: accept and keep every connection, never close, discard what arrives;
//!   prints `listening`.
//! - `client ADDR:PORT close|stream`: connect; prints `port LOCAL_PORT`. `close`: closes the
//!   socket on the next stdin line, then prints `closed`. `stream`: sends 512 B every 20 ms.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdin, ChildStdout, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use harness::netns::Netns;

/// Starts `xtask bench --worker ARGS…` in `ns` with the hard `RLIMIT_NOFILE` as its soft limit,
/// and waits for its first output line.
pub(super) fn spawn(ns: &Netns, args: &[&str]) -> anyhow::Result<Worker> {
    let exe = std::env::current_exe()?;
    let mut child = ns
        .command("sh")
        .arg("-c")
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

/// A worker process: its first output line, a command channel, killed on drop.
pub(super) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub first: String,
}

impl Worker {
    pub(super) fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Whether the process has ended (or cannot be asked): what it held is gone.
    pub(super) fn exited(&mut self) -> bool {
        self.child
            .try_wait()
            .map_or(true, |status| status.is_some())
    }

    pub(super) fn read_line(&mut self) -> anyhow::Result<String> {
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

pub(super) fn main(args: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| args.get(i).context("missing worker argument");
    match arg(0)?.as_str() {
        "hold" => hold(arg(1)?.parse()?, arg(2)?.parse()?),
        "server" => server(arg(1)?),
        "client" => client(arg(1)?, arg(2)?),
        other => bail!("unknown worker {other:?}"),
    }
}

fn wait_for_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn hold(port: u16, count: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let acceptor = thread::spawn(move || -> std::io::Result<Vec<TcpStream>> {
        let mut accepted = Vec::with_capacity(count);
        while accepted.len() < count {
            accepted.push(listener.accept()?.0);
        }
        Ok(accepted)
    });
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(TcpStream::connect(("127.0.0.1", port))?);
    }
    let servers = acceptor
        .join()
        .map_err(|_| anyhow::anyhow!("acceptor panicked"))??;
    say(&format!("ready {}", clients.len()))?;
    wait_for_eof();
    drop((clients, servers));
    Ok(())
}

fn server(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)?;
    say("listening")?;
    thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming().flatten() {
            if let Ok(mut reader) = stream.try_clone() {
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
                    // End of stream: the peer closed. Never close our side (CLOSE_WAIT).
                    thread::sleep(Duration::MAX);
                });
            }
            kept.push(stream);
        }
    });
    wait_for_eof();
    Ok(())
}

fn client(addr: &str, mode: &str) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    say(&format!("port {}", stream.local_addr()?.port()))?;
    match mode {
        "close" => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            drop(stream);
            say("closed")?;
        }
        "stream" => {
            let mut writer = stream;
            thread::spawn(move || {
                let chunk = [5u8; 512];
                while writer.write_all(&chunk).is_ok() {
                    thread::sleep(Duration::from_millis(20));
                }
            });
        }
        other => bail!("unknown client mode {other:?}"),
    }
    wait_for_eof();
    Ok(())
}
