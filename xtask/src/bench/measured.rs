//! The agent under benchmark (started through `harness::agent`), and what /proc says about its
//! CPU and memory, and the kernel about its BPF maps; windows of its own metrics that span whole
//! kernel-read periods ([`read_window`]).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use harness::{
    agent::{Agent, Launch},
    bpf,
    metrics::{sum as metric, value},
};

use super::Plan;

/// Starts `tcp-liveness run --listen 127.0.0.1:PORT EXTRA…` (the release build) and waits up to
/// 90 s for /healthz; on drop or stop it gets SIGTERM and 20 s before it is killed.
pub(super) fn start(plan: &Plan, extra: &[&str]) -> anyhow::Result<Agent> {
    Launch::new(&plan.agent, plan.port)
        .args(extra)
        .ready_within(Duration::from_secs(90))
        .stop_within(Duration::from_secs(20))
        .start()
}

/// The agent's `/metrics` text.
pub(super) fn metrics(agent: &Agent) -> anyhow::Result<String> {
    agent.try_get("/metrics")
}

/// The agent's scan interval in the benchmarks: its default.
pub(super) const INTERVAL: Duration = Duration::from_secs(5);
/// The agent's histogram of its own scan durations (seconds): sum and count.
pub(super) const SCAN_SUM: &str = "tcp_liveness_scan_duration_seconds_sum";
pub(super) const SCAN_COUNT: &str = "tcp_liveness_scan_duration_seconds_count";
/// Completed reads of every namespace's sockets by the kernel iterator, and their total
/// wall-clock seconds.
pub(super) const READS: &str = "tcp_liveness_kernel_reads_total";
pub(super) const READ_SECONDS: &str = "tcp_liveness_kernel_read_seconds_total";
/// Sockets in the agent's table (a gauge).
pub(super) const TRACKED: &str = "tcp_liveness_tracked_sockets";
/// The longest wait for the next kernel read: the agent pauses 1000× a read's CPU time while
/// its slot walks succeed (400× otherwise), and a read at 100k connections (200k sockets) takes
/// 0.2–0.3 s on this VM, up to ~1 s when the machine is busy.
pub(super) const READ_PERIOD_MAX: Duration = Duration::from_mins(20);

/// Polls /metrics every second until `name` moves past `after` (or `deadline`): returns the
/// metrics then. Once a second, not faster: each scrape is agent CPU inside the measured window.
pub(super) fn wait_for_increase(
    agent: &Agent,
    name: &str,
    after: f64,
    deadline: Instant,
) -> anyhow::Result<String> {
    loop {
        let metrics = metrics(agent)?;
        if metric(&metrics, name) > after {
            return Ok(metrics);
        }
        if Instant::now() > deadline {
            bail!("{name} did not move past {after} in time");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Polls the tracked-socket gauge every 500 ms until `done(count)` holds or `deadline` passes
/// (no error then: the caller reports the count it got). Returns the last count.
pub(super) fn wait_for_tracked(
    agent: &Agent,
    done: impl Fn(f64) -> bool,
    deadline: Instant,
) -> anyhow::Result<f64> {
    loop {
        let tracked = metric(&metrics(agent)?, TRACKED);
        if done(tracked) || Instant::now() > deadline {
            return Ok(tracked);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The agent's /metrics and CPU time at both ends of a measurement window.
pub(super) struct Window {
    pub before: String,
    pub after: String,
    /// Agent CPU (user + system) spent inside the window.
    pub cpu: Duration,
    pub elapsed: Duration,
}

impl Window {
    /// How much the counter (or sum over label sets) `name` grew over the window.
    pub(super) fn delta(&self, name: &str) -> f64 {
        metric(&self.after, name) - metric(&self.before, name)
    }

    /// Mean per event over the window: growth of `total` / growth of `count` (NaN when none).
    pub(super) fn mean(&self, total: &str, count: &str) -> f64 {
        self.delta(total) / self.delta(count)
    }

    /// [`Self::mean`] of a series the agent may not export: None when either end lacks it.
    pub(super) fn mean_if_exported(&self, total: &str, count: &str) -> Option<f64> {
        let exported = |text: &str| value(text, total).and(value(text, count)).is_some();
        (exported(&self.before) && exported(&self.after)).then(|| self.mean(total, count))
    }

    /// Agent CPU as a share of one core over the window (0.01 = 1%).
    pub(super) fn cpu_share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

/// A window of whole kernel-read periods: from just after one read ([`READS`] moving) to just
/// after the `reads`-th next, lasting at least `intervals` scan intervals. The reads are paced
/// (at most 0.1% of a core while slot walks succeed, at most one per interval), so the CPU over
/// whole periods is the long-run average, not whether a read happened to fall inside.
pub(super) fn read_window(agent: &Agent, intervals: u32, reads: u32) -> anyhow::Result<Window> {
    let m = metrics(agent)?;
    let before = wait_for_increase(
        agent,
        READS,
        metric(&m, READS),
        Instant::now() + READ_PERIOD_MAX,
    )?;
    let started = Instant::now();
    let cpu0 = cpu(agent)?;
    let reads_wanted = metric(&before, READS) + f64::from(reads.max(1)) - 1.0;
    let mut after = wait_for_increase(
        agent,
        READS,
        reads_wanted,
        Instant::now() + READ_PERIOD_MAX * reads.max(2),
    )?;
    while started.elapsed() < INTERVAL * intervals {
        after = wait_for_increase(
            agent,
            READS,
            metric(&after, READS),
            Instant::now() + READ_PERIOD_MAX,
        )?;
    }
    let cpu1 = cpu(agent)?;
    Ok(Window {
        before,
        after,
        cpu: cpu1.saturating_sub(cpu0),
        elapsed: started.elapsed(),
    })
}

/// User + system CPU time of the agent so far.
pub(super) fn cpu(agent: &Agent) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", agent.pid()))?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// Resident set size in bytes: total (`VmRSS`), and of it the agent's own memory (`RssAnon`)
/// and file/shared mappings (`RssFile`: the binary and the mapped socket table).
pub(super) fn rss(agent: &Agent) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))?;
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

/// The agent's BPF maps, largest memlock first.
pub(super) fn maps(agent: &Agent) -> anyhow::Result<Vec<MapInfo>> {
    let maps = bpf::maps_of(agent.pid())?;
    Ok(maps
        .into_iter()
        .map(|m| MapInfo {
            name: bpf::map_name(m.id).unwrap_or_else(|| format!("id {}", m.id)),
            map_type: m.map_type,
            max_entries: m.max_entries,
            memlock: m.memlock,
        })
        .collect())
}

pub(super) struct MapInfo {
    pub name: String,
    pub map_type: u64,
    pub max_entries: u64,
    pub memlock: u64,
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident memory of the agent, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
    /// Peak total (`VmHWM`) since the agent started.
    pub peak: u64,
}
