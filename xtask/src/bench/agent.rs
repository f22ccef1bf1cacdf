//! The agent binary under benchmark: start, stop, HTTP GET, and what /proc says about its CPU,
//! memory and BPF maps.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

pub struct Agent {
    child: Child,
    pub port: u16,
}

impl Agent {
    /// Starts `tcp-liveness run --listen 127.0.0.1:port EXTRA…` and waits for /healthz.
    pub fn start(binary: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        let child = Command::new(binary)
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut agent = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            // Exit first: a healthy answer from another process on our port must not count.
            if let Some(status) = agent.child.try_wait()? {
                bail!("agent exited during start-up: {status}");
            }
            if let Ok((200, _)) = http_get(port, "/healthz") {
                return Ok(agent);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("agent did not become healthy within 90 s")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        match http_get(self.port, path)? {
            (200, body) => Ok(body),
            (status, body) => bail!("GET {path}: {status} {body}"),
        }
    }

    pub fn metrics(&self) -> anyhow::Result<String> {
        self.get("/metrics")
    }

    /// User + system CPU time of the agent so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
    }

    /// Resident set size in bytes: total (VmRSS), and of it the agent's own memory (RssAnon)
    /// and file/shared mappings (RssFile: the binary and the mapped socket table).
    pub fn rss(&self) -> anyhow::Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .with_context(|| format!("no {name}"))?
                .split_whitespace()
                .next()
                .with_context(|| format!("empty {name}"))?
                .parse::<u64>()?;
            Ok(kib * 1024)
        };
        Ok(Rss {
            total: field("VmRSS:")?,
            anon: field("RssAnon:")?,
            file: field("RssFile:")?,
            peak: field("VmHWM:")?,
        })
    }

    /// The agent's BPF maps from /proc/PID/fdinfo: (map id, type, max_entries, memlock bytes).
    pub fn maps(&self) -> anyhow::Result<Vec<MapInfo>> {
        let mut maps = Vec::new();
        for fd in std::fs::read_dir(format!("/proc/{}/fd", self.pid()))? {
            let fd = fd?;
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if target.to_string_lossy() != "anon_inode:bpf-map" {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/{}/fdinfo/{}",
                self.pid(),
                fd.file_name().to_string_lossy()
            ))?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let id = field("map_id:");
            maps.push(MapInfo {
                name: map_name(id),
                map_type: field("map_type:"),
                max_entries: field("max_entries:"),
                memlock: field("memlock:"),
            });
        }
        maps.sort_by_key(|m| std::cmp::Reverse(m.memlock));
        Ok(maps)
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    self.child.kill()?;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

pub struct MapInfo {
    pub name: String,
    pub map_type: u64,
    pub max_entries: u64,
    pub memlock: u64,
}

fn map_name(id: u64) -> String {
    Command::new("bpftool")
        .args(["map", "show", "id", &id.to_string()])
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let name = text.split_once("name ")?.1.split_whitespace().next()?;
            Some(name.to_owned())
        })
        .unwrap_or_else(|| format!("id {id}"))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// HTTP/1.0 GET on loopback (no chunked bodies): (status, body).
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no HTTP status")?
        .parse()?;
    Ok((status, body.to_owned()))
}

/// Sum of every sample of `series` (a metric name, optionally with `{labels}` as rendered).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let matches =
                name == series || (!series.contains('{') && name.split('{').next() == Some(series));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Resident memory of the agent, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
    /// Peak total (VmHWM) since the agent started.
    pub peak: u64,
}
