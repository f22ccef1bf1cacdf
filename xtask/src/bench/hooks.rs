//! Hook cost: ns per invocation of every program from the kernel's own statistics
//! (BPF_ENABLE_STATS run_time_ns / run_cnt), the real programs and the floor programs attached on
//! the same hooks at the same time, under request/response and churn loads. Each repetition
//! alternates which of the two runs first on a tracepoint (the second finds the socket in cache).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{Plan, Section, load::Load, stats};

/// The `bench-probes hooks` helper (it links the agent's library to load the object).
pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    pub fn start(plan: &Plan) -> anyhow::Result<Self> {
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

    pub fn command(&mut self, command: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.line()
    }

    pub fn stats(&mut self) -> anyhow::Result<BTreeMap<String, Value>> {
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

fn field(stats: &BTreeMap<String, Value>, name: &str, key: &str) -> u64 {
    stats
        .get(name)
        .and_then(|v| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

pub fn run(plan: &Plan) -> anyhow::Result<Section> {
    let mut helper = Helper::start(plan)?;
    let first = helper.stats()?;
    let real: Vec<String> = first
        .keys()
        .filter(|n| !n.starts_with("floor_"))
        .cloned()
        .collect();
    let floors: Vec<String> = first
        .keys()
        .filter(|n| n.starts_with("floor_"))
        .cloned()
        .collect();
    // (load, program) → ns per run, one value per repetition.
    let mut ns: BTreeMap<(&str, String), Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<(&str, String), Vec<f64>> = BTreeMap::new();
    let mut runs: BTreeMap<(&str, String), u64> = BTreeMap::new();
    let loads = [("rr", Load::RequestResponse), ("churn", Load::Churn)];
    for rep in 0..plan.reps {
        let order: Vec<String> = if rep % 2 == 0 {
            real.iter().chain(&floors).cloned().collect()
        } else {
            floors.iter().chain(&real).cloned().collect()
        };
        let reply = helper.command(&format!("attach {}", order.join(",")))?;
        if reply != "ok" {
            bail!("attach: {reply}");
        }
        for (tag, load) in loads {
            let before = helper.stats()?;
            load.run(plan.load_time)?;
            let after = helper.stats()?;
            let per_run = |name: &str| {
                let dt = field(&after, name, "run_time_ns") - field(&before, name, "run_time_ns");
                let dn = field(&after, name, "run_count") - field(&before, name, "run_count");
                (dn > 0).then(|| (dt as f64 / dn as f64, dn))
            };
            for name in real.iter().chain(&floors) {
                if let Some((cost, count)) = per_run(name) {
                    ns.entry((tag, name.clone())).or_default().push(cost);
                    *runs.entry((tag, name.clone())).or_default() += count;
                }
            }
            for name in &real {
                if let (Some((cost, _)), Some((floor, _))) =
                    (per_run(name), per_run(&format!("floor_{name}")))
                {
                    ratios
                        .entry((tag, name.clone()))
                        .or_default()
                        .push(cost / floor);
                }
            }
        }
        eprintln!("bench: hooks repetition {}/{} done", rep + 1, plan.reps);
    }
    helper.command("attach ")?;
    let last = helper.stats()?;
    drop(helper);

    let mut rows = Vec::new();
    for (tag, _) in loads {
        for name in &real {
            let Some(costs) = ns.get(&(tag, name.clone())) else {
                continue;
            };
            let floor = format!("floor_{name}");
            let floor_costs = ns.get(&(tag, floor.clone()));
            let ratio = ratios.get(&(tag, name.clone()));
            let target = match name.as_str() {
                "sock_send_length" | "sock_recv_length" | "tcp_probe" => "≤ 1.5× floor",
                _ => "",
            };
            rows.push(vec![
                tag.to_owned(),
                name.clone(),
                runs.get(&(tag, name.clone()))
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
                stats::summary(costs, 0),
                floor_costs.map_or("—".into(), |c| stats::summary(c, 0)),
                ratio.map_or("—".into(), |r| stats::summary(r, 2)),
                target.to_owned(),
                format!(
                    "{} / {}",
                    field(&last, name, "xlated_insns"),
                    field(&last, &floor, "xlated_insns")
                ),
            ]);
        }
    }
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
            "ratio to floor".into(),
            "target".into(),
            "xlated insns (prog / floor)".into(),
        ],
        rows,
        notes: vec![format!(
            "{} repetitions × {:?} per load; real and floor programs attached together, \
             attach order alternated per repetition; the floor is one cookie + one hash lookup + \
             one timestamp store (monitor-ebpf/src/floor.rs). Hooks that did not fire are omitted.",
            plan.reps, plan.load_time
        )],
    })
}
