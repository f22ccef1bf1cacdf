//! Scan cost against the number of network namespaces: the same 5 000 loopback connections
//! (10 000 sockets, both ends of each in one namespace) spread evenly over 1, 10, 50 and 100
//! namespaces of our own, under one agent at its default 5 s interval. The agent reads the held
//! sockets with one pass over every process's descriptors (its cost follows the sockets), and
//! the sockets nobody holds with the kernel iterator once per namespace (its cost multiplies by
//! the namespaces): the table shows how much the second part adds.
//!
//! Each level is built, measured and torn down before the next, so every level has exactly the
//! same sockets; with two passes the levels run in order and then in reverse, so a drift of the
//! shared machine over the run weighs on both ends alike.

use std::time::{Duration, Instant};

use anyhow::bail;
use harness::{
    agent::Agent,
    metrics::sum as metric,
    netns::{Netns, unique_name},
};

use super::{
    Plan, Section,
    measured::{self, READ_SECONDS, READS, SCAN_COUNT, SCAN_SUM, TRACKED},
    stats,
    worker::{self, Worker},
};

/// Loopback connections per level, over all its namespaces.
const CONNECTIONS: usize = 5_000;
/// Both ends of every connection are tracked.
const SOCKETS: f64 = (2 * CONNECTIONS) as f64;
/// The listening port of the hold worker, the same in every namespace (each has its own ports).
const PORT: &str = "20000";
/// How far the tracked count may stay from its goal and the level still count as built (or torn
/// down): the host's other sockets come and go meanwhile.
const SLACK: f64 = 200.0;
/// The longest wait for the tracked count to reach its goal after a level is built or torn down.
const SETTLE_MAX: Duration = Duration::from_mins(2);
/// The held-socket passes (`iter/task_file` over every process's descriptors) and their total
/// seconds; an agent that does not export them shows "—".
const HELD_PASSES: &str = "tcp_liveness_held_socket_reads_total";
const HELD_SECONDS: &str = "tcp_liveness_held_socket_read_seconds_total";
/// The slot walks (every tracked socket's own values through the table's slots) and their
/// total seconds; "—" where the agent does not export them (kernels before 6.2).
const WALKS: &str = "tcp_liveness_slot_walks_total";
const WALK_SECONDS: &str = "tcp_liveness_slot_walk_seconds_total";
/// The requirement: at this many namespaces, agent CPU at most `TARGET_RATIO` × one namespace's.
const TARGET_NAMESPACES: usize = 50;
const TARGET_RATIO: f64 = 1.5;

/// One level's namespaces, each with a hold worker keeping its share of the connections. Fields
/// drop in order: the workers (closing every connection) before their namespaces are deleted.
struct Spread {
    workers: Vec<Worker>,
    namespaces: Vec<Netns>,
}

/// Creates `count` namespaces (loopback up) and opens [`CONNECTIONS`] split evenly over them.
fn spread(count: usize) -> anyhow::Result<Spread> {
    let mut spread = Spread {
        workers: Vec::with_capacity(count),
        namespaces: Vec::with_capacity(count),
    };
    for i in 0..count {
        let ns = Netns::create(unique_name(&format!("bench-ns{i}")))?;
        let share = CONNECTIONS / count + usize::from(i < CONNECTIONS % count);
        if share > 0 {
            let worker = worker::spawn(&ns, &["hold", PORT, &share.to_string()])?;
            if !worker.first.starts_with("ready") {
                bail!("hold worker in {}: {}", ns.name(), worker.first);
            }
            spread.workers.push(worker);
        }
        spread.namespaces.push(ns);
    }
    Ok(spread)
}

/// One measurement of one level: the agent's own figures over one window of whole kernel-read
/// periods.
struct Arm {
    namespaces: usize,
    /// `tcp_liveness_tracked_sockets` at the end of the window (the host's other sockets too).
    tracked: f64,
    /// Mean scan duration (s) from `tcp_liveness_scan_duration_seconds`, and scans in the window.
    scan_s: f64,
    scans: f64,
    /// Mean held-socket pass (s), when the agent exports its counters, and passes in the window.
    held_s: Option<f64>,
    held_passes: f64,
    /// Mean slot walk (s), when the agent exports its counters, and walks in the window.
    walk_s: Option<f64>,
    walks: f64,
    /// Mean kernel-iterator read of every namespace (s), and reads in the window.
    read_s: f64,
    reads: f64,
    /// Agent CPU over the window, share of one core (0.01 = 1%).
    cpu_share: f64,
    window_s: f64,
}

/// The namespaces table (6): every level of `plan.ns_levels`, `plan.ns_passes` times.
pub(super) fn run(plan: &Plan) -> anyhow::Result<Section> {
    let agent = measured::start(plan, &[])?;
    // The gauge is 0 until the first scan is published.
    let first = measured::wait_for_increase(
        &agent,
        SCAN_COUNT,
        0.0,
        Instant::now() + measured::INTERVAL * 4,
    )?;
    let idle = metric(&first, TRACKED);
    let mut order = plan.ns_levels.clone();
    if plan.ns_passes > 1 {
        order.extend(plan.ns_levels.iter().rev());
    }
    let mut arms = Vec::new();
    for namespaces in order {
        arms.push(measure(plan, &agent, namespaces)?);
    }
    Ok(section(plan, &arms, idle))
}

/// Builds a level of `namespaces`, waits until the agent tracks its sockets, measures one window,
/// tears the level down and waits until the agent no longer tracks them.
fn measure(plan: &Plan, agent: &Agent, namespaces: usize) -> anyhow::Result<Arm> {
    let base = metric(&measured::metrics(agent)?, TRACKED);
    let started = Instant::now();
    let mut level = spread(namespaces)?;
    let goal = base + SOCKETS - SLACK;
    let tracked = measured::wait_for_tracked(agent, |t| t >= goal, Instant::now() + SETTLE_MAX)?;
    if tracked < goal {
        eprintln!(
            "bench: {namespaces} namespaces: only {tracked} sockets tracked, measuring anyway"
        );
    }
    eprintln!(
        "bench: {CONNECTIONS} connections over {namespaces} namespaces open and tracked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let window = measured::read_window(agent, plan.ns_window, 1)?;
    // Something else on the machine may end our workers; a level missing sockets is no datum.
    if level.workers.iter_mut().any(Worker::exited) {
        bail!("a hold worker of the {namespaces}-namespace level ended during its window");
    }
    let arm = Arm {
        namespaces,
        tracked: metric(&window.after, TRACKED),
        scan_s: window.mean(SCAN_SUM, SCAN_COUNT),
        scans: window.delta(SCAN_COUNT),
        held_s: window.mean_if_exported(HELD_SECONDS, HELD_PASSES),
        held_passes: window.delta(HELD_PASSES),
        walk_s: window.mean_if_exported(WALK_SECONDS, WALKS),
        walks: window.delta(WALKS),
        read_s: window.mean(READ_SECONDS, READS),
        reads: window.delta(READS),
        cpu_share: window.cpu_share(),
        window_s: window.elapsed.as_secs_f64(),
    };
    eprintln!(
        "bench: {namespaces} namespaces: scan {:.2} ms, cpu {:.3}% over {:.0} s, {} kernel reads of {:.1} ms",
        arm.scan_s * 1e3,
        arm.cpu_share * 100.0,
        arm.window_s,
        arm.reads,
        arm.read_s * 1e3,
    );
    drop(level);
    // Relative to the level's own count: the host's other sockets may have changed since.
    let gone = arm.tracked - SOCKETS + SLACK;
    let left = measured::wait_for_tracked(agent, |t| t <= gone, Instant::now() + SETTLE_MAX)?;
    if left > gone {
        eprintln!("bench: {left} sockets still tracked after tearing the level down");
    }
    Ok(arm)
}

/// `values` with `decimals` digits: the value alone for one pass, else `median [min–max]`.
fn over_passes(values: &[f64], decimals: usize) -> String {
    match values {
        [one] => format!("{one:.decimals$}"),
        _ => stats::summary(values, decimals),
    }
}

/// [`over_passes`] of per-pass means, followed by `(n=…)`: how many events they average over
/// all passes.
fn counted(means: &[f64], events: &[f64], decimals: usize) -> String {
    format!(
        "{} (n={})",
        over_passes(means, decimals),
        events.iter().sum::<f64>()
    )
}

/// [`counted`] milliseconds of per-arm means in seconds; "—" when an arm has none (the agent
/// does not export the counter).
fn ms_or_dash(seconds: Option<Vec<f64>>, events: &[f64]) -> String {
    seconds.map_or_else(
        || "—".to_owned(),
        |s| {
            let ms: Vec<f64> = s.iter().map(|s| s * 1e3).collect();
            counted(&ms, events, 2)
        },
    )
}

/// Table 6: one row per level, medians over its arms, CPU also as a ratio to one namespace.
fn section(plan: &Plan, arms: &[Arm], idle: f64) -> Section {
    let of_level = |n: usize| arms.iter().filter(move |a| a.namespaces == n);
    let cpu_of = |n: usize| stats::median(&of_level(n).map(|a| a.cpu_share).collect::<Vec<_>>());
    let reference = plan.ns_levels.first().copied().unwrap_or(1);
    let mut rows = Vec::new();
    for &n in &plan.ns_levels {
        let collect = |f: fn(&Arm) -> f64| of_level(n).map(f).collect::<Vec<_>>();
        let held: Option<Vec<f64>> = of_level(n).map(|a| a.held_s).collect();
        let walk: Option<Vec<f64>> = of_level(n).map(|a| a.walk_s).collect();
        let ratio = cpu_of(n) / cpu_of(reference);
        let target = if n == TARGET_NAMESPACES {
            let met = if ratio <= TARGET_RATIO {
                "met"
            } else {
                "not met"
            };
            format!("≤ {TARGET_RATIO}× ({met})")
        } else {
            String::new()
        };
        rows.push(vec![
            n.to_string(),
            format!("{:.0}", stats::median(&collect(|a| a.tracked))),
            counted(&collect(|a| a.scan_s * 1e3), &collect(|a| a.scans), 2),
            ms_or_dash(held, &collect(|a| a.held_passes)),
            ms_or_dash(walk, &collect(|a| a.walks)),
            counted(&collect(|a| a.read_s * 1e3), &collect(|a| a.reads), 1),
            over_passes(&collect(|a| a.cpu_share * 100.0), 3),
            format!("{ratio:.2}"),
            target,
            format!("{:.0}", stats::median(&collect(|a| a.window_s))),
        ]);
    }
    let notes = vec![
        format!(
            "{CONNECTIONS} loopback connections ({SOCKETS} sockets, both ends tracked) held by one \
             worker per namespace, split evenly over N namespaces of our own; one agent at its \
             default flags for the whole phase ({idle} sockets of the host tracked before the \
             first level). Each level is built, measured, then torn down (workers and namespaces) \
             before the next, so each level has the same sockets. {} pass(es): {}; values are \
             medians [min–max] over the passes.",
            plan.ns_passes,
            if plan.ns_passes > 1 {
                "the levels in order, then in reverse"
            } else {
                "the levels in order"
            }
        ),
        format!(
            "Window: once the tracked count has risen by the level's sockets (less {SLACK}), from \
             just after one kernel read of every namespace (iter/tcp, paced to 0.1% of a core \
             while slot walks succeed) to just after a later one, lasting at least {} \
             intervals. Agent CPU \
             from /proc/PID/stat (10 ms ticks), idle HTTP server included; scan ms = the agent's \
             tcp_liveness_scan_duration_seconds over the window (n scans); held pass ms = \
             tcp_liveness_held_socket_read_seconds_total / tcp_liveness_held_socket_reads_total \
             (n passes of iter/task_file over every process's descriptors; — when the agent does \
             not export them); slot walk ms = tcp_liveness_slot_walk_seconds_total / \
             tcp_liveness_slot_walks_total (n walks of the table's slots, Linux 6.2 and later); \
             kernel read ms = \
             tcp_liveness_kernel_read_seconds_total / tcp_liveness_kernel_reads_total (n reads). \
             CPU vs {reference} namespace(s) = ratio of the median CPU shares. Target: with the \
             same sockets over {TARGET_NAMESPACES} namespaces, agent CPU ≤ {TARGET_RATIO}× that \
             of one namespace.",
            plan.ns_window
        ),
    ];
    Section {
        title: "6. Namespaces: 10k sockets over N namespaces".into(),
        header: [
            "namespaces",
            "tracked sockets",
            "scan ms",
            "held pass ms",
            "slot walk ms",
            "kernel read ms (iter/tcp)",
            "agent CPU % of a core",
            "CPU vs 1 namespace",
            "target",
            "window s",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes,
    }
}
