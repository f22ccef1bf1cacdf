//! The agent under benchmark (started through `harness::agent`), and what /proc says about its
//! CPU and memory, and the kernel about its BPF maps.

use std::{process::Command, time::Duration};

use anyhow::Context as _;
use harness::{
    agent::{Agent, Launch},
    bpf,
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
