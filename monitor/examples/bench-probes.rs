//! Helper for `cargo xtask bench` (root): the parts of the benchmark that need the agent's library.
//! Needs `monitor`'s `bench` feature (`required-features`), which builds the kernel object with
//! the floor programs: `cargo build --release -p monitor --features bench --example bench-probes`.
//!
//! - `bench-probes hooks`: loads every real, floor and empty program (`monitor::bpf::bench`),
//!   then answers one command per stdin line: `attach NAME,NAME,...` (detach all, attach in that
//!   order), `stats` (one JSON line: per program run time, run count, instruction counts),
//!   `defaults` (the hooks the agent attaches without `--per-packet-hooks`, comma-separated),
//!   `quit`.
//! - `bench-probes diag N`: times N `sock_diag` dumps with `tcp_info` of every namespace
//!   (`monitor::sock_diag::dump_all`, what the agent's seeding does), or of the namespace at
//!   `NETNS_PATH` only (`monitor::sock_diag::dump`); one JSON line.

use std::{
    io::{BufRead as _, Write as _},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    time::Instant,
};

use anyhow::{Context as _, bail};
use monitor::bpf::bench::BenchPrograms;
use monitor_common::tcp_state;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("hooks") => hooks(),
        Some("diag") => diag(
            args.get(1).map_or(Ok(3), |n| n.parse())?,
            args.get(2).map(PathBuf::from),
        ),
        _ => bail!("usage: bench-probes hooks | diag N [NETNS_PATH]"),
    }
}

fn hooks() -> anyhow::Result<()> {
    let mut probes = BenchPrograms::load(monitor_common::DEFAULT_TABLE_CAPACITY)
        .context("loading the programs")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (command, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match command {
            "attach" => {
                let names: Vec<String> = rest
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                probes.attach(&names)?;
                writeln!(out, "ok")?;
            }
            "stats" => {
                let mut all = serde_json::Map::new();
                for name in probes.names() {
                    let s = probes.stats(&name)?;
                    all.insert(
                        name,
                        serde_json::json!({
                            "id": s.id,
                            "run_time_ns": s.run_time_ns,
                            "run_count": s.run_count,
                            "xlated_insns": s.xlated_insns,
                            "verified_insns": s.verified_insns,
                            "jited_bytes": s.jited_bytes,
                        }),
                    );
                }
                writeln!(out, "{}", serde_json::Value::Object(all))?;
            }
            "defaults" => {
                let defaults: Vec<&str> = monitor::bpf::hooks(false).collect();
                writeln!(out, "{}", defaults.join(","))?;
            }
            "quit" => break,
            other => bail!("unknown command {other:?}"),
        }
        out.flush()?;
    }
    probes.detach_all();
    Ok(())
}

fn diag(runs: usize, netns: Option<PathBuf>) -> anyhow::Result<()> {
    let netns = match netns {
        Some(path) => Some(monitor::netns::Netns {
            // nsfs inodes are 32-bit (`proc_inum`), as the agent stores them.
            inode: u32::try_from(std::fs::metadata(&path)?.ino())
                .with_context(|| format!("{}: inode wider than 32 bits", path.display()))?,
            path,
        }),
        None => None,
    };
    // Every state the agent's table can hold (TIME_WAIT and CLOSE are never in it).
    let mask = !(1u32 << tcp_state::TIME_WAIT) & !(1u32 << tcp_state::CLOSE);
    let mut times_ns = Vec::new();
    let mut sockets = 0;
    for _ in 0..runs {
        let started = Instant::now();
        sockets = match &netns {
            Some(ns) => monitor::sock_diag::dump(ns, mask)?.len(),
            None => monitor::sock_diag::dump_all(mask).len(),
        };
        // Saturates after 584 years.
        times_ns.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    println!(
        "{}",
        serde_json::json!({ "times_ns": times_ns, "sockets": sockets })
    );
    Ok(())
}
