//! What recording opening call stacks (`--stacks`) costs an application that opens connections:
//! loopback connect/accept churn with the agent running with `--stacks` vs without, both arms
//! with the agent (so only the stack programs differ), ABBA per repetition, the ratio taken
//! within each repetition.

use super::{Plan, Section, load::Load, measured, stats};

/// The target: churn keeps at least this share of its rate with stacks on (one
/// `bpf_get_stackid` per `connect()` and per `accept()`).
const TARGET: f64 = 0.95;

pub(super) fn run(plan: &Plan) -> anyhow::Result<Section> {
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let reps = plan.agent_reps;
    for rep in 0..reps {
        let stacks_first = rep % 2 == 1;
        let mut rates = [0.0; 2];
        for stacks in [stacks_first, !stacks_first] {
            let flags: &[&str] = if stacks { &["--stacks"] } else { &[] };
            let agent = measured::start(plan, flags)?;
            rates[usize::from(stacks)] = Load::Churn.run(plan.load_time)?;
            drop(agent);
        }
        off.push(rates[0]);
        on.push(rates[1]);
        ratios.push(rates[1] / rates[0]);
        eprintln!("bench: stacks repetition {}/{reps} done", rep + 1);
    }
    let met = stats::met_by_median(&ratios, TARGET);
    Ok(Section {
        title: "7. Opening call stacks (`--stacks`): churn with vs without".into(),
        header: vec![
            "load".into(),
            "agent without --stacks".into(),
            "agent with --stacks".into(),
            "ratio (with/without)".into(),
            "target".into(),
            String::new(),
        ],
        rows: vec![vec![
            Load::Churn.name().to_owned(),
            format!("{} {}", stats::summary(&off, 0), Load::Churn.unit()),
            stats::summary(&on, 0),
            stats::summary(&ratios, 3),
            format!("≥ {TARGET}"),
            met,
        ]],
        notes: vec![format!(
            "{reps} repetitions × {:?} per arm, ABBA order; the agent (default flags otherwise) \
             is started and stopped in every arm. Ratios are taken within a repetition; median \
             [min–max].",
            plan.load_time
        )],
    })
}
