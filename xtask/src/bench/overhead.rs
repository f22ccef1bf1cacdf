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

/// Per load: rates with the real programs, with none, with the floor programs, and the ratios
/// real/none and floor/none, from `pairs` rounds of alternating slices.
fn toggled(plan: &Plan) -> anyhow::Result<BTreeMap<&'static str, [Vec<f64>; 5]>> {
    let mut helper = Helper::start(plan)?;
    let (floor, real): (Vec<String>, Vec<String>) = helper
        .stats()?
        .into_keys()
        .partition(|n| n.starts_with("floor_"));
    let arms = [
        format!("attach {}", real.join(",")),
        "attach ".to_owned(),
        format!("attach {}", floor.join(",")),
    ];
    let mut out: BTreeMap<&str, [Vec<f64>; 5]> = BTreeMap::new();
    for (load, _) in LOADS {
        let results = out.entry(load.name()).or_default();
        for round in 0..plan.toggle_pairs {
            let mut rates = [0.0; 3];
            let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
            for arm in order {
                let reply = helper.command(&arms[arm])?;
                if reply != "ok" {
                    bail!("attach: {reply}");
                }
                rates[arm] = load.run(plan.toggle_time)?;
            }
            for (i, rate) in rates.iter().enumerate() {
                results[i].push(*rate);
            }
            results[3].push(rates[0] / rates[1]);
            results[4].push(rates[2] / rates[1]);
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

pub(super) fn run(plan: &Plan) -> anyhow::Result<Section> {
    let toggled = toggled(plan)?;
    let [on, off, ratios] = agent_process(plan)?;
    let reps = plan.agent_reps;
    let verdict = |r: &[f64], target: f64| {
        if stats::median(r) >= target {
            "met"
        } else {
            "missed"
        }
        .to_owned()
    };
    let mut rows: Vec<Vec<String>> = LOADS
        .iter()
        .flat_map(|(load, target)| {
            let [with, without, floor, r, floor_r] = &toggled[load.name()];
            [
                vec![
                    format!(
                        "{} — every hook attached (as with --per-packet-hooks) vs detached",
                        load.name()
                    ),
                    format!("{} {}", stats::summary(without, 0), load.unit()),
                    stats::summary(with, 0),
                    stats::summary(r, 3),
                    format!("≥ {target}"),
                    verdict(r, *target),
                ],
                vec![
                    format!("{} — floor programs only vs detached", load.name()),
                    format!("{} {}", stats::summary(without, 0), load.unit()),
                    stats::summary(floor, 0),
                    stats::summary(floor_r, 3),
                    "(bound for any per-socket hook)".to_owned(),
                    String::new(),
                ],
            ]
        })
        .collect();
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
            verdict(r, *target),
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
            "Programs toggled: {} rounds × {:?} per load and arm (real programs, none, floor \
             programs), alternating the order; kernel statistics are on during these arms. \
             The floor row is what one cookie + lookup + store on the same hooks costs the \
             application: no per-socket monitor on these hooks can do better on this machine. Agent process: {reps} repetitions × {:?} per load and arm, ABBA order; the \
             agent is started (default 5 s scan) and stopped in every repetition, and the loads \
             begin once it has settled (its first scan published and its first read of every \
             namespace done: start-up is left out). Ratios are \
             taken within a pair/repetition; median [min–max].",
            plan.toggle_pairs, plan.toggle_time, plan.load_time
        )],
    })
}
