//! Hook cost: ns per invocation of every program from the kernel's own statistics
//! (`BPF_ENABLE_STATS` `run_time_ns` / `run_cnt`), the real programs and the floor programs attached on
//! the same hooks at the same time, under request/response and churn loads. Each repetition
//! alternates which of the two runs first on a tracepoint: the first pays the cache misses on the
//! socket and the map bucket that the second then finds warm (here that alone moves a ratio from
//! ~0.9 to ~1.6), so the figure of merit is the order-balanced ratio of each pair of repetitions,
//! the geometric mean of one repetition in each order.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{Plan, Section, load::Load, stats};

/// The `bench-probes hooks` helper (it links the agent's library to load the object).
pub(super) struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    pub(super) fn start(plan: &Plan) -> anyhow::Result<Self> {
        let mut child = Command::new(&plan.helper)
            .arg("hooks")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting bench-probes")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut helper = Self {
            child,
            stdin,
            stdout,
        };
        let ready = helper.line()?;
        if ready != "ready" {
            bail!("bench-probes: {ready:?}");
        }
        Ok(helper)
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.is_empty() {
            bail!("bench-probes exited");
        }
        Ok(line.trim().to_owned())
    }

    pub(super) fn command(&mut self, command: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.line()
    }

    pub(super) fn stats(&mut self) -> anyhow::Result<BTreeMap<String, Value>> {
        let line = self.command("stats")?;
        Ok(serde_json::from_str::<BTreeMap<String, Value>>(&line)?)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// Attaches exactly `programs` (in that order), runs `load`, and returns ns per run and runs of
/// each program that fired.
fn measure(
    helper: &mut Helper,
    programs: &[String],
    load: Load,
    plan: &Plan,
) -> anyhow::Result<BTreeMap<String, (f64, u64)>> {
    let reply = helper.command(&format!("attach {}", programs.join(",")))?;
    if reply != "ok" {
        bail!("attach: {reply}");
    }
    let before = helper.stats()?;
    load.run(plan.load_time)?;
    let after = helper.stats()?;
    Ok(programs
        .iter()
        .filter_map(|name| {
            let dt = field(&after, name, "run_time_ns") - field(&before, name, "run_time_ns");
            let dn = field(&after, name, "run_count") - field(&before, name, "run_count");
            (dn > 0).then(|| (name.clone(), (dt as f64 / dn as f64, dn)))
        })
        .collect())
}

fn field(stats: &BTreeMap<String, Value>, name: &str, key: &str) -> u64 {
    stats
        .get(name)
        .and_then(|v| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The two loads every hook is measured under, by the tag the table shows.
const LOADS: [(&str, Load); 2] = [("rr", Load::RequestResponse), ("churn", Load::Churn)];

/// What the repetitions measured, per (load tag, program).
#[derive(Default)]
struct Measurements {
    /// ns per run, one value per repetition.
    ns: BTreeMap<(&'static str, String), Vec<f64>>,
    /// real/floor ratio per repetition, `None` where a hook did not fire.
    ratios: BTreeMap<(&'static str, String), Vec<Option<f64>>>,
    /// real/floor ratio with each set attached alone, one per repetition.
    alone_ratios: BTreeMap<(&'static str, String), Vec<f64>>,
    /// Runs over all repetitions.
    runs: BTreeMap<(&'static str, String), u64>,
}

pub(super) fn run(plan: &Plan) -> anyhow::Result<Section> {
    let mut helper = Helper::start(plan)?;
    let first = helper.stats()?;
    let real: Vec<String> = first
        .keys()
        .filter(|n| !n.starts_with("floor_") && !n.starts_with("empty_"))
        .cloned()
        .collect();
    let floors: Vec<String> = first
        .keys()
        .filter(|n| n.starts_with("floor_"))
        .cloned()
        .collect();
    // Whole pairs, one repetition in each order.
    let reps = plan.reps.div_ceil(2) * 2;
    let measured = repeat(&mut helper, plan, reps, &real, &floors)?;
    helper.command("attach ")?;
    let last = helper.stats()?;
    drop(helper);

    Ok(Section {
        title:
            "1. Hook cost (kernel bpf_stats, ns per invocation; median [min–max] over repetitions)"
                .into(),
        header: vec![
            "load".into(),
            "hook".into(),
            "runs".into(),
            "ns/run".into(),
            "floor ns/run".into(),
            "ratio, real first".into(),
            "ratio, floor first".into(),
            "ratio to floor (order-balanced)".into(),
            "ratio, each attached alone".into(),
            "target".into(),
            "xlated insns (prog / floor)".into(),
        ],
        rows: rows(&measured, &real, &last),
        notes: vec![format!(
            "{} repetitions × {:?} per load; real and floor programs attached together, \
             attach order alternated per repetition; the floor is one cookie + one hash lookup + \
             one timestamp store (monitor-ebpf/src/floor.rs). The program attached first pays \
             the cache misses the second then finds warm, so each order is shown, and the \
             figure of merit is the geometric mean of the two ratios of each pair of repetitions \
             (one in each order), median [min–max] over pairs. In the same repetitions each \
             set is also attached alone, one after the other in alternating order, under the same \
             load: that ratio shares no cache but compares different time windows. Hooks that \
             did not fire are omitted.",
            reps, plan.load_time
        )],
    })
}

/// `reps` repetitions under every load: the `real` and `floors` programs attached together
/// (real first on even repetitions, floors first on odd ones), then each set alone in the same
/// alternating order.
fn repeat(
    helper: &mut Helper,
    plan: &Plan,
    reps: usize,
    real: &[String],
    floors: &[String],
) -> anyhow::Result<Measurements> {
    let mut m = Measurements::default();
    for rep in 0..reps {
        let order: Vec<String> = if rep % 2 == 0 {
            real.iter().chain(floors).cloned().collect()
        } else {
            floors.iter().chain(real).cloned().collect()
        };
        for (tag, load) in LOADS {
            let together = measure(helper, &order, load, plan)?;
            for (name, &(cost, count)) in &together {
                m.ns.entry((tag, name.clone())).or_default().push(cost);
                *m.runs.entry((tag, name.clone())).or_default() += count;
            }
            // Each set alone, in alternating order: no shared cache, separate time windows.
            let (first, second) = if rep % 2 == 0 {
                (real, floors)
            } else {
                (floors, real)
            };
            let mut alone = measure(helper, first, load, plan)?;
            alone.extend(measure(helper, second, load, plan)?);
            for name in real {
                let floor = format!("floor_{name}");
                let ratio_of =
                    |set: &BTreeMap<String, (f64, u64)>| match (set.get(name), set.get(&floor)) {
                        (Some((cost, _)), Some((floor, _))) => Some(cost / floor),
                        _ => None,
                    };
                m.ratios
                    .entry((tag, name.clone()))
                    .or_default()
                    .push(ratio_of(&together));
                m.alone_ratios
                    .entry((tag, name.clone()))
                    .or_default()
                    .extend(ratio_of(&alone));
            }
        }
        eprintln!("bench: hooks repetition {}/{reps} done", rep + 1);
    }
    Ok(m)
}

/// One row per load and real program that fired; `last` gives the programs' sizes.
fn rows(m: &Measurements, real: &[String], last: &BTreeMap<String, Value>) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (tag, _) in LOADS {
        for name in real {
            let Some(costs) = m.ns.get(&(tag, name.clone())) else {
                continue;
            };
            let floor = format!("floor_{name}");
            let floor_costs = m.ns.get(&(tag, floor.clone()));
            let by_rep = m.ratios.get(&(tag, name.clone()));
            let ratio = |f: fn(&[Option<f64>]) -> Vec<f64>| {
                let values = by_rep.map(|r| f(r)).unwrap_or_default();
                if values.is_empty() {
                    "—".to_owned()
                } else {
                    stats::summary(&values, 2)
                }
            };
            let target = match name.as_str() {
                "sock_send_length" | "sock_recv_length" | "tcp_probe" => "≤ 1.5× floor",
                _ => "",
            };
            rows.push(vec![
                tag.to_owned(),
                name.clone(),
                m.runs
                    .get(&(tag, name.clone()))
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
                stats::summary(costs, 0),
                floor_costs.map_or("—".into(), |c| stats::summary(c, 0)),
                ratio(|r| in_order(r, 0)),
                ratio(|r| in_order(r, 1)),
                ratio(order_balanced),
                m.alone_ratios
                    .get(&(tag, name.clone()))
                    .filter(|r| !r.is_empty())
                    .map_or("—".into(), |r| stats::summary(r, 2)),
                target.to_owned(),
                format!(
                    "{} / {}",
                    field(last, name, "xlated_insns"),
                    field(last, &floor, "xlated_insns")
                ),
            ]);
        }
    }
    rows
}

/// The ratios of the repetitions in one attach order (0: real first, 1: floor first).
fn in_order(by_rep: &[Option<f64>], order: usize) -> Vec<f64> {
    by_rep
        .iter()
        .skip(order)
        .step_by(2)
        .flatten()
        .copied()
        .collect()
}

/// One value per pair of repetitions: the geometric mean of its two ratios, which cancels the
/// attach-order advantage (a constant factor one way, its inverse the other).
fn order_balanced(by_rep: &[Option<f64>]) -> Vec<f64> {
    by_rep
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [Some(a), Some(b)] => Some((a * b).sqrt()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_balancing_cancels_a_constant_attach_order_factor() {
        // True ratio 1.2, the first-attached program paying 1.5× more either way.
        let by_rep = [
            Some(1.2 * 1.5),
            Some(1.2 / 1.5),
            None,
            Some(1.0),
            Some(1.2 * 1.5),
        ];
        let balanced = order_balanced(&by_rep);
        assert_eq!(balanced.len(), 1);
        assert!((balanced[0] - 1.2).abs() < 1e-9);
        assert_eq!(in_order(&by_rep, 0), vec![1.2 * 1.5, 1.2 * 1.5]);
        assert_eq!(in_order(&by_rep, 1), vec![1.2 / 1.5, 1.0]);
    }
}
