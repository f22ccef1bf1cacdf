//! `cargo xtask bench [--quick] [--only hooks,overhead,scale,latency,namespaces,stacks]` (root): the
//! performance harness of issue #5. Every figure is a ratio or a median taken within one run, with
//! repetitions interleaved, because the machine is shared and single runs vary by ±15%. Prints
//! the tables (Markdown) and writes them to target/bench/last.md; no timed assertions anywhere.
//!
//! - `hooks`: per-program ns per invocation from the kernel's `bpf_stats`, real programs vs the
//!   floor programs (monitor-ebpf/src/floor.rs) on the same hooks, same load, same time;
//! - `overhead`: loopback throughput with the agent vs without (request/response, churn, bulk);
//! - `scale`: scan duration, agent CPU and RSS from 1k to 100k connections vs a `sock_diag` dump,
//!   and the growth slope;
//! - `latency`: fault → verdict in /connections and /metrics;
//! - `namespaces`: scan cost and agent CPU with the same 10k sockets over 1 to 100 namespaces;
//! - `stacks`: connect/accept churn with the agent run with `--stacks` vs without.
//!
//! The parts that need the agent's library (loading the object, `sock_diag`) run in
//! `monitor/examples/bench-probes.rs`; load generators are in `load` (loopback) and `worker`
//! (processes in namespaces).

mod hooks;
mod latency;
mod load;
mod measured;
mod namespaces;
mod overhead;
mod scale;
mod stacks;
mod stats;
mod worker;

use std::{
    fmt,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt as _;

use anyhow::{Context as _, bail};
use harness::{ports::free_port, privilege::require_root};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// A short run (fewer repetitions, 1k and 10k connections only, 1 and 10 namespaces).
    #[arg(long)]
    quick: bool,
    /// Phases to run, comma separated: hooks, overhead, scale, latency, namespaces, stacks
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Connection counts for the scale phase, comma separated (default 1000,10000,50000,100000;
    /// with --quick 1000,10000).
    #[arg(long, value_delimiter = ',')]
    levels: Vec<usize>,
    /// Internal: run a load worker inside a namespace (see worker.rs).
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true)]
    worker: Vec<String>,
}

/// What one run does, derived from the arguments.
pub(crate) struct Plan {
    agent: PathBuf,
    helper: PathBuf,
    /// Agent HTTP port (loopback), picked free at start: a fixed port can be taken by someone
    /// else's agent on a shared machine.
    port: u16,
    reps: usize,
    load_time: Duration,
    /// Overhead with the programs toggled: pairs of slices, and the slice length.
    toggle_pairs: usize,
    toggle_time: Duration,
    /// Overhead with the agent process started and stopped: repetitions.
    agent_reps: usize,
    levels: Vec<usize>,
    scan_windows: u32,
    dumps: usize,
    latency_trials: usize,
    /// Namespace counts of the namespaces phase, and how many times each is measured (a second
    /// pass runs the levels in reverse).
    ns_levels: Vec<usize>,
    ns_passes: usize,
    /// Scan intervals each namespaces window lasts at least: longer than 4 on a full run, where
    /// 10 ms CPU ticks over a 20 s window would move the figure by 5%.
    ns_window: u32,
}

/// One table of the report.
pub(crate) struct Section {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

/// The table in Markdown: the `###` title, header, separator and rows, then each note as a
/// paragraph of its own.
impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "### {}\n\n", self.title)?;
        writeln!(f, "| {} |", self.header.join(" | "))?;
        writeln!(f, "|{}", "---|".repeat(self.header.len()))?;
        for row in &self.rows {
            writeln!(f, "| {} |", row.join(" | "))?;
        }
        for note in &self.notes {
            write!(f, "\n{note}\n")?;
        }
        Ok(())
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if !args.worker.is_empty() {
        return worker::main(&args.worker);
    }
    require_root(
        "cargo xtask bench",
        "it loads BPF programs and creates network namespaces",
    )?;
    if cfg!(debug_assertions) {
        // `cargo xtask` builds xtask unoptimised; the load generators must not be the bottleneck.
        crate::cargo(&["build", "--release", "--package", "xtask"])?;
        let release = std::env::current_exe()?
            .parent()
            .and_then(|debug| debug.parent())
            .map(|target| target.join("release/xtask"))
            .context("locating target/release/xtask")?;
        let error = Command::new(release)
            .args(std::env::args_os().skip(1))
            .exec();
        bail!("running the release build of xtask: {error}");
    }
    crate::setup::all()?;
    crate::cargo(&["build", "--release", "--package", "monitor"])?;
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "monitor",
        "--features",
        "bench",
        "--example",
        "bench-probes",
    ])?;
    let target = crate::target_dir();
    let plan = Plan {
        agent: target.join("release/tcp-liveness"),
        helper: target.join("release/examples/bench-probes"),
        port: free_port()?,
        reps: if args.quick { 3 } else { 9 },
        load_time: Duration::from_millis(if args.quick { 1000 } else { 2000 }),
        toggle_pairs: if args.quick { 6 } else { 24 },
        toggle_time: Duration::from_millis(if args.quick { 500 } else { 1000 }),
        agent_reps: if args.quick { 2 } else { 6 },
        levels: if !args.levels.is_empty() {
            args.levels.clone()
        } else if args.quick {
            vec![1_000, 10_000]
        } else {
            vec![1_000, 10_000, 50_000, 100_000]
        },
        scan_windows: if args.quick { 2 } else { 4 },
        dumps: 3,
        latency_trials: if args.quick { 2 } else { 5 },
        ns_levels: if args.quick {
            vec![1, 10]
        } else {
            vec![1, 10, 50, 100]
        },
        ns_passes: if args.quick { 1 } else { 2 },
        ns_window: if args.quick { 4 } else { 12 },
    };
    let wanted = |phase: &str| args.only.is_empty() || args.only.iter().any(|p| p == phase);
    let started = Instant::now();
    let mut report = vec![machine()];
    if wanted("hooks") {
        report.push(hooks::run(&plan)?.to_string());
    }
    if wanted("overhead") {
        report.push(overhead::run(&plan)?.to_string());
    }
    // Growth (5) is computed by the scale phase (3) but printed after latency (4).
    let mut growth = None;
    if wanted("scale") {
        let [scale, grown] = scale::run(&plan)?;
        report.push(scale.to_string());
        growth = Some(grown.to_string());
    }
    // Table 6 is printed last, after growth.
    let mut namespaces = None;
    if wanted("namespaces") {
        namespaces = Some(namespaces::run(&plan)?.to_string());
    }
    if wanted("latency") {
        report.push(latency::run(&plan)?.to_string());
    }
    report.extend(growth);
    report.extend(namespaces);
    if wanted("stacks") {
        report.push(stacks::run(&plan)?.to_string());
    }
    report.push(format!(
        "Run took {:.0} s ({}).\n",
        started.elapsed().as_secs_f64(),
        if args.quick { "--quick" } else { "full" }
    ));
    let text = report.join("\n");
    println!("{text}");
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("last.md"), &text)?;
    Ok(())
}

/// Kernel, CPUs, memory: the context every number depends on.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / f64::from(1 << 20));
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "### Machine\n\nLinux {}, {cpus} × {model}, {mem_gib:.1} GiB RAM.\n",
        kernel.trim()
    )
}
