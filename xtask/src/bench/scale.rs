//! Scan cost and growth: established loopback connections in a namespace of our own (both ends
//! tracked: 2 sockets per connection), grown level by level under one agent at its default 5 s
//! interval. Per level: the agent's own scan duration (its histogram), its CPU from /proc over
//! whole intervals, RSS; and, right after a scan, a `sock_diag` dump with `tcp_info` of every namespace
//! (`monitor::sock_diag::dump_all`, what the agent's seeding runs) and `ss -tin` in the namespace.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use harness::{
    agent::Agent,
    metrics::sum as metric,
    netns::{Netns, unique_name},
};

use super::{
    Plan, Section,
    measured::{self, MapInfo, Rss},
    stats, worker,
};

/// Connections per worker process: 2 fds each, under the 20 000 hard `RLIMIT_NOFILE` here.
const PER_WORKER: usize = 9_000;
const INTERVAL: Duration = Duration::from_secs(5);
const SCAN_SUM: &str = "tcp_liveness_scan_duration_seconds_sum";
const SCAN_COUNT: &str = "tcp_liveness_scan_duration_seconds_count";
const READS: &str = "tcp_liveness_kernel_reads_total";
const READ_SECONDS: &str = "tcp_liveness_kernel_read_seconds_total";
/// The longest wait for the next kernel read: the agent pauses 400× a read's duration, and a
/// read at 100k connections (200k sockets) takes up to ~1.5 s on this VM.
const READ_PERIOD_MAX: Duration = Duration::from_mins(12);

/// Polls /metrics every second until `name` moves past `after` (or `deadline`): returns the
/// metrics then. Once a second, not faster: each scrape is agent CPU inside the measured window.
fn wait_for_increase(
    agent: &Agent,
    name: &str,
    after: f64,
    deadline: Instant,
) -> anyhow::Result<String> {
    loop {
        let metrics = measured::metrics(agent)?;
        if metric(&metrics, name) > after {
            return Ok(metrics);
        }
        if Instant::now() > deadline {
            bail!("{name} did not move past {after} in time");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Polls /metrics until the scan count moves: returns just after a scan was published.
fn wait_for_scan(agent: &Agent) -> anyhow::Result<()> {
    let start = metric(&measured::metrics(agent)?, SCAN_COUNT);
    let deadline = Instant::now() + INTERVAL * 4;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if metric(&measured::metrics(agent)?, SCAN_COUNT) > start {
            return Ok(());
        }
    }
    bail!("no scan within {:?}", INTERVAL * 4)
}

struct Level {
    connections: usize,
    tracked: f64,
    scan_s: f64,
    scans: f64,
    window_s: f64,
    /// Kernel reads completed in the window, and their mean duration (s).
    reads: f64,
    read_s: f64,
    cpu_per_s: f64,
    cpu_per_scan_s: f64,
    rss: Rss,
    dump_s: Vec<f64>,
    all_s: Vec<f64>,
    ss_s: Vec<f64>,
}

/// `sock_diag` dump times (s): of every namespace, or of `netns` only.
fn diag_dump(plan: &Plan, runs: usize, netns: Option<&Netns>) -> anyhow::Result<Vec<f64>> {
    let out = Command::new(&plan.helper)
        .args(["diag", &runs.to_string()])
        .args(netns.map(Netns::path))
        .env("RUST_LOG", "error")
        .output()?;
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench-probes diag: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(value["times_ns"]
        .as_array()
        .context("times_ns")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .map(|ns| ns / 1e9)
        .collect())
}

fn ss_dump(ns: &Netns) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = ns
        .command("ss")
        .arg("-tin")
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("ss -tin failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The scale table (3) and the growth fit (5).
pub(super) fn run(plan: &Plan) -> anyhow::Result<[Section; 2]> {
    let ns = Netns::create(unique_name("bench-scale"))?;
    let agent = measured::start(plan, &[])?;
    let mut workers = Vec::new();
    let mut total = 0;
    let mut levels = Vec::new();
    for &target in &plan.levels {
        let started = Instant::now();
        while total < target {
            let count = PER_WORKER.min(target - total);
            let port = (20_000 + workers.len()).to_string();
            let worker = worker::spawn(&ns, &["hold", &port, &count.to_string()])?;
            if !worker.first.starts_with("ready") {
                bail!("hold worker: {}", worker.first);
            }
            workers.push(worker);
            total += count;
        }
        eprintln!(
            "bench: {total} connections open in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        levels.push(measure_level(plan, &agent, &ns, total)?);
    }
    let maps = measured::maps(&agent)?;
    // SIGTERM; how the agent exits changes none of the figures taken.
    drop(agent);
    drop(workers);
    drop(ns);
    Ok([scale_section(plan, &levels, &maps), growth_section(&levels)])
}

/// Once the agent tracks both ends of all `total` connections open in `ns` (or after 2 minutes):
/// its scans, CPU and RSS over `plan.scan_windows` intervals, then `plan.dumps` dumps each right
/// after a scan.
fn measure_level(plan: &Plan, agent: &Agent, ns: &Netns, total: usize) -> anyhow::Result<Level> {
    // Every connection tracked (both ends) before measuring.
    let deadline = Instant::now() + Duration::from_mins(2);
    let tracked = loop {
        let tracked = metric(&measured::metrics(agent)?, "tcp_liveness_tracked_sockets");
        if tracked >= (2 * total) as f64 || Instant::now() > deadline {
            break tracked;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // The kernel reads are paced (at most 0.25% of a core, at most one per interval), so at
    // 100k connections one comes every few minutes: the window runs from just after one read to just
    // after the `plan.scan_windows / 2`-th next (at least `scan_windows` intervals), whole
    // read periods, so the CPU is the long-run average and not whether a read fell inside.
    let m = measured::metrics(agent)?;
    let m = wait_for_increase(
        agent,
        READS,
        metric(&m, READS),
        Instant::now() + READ_PERIOD_MAX,
    )?;
    let started = Instant::now();
    let (cpu0, m0) = (measured::cpu(agent)?, m);
    let min_window = INTERVAL * plan.scan_windows;
    let reads_wanted = metric(&m0, READS) + f64::from((plan.scan_windows / 2).max(1)) - 1.0;
    let mut m1 = wait_for_increase(
        agent,
        READS,
        reads_wanted,
        Instant::now() + READ_PERIOD_MAX * 2,
    )?;
    while started.elapsed() < min_window {
        m1 = wait_for_increase(
            agent,
            READS,
            metric(&m1, READS),
            Instant::now() + READ_PERIOD_MAX,
        )?;
    }
    let cpu1 = measured::cpu(agent)?;
    let window = started.elapsed();
    let scan_count = metric(&m1, SCAN_COUNT) - metric(&m0, SCAN_COUNT);
    let scan_s = (metric(&m1, SCAN_SUM) - metric(&m0, SCAN_SUM)) / scan_count;
    let reads = metric(&m1, READS) - metric(&m0, READS);
    let mean_read_s = (metric(&m1, READ_SECONDS) - metric(&m0, READ_SECONDS)) / reads;
    let cpu = cpu1.checked_sub(cpu0).unwrap().as_secs_f64();
    let rss = measured::rss(agent)?;
    let (mut dump_s, mut all_s, mut ss_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.dumps {
        wait_for_scan(agent)?;
        dump_s.extend(diag_dump(plan, 1, Some(ns))?);
        all_s.extend(diag_dump(plan, 1, None)?);
        ss_s.push(ss_dump(ns)?);
    }
    eprintln!(
        "bench: level {total}: scan {:.1} ms, dump {:.1} ms, cpu {:.2}% over {:.0} s, {reads} kernel reads of {:.0} ms",
        scan_s * 1e3,
        stats::median(&dump_s) * 1e3,
        cpu / window.as_secs_f64() * 100.0,
        window.as_secs_f64(),
        mean_read_s * 1e3,
    );
    Ok(Level {
        connections: total,
        tracked,
        scan_s,
        scans: scan_count,
        window_s: window.as_secs_f64(),
        reads,
        read_s: mean_read_s,
        cpu_per_s: cpu / window.as_secs_f64(),
        cpu_per_scan_s: cpu / scan_count,
        rss,
        dump_s,
        all_s,
        ss_s,
    })
}

/// Table 3: one row per level, and notes on the method and the agent's map memory.
fn scale_section(plan: &Plan, levels: &[Level], maps: &[MapInfo]) -> Section {
    let mut rows = Vec::new();
    for l in levels {
        let dump = stats::median(&l.dump_s);
        rows.push(vec![
            l.connections.to_string(),
            format!("{:.0}", l.tracked),
            format!("{:.2} (n={})", l.scan_s * 1e3, l.scans),
            stats::summary(&l.dump_s.iter().map(|s| s * 1e3).collect::<Vec<_>>(), 2),
            stats::summary(&l.all_s.iter().map(|s| s * 1e3).collect::<Vec<_>>(), 1),
            stats::summary(&l.ss_s.iter().map(|s| s * 1e3).collect::<Vec<_>>(), 1),
            format!("{:.2}", l.scan_s / dump),
            format!("{:.1} (n={})", l.read_s * 1e3, l.reads),
            format!("{:.3} ({:.0} s)", l.cpu_per_s * 100.0, l.window_s),
            format!("{:.2}", l.cpu_per_scan_s * 1e3),
            format!("{:.1}", mib(l.rss.total)),
            format!("{:.1}", mib(l.rss.anon)),
            format!("{:.1}", mib(l.rss.file)),
            format!("{:.1}", mib(l.rss.peak)),
        ]);
    }
    let memlock: u64 = maps.iter().map(|m| m.memlock).sum();
    let notes = vec![
        "Targets at 100k connections: scan ≤ 0.5× the sock_diag dump, agent ≤ 1% of a core at \
         the default 5 s interval, RSS ≤ 64 MiB."
            .to_owned(),
        format!(
            "Agent CPU from /proc/PID/stat (10 ms ticks), idle HTTP server included, over whole \
             kernel-read periods: from just after one read of every namespace's sockets \
             (iter/tcp, paced to 0.25% of a core) to just after the {}-th next, and at least {} \
             intervals; scan ms = the agent's own tcp_liveness_scan_duration_seconds over the \
             same window (mean of n scans); kernel read ms = \
             tcp_liveness_kernel_read_seconds_total / reads in the window. \
             dump = monitor::sock_diag::dump of the benchmark's namespace with tcp_info (the same \
             sockets; `all ns` = dump_all, every namespace, what the agent's seeding runs), \
             each right after a scan; scan / dump uses the first; \
             ss = `ip netns exec … ss -tin > /dev/null`, process start included. \
             RSS = VmRSS after the window; anon = the agent's own memory (RssAnon); file = \
             RssFile: the binary's pages and the mapped part of the socket table, which is the \
             kernel map's memory (counted again in the map memory below), not a copy; peak = \
             VmHWM since start.",
            (plan.scan_windows / 2).max(1),
            plan.scan_windows
        ),
        format!(
            "Kernel memory of the agent's maps (fdinfo memlock): {:.1} MiB in total — {}.",
            memlock as f64 / f64::from(1 << 20),
            maps.iter()
                .map(|m| format!(
                    "{} (type {}, {} entries) {:.1} KiB",
                    m.name,
                    m.map_type,
                    m.max_entries,
                    m.memlock as f64 / 1024.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    Section {
        title:
            "3. Scan cost and scale (one namespace, loopback, agent at the default 5 s interval)"
                .into(),
        header: [
            "connections",
            "tracked sockets",
            "scan ms",
            "sock_diag dump ms (this ns)",
            "dump ms (all ns)",
            "ss -tin ms",
            "scan / dump",
            "kernel read ms",
            "agent CPU % of a core (window)",
            "CPU ms per scan",
            "RSS MiB",
            "of it anon MiB",
            "of it file MiB",
            "peak RSS MiB",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes,
    }
}

/// Table 5: least-squares growth of scan time, CPU per scan, dump time and RSS over the levels,
/// per tracked socket.
fn growth_section(levels: &[Level]) -> Section {
    let xs: Vec<f64> = levels.iter().map(|l| l.tracked).collect();
    let fit_row = |what: &str, unit: &str, ys: Vec<f64>, scale: f64| {
        let (slope, intercept, r2) = stats::fit(&xs, &ys);
        vec![
            what.to_owned(),
            format!("{:.1} {unit}", slope * scale),
            format!("{:.2}", intercept),
            format!("{r2:.4}"),
        ]
    };
    Section {
        title: "5. Growth (least squares over the levels above, x = tracked sockets)".into(),
        header: ["quantity", "slope per socket", "intercept", "r²"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            fit_row(
                "agent scan (ms)",
                "ns",
                levels.iter().map(|l| l.scan_s * 1e3).collect(),
                1e6,
            ),
            fit_row(
                "agent CPU per scan (ms)",
                "ns",
                levels.iter().map(|l| l.cpu_per_scan_s * 1e3).collect(),
                1e6,
            ),
            fit_row(
                "sock_diag dump (ms)",
                "ns",
                levels
                    .iter()
                    .map(|l| stats::median(&l.dump_s) * 1e3)
                    .collect(),
                1e6,
            ),
            fit_row(
                "agent RSS (MiB)",
                "bytes",
                levels.iter().map(|l| mib(l.rss.total)).collect(),
                f64::from(1 << 20),
            ),
        ],
        notes: vec![],
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
