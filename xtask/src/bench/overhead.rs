//! Application overhead: loopback throughput with the agent running vs not, interleaved, ratios
//! taken within a repetition. Two ways:
//! - the kernel programs alone, attached vs detached by the `bench-probes` helper, in many short
//!   alternating slices (the fine-grained interleave that beats this machine's noise);
//! - the agent process itself (programs + scan loop + HTTP) started vs stopped, ABBA per
//!   repetition (coarser: start-up takes seconds).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::bail;
use harness::agent::Agent;

use super::{
    Plan, Section,
    hooks::Helper,
    load::Load,
    measured::{self, READS, SCAN_COUNT},
    stats,
};

const LOADS: [(Load, f64); 3] = [
    (Load::RequestResponse, 0.98),
    (Load::Churn, 0.95),
    (Load::Bulk, 0.995),
];

/// The programs of each arm of [`toggled`], by index: every real hook, none, every floor
/// program, the hooks the agent attaches by default, the empty program on each of those, and
/// none again: the A/A arm, whose ratio to the first "none" is the measurement's own spread.
const ARMS: usize = 6;
const NONE: usize = 1;

/// Per load and arm (see [`ARMS`]): the rates, and their ratios to the arm without programs
/// within each round, from `pairs` rounds of alternating slices.
type Toggled = BTreeMap<&'static str, [(Vec<f64>, Vec<f64>); ARMS]>;

fn toggled(plan: &Plan) -> anyhow::Result<Toggled> {
    let mut helper = Helper::start(plan)?;
    let names: Vec<String> = helper.stats()?.into_keys().collect();
    let with_prefix = |prefix: &str| -> Vec<String> {
        names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect()
    };
    let floor = with_prefix("floor_");
    let empty = with_prefix("empty_");
    let real: Vec<String> = names
        .iter()
        .filter(|n| !floor.contains(n) && !empty.contains(n))
        .cloned()
        .collect();
    let defaults: Vec<String> = helper
        .command("defaults")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let empty_defaults: Vec<String> = defaults
        .iter()
        .map(|hook| format!("empty_{hook}"))
        .filter(|name| empty.contains(name))
        .collect();
    let arms: [String; ARMS] = [
        format!("attach {}", real.join(",")),
        "attach ".to_owned(),
        format!("attach {}", floor.join(",")),
        format!("attach {}", defaults.join(",")),
        format!("attach {}", empty_defaults.join(",")),
        "attach ".to_owned(),
    ];
    let mut out = Toggled::new();
    for (load, _) in LOADS {
        let results = out.entry(load.name()).or_default();
        for round in 0..plan.toggle_pairs {
            let mut rates = [0.0; ARMS];
            let forward: [usize; ARMS] = std::array::from_fn(|i| i);
            let order = if round % 2 == 0 {
                forward
            } else {
                forward.map(|i| ARMS - 1 - i)
            };
            for arm in order {
                let reply = helper.command(&arms[arm])?;
                if reply != "ok" {
                    bail!("attach: {reply}");
                }
                rates[arm] = load.run(plan.toggle_time)?;
            }
            for (arm, rate) in rates.iter().enumerate() {
                results[arm].0.push(*rate);
                results[arm].1.push(rate / rates[NONE]);
            }
        }
        eprintln!("bench: overhead (programs toggled) {} done", load.name());
    }
    helper.command("attach ")?;
    Ok(out)
}

/// Waits until a started agent runs as it does for the rest of its life: its first scan
/// (which ran the first pass over the held sockets) published, and its first read of every
/// namespace's socket state done. Start-up (loading the programs, seeding the table from every
/// namespace) is a one-time cost; the loads measure the agent running.
fn settle(agent: &Agent) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    measured::wait_for_increase(agent, SCAN_COUNT, 0.0, deadline)?;
    measured::wait_for_increase(agent, READS, 0.0, deadline)?;
    Ok(())
}

/// How long a started agent may take to settle ([`settle`]) on an idle host.
const SETTLE_WITHIN: Duration = Duration::from_mins(1);

/// By load name: the rates with the agent, without it, and their ratios within each repetition.
type AgentArms = [BTreeMap<&'static str, Vec<f64>>; 3];

/// Rates per load with the agent process running (settled: [`settle`]) and not, ABBA per
/// repetition.
fn agent_process(plan: &Plan) -> anyhow::Result<AgentArms> {
    let mut on: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut off: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let reps = plan.agent_reps;
    for rep in 0..reps {
        let agent_first = rep % 2 == 1;
        let mut rates: BTreeMap<(&str, bool), f64> = BTreeMap::new();
        for with_agent in [agent_first, !agent_first] {
            let agent = if with_agent {
                let agent = measured::start(plan, &[])?;
                settle(&agent)?;
                Some(agent)
            } else {
                None
            };
            for (load, _) in LOADS {
                let rate = load.run(plan.load_time)?;
                rates.insert((load.name(), with_agent), rate);
            }
            // SIGTERM (on drop); how the agent exits changes none of the figures taken.
            drop(agent);
        }
        for (load, _) in LOADS {
            let (a, b) = (rates[&(load.name(), true)], rates[&(load.name(), false)]);
            on.entry(load.name()).or_default().push(a);
            off.entry(load.name()).or_default().push(b);
            ratios.entry(load.name()).or_default().push(a / b);
        }
        eprintln!("bench: overhead repetition {}/{reps} done", rep + 1);
    }
    Ok([on, off, ratios])
}

/// The rows of the toggled arms, by load: each arm's rates and ratio to the detached arm.
fn toggled_rows(toggled: &Toggled) -> Vec<Vec<String>> {
    LOADS
        .iter()
        .flat_map(|(load, target)| {
            let arms = &toggled[load.name()];
            let without = format!("{} {}", stats::summary(&arms[NONE].0, 0), load.unit());
            let row = |arm: usize, what: &str, target: String, verdict: String| {
                vec![
                    format!("{} — {what}", load.name()),
                    without.clone(),
                    stats::summary(&arms[arm].0, 0),
                    stats::summary(&arms[arm].1, 3),
                    target,
                    verdict,
                ]
            };
            [
                row(
                    0,
                    "every hook attached (as with --per-packet-hooks) vs detached",
                    format!("≥ {target}"),
                    stats::met_by_median(&arms[0].1, *target),
                ),
                row(
                    2,
                    "floor programs only vs detached",
                    "(bound for any per-socket hook)".to_owned(),
                    String::new(),
                ),
                row(
                    3,
                    "the default hooks (rare events only) vs detached",
                    format!("≥ {target}"),
                    stats::met_by_median(&arms[3].1, *target),
                ),
                row(
                    4,
                    "empty programs on the default hooks vs detached",
                    "(bound for any program on them)".to_owned(),
                    String::new(),
                ),
                row(
                    5,
                    "detached vs detached (A/A: what the method resolves)",
                    "(1.000 if noise-free)".to_owned(),
                    String::new(),
                ),
            ]
        })
        .collect()
}

pub(super) fn run(plan: &Plan) -> anyhow::Result<Section> {
    let toggled = toggled(plan)?;
    let [on, off, ratios] = agent_process(plan)?;
    let reps = plan.agent_reps;
    let mut rows = toggled_rows(&toggled);
    rows.extend(LOADS.iter().map(|(load, target)| {
        let r = &ratios[load.name()];
        vec![
            format!(
                "{} — agent process running (default flags: no per-packet hook) vs not",
                load.name()
            ),
            format!("{} {}", stats::summary(&off[load.name()], 0), load.unit()),
            stats::summary(&on[load.name()], 0),
            stats::summary(r, 3),
            format!("≥ {target}"),
            stats::met_by_median(r, *target),
        ]
    }));
    Ok(Section {
        title: "2. Application overhead (loopback, agent running vs not)".into(),
        header: vec![
            "load".into(),
            "without agent".into(),
            "with agent".into(),
            "ratio (with/without)".into(),
            "target".into(),
            String::new(),
        ],
        rows,
        notes: vec![format!(
            "Programs toggled: {} rounds × {:?} per load and arm (every real program, none, the \
             floor programs, the default hooks' real programs, empty programs on the default \
             hooks, none again), the order reversed every round; kernel statistics are on during these arms. \
             The floor row is what one cookie + lookup + store on the same hooks costs the \
             application: no per-socket monitor on these hooks can do better on this machine. \
             The empty row is what the default hooks' tracepoints cost with a program that \
             returns at once: no program there can do better. The A/A row compares two arms that \
             differ in nothing: its spread is what a ratio of this method can resolve on this \
             machine. Agent process: {reps} repetitions × {:?} per load and arm, ABBA order; the \
             agent is started (default 5 s scan) and stopped in every repetition, and the loads \
             begin once it has settled (its first scan published and its first read of every \
             namespace done: start-up is left out). Ratios are \
             taken within a pair/repetition; median [min–max].",
            plan.toggle_pairs, plan.toggle_time, plan.load_time
        )],
    })
}
