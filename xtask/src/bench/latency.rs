//! Detection latency: from the fault to the verdict in /connections and in /metrics, with small
//! thresholds. Faults, in two namespaces joined by veth:
//! - peer close: the client closes, the server never does (`CLOSE_WAIT`) → `close_wait_stuck`;
//! - peer dropped: the client streams, the server's namespace drops all input (iptables) →
//!   `peer_unresponsive` on the client's socket.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use harness::{agent::Agent, metrics, netns::NetPair};
use serde_json::Value;

use super::{Plan, Section, measured, stats, worker};

const THRESHOLD: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_secs(1);

/// Whether /connections lists a socket whose `side` (local or remote) has port `port`, flagged
/// `reason`.
fn flagged(agent: &Agent, port: u16, side: &str, reason: &str) -> anyhow::Result<bool> {
    let list: Value = serde_json::from_str(&agent.try_get("/connections")?)?;
    let suffix = format!(":{port}");
    Ok(list.as_array().context("not an array")?.iter().any(|c| {
        c[side].as_str().is_some_and(|a| a.ends_with(&suffix))
            && c["suspect"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r == reason))
    }))
}

fn gauge(agent: &Agent, reason: &str) -> anyhow::Result<f64> {
    Ok(metrics::sum(
        &measured::metrics(agent)?,
        &format!("tcp_liveness_suspect_connections{{reason=\"{reason}\"}}"),
    ))
}

/// Polls both endpoints from `fault` until each shows the verdict: (connections, metrics) latency.
fn detect(
    agent: &Agent,
    fault: Instant,
    port: u16,
    side: &str,
    reason: &str,
    baseline: f64,
) -> anyhow::Result<(f64, f64)> {
    let (mut in_json, mut in_metrics) = (None, None);
    let deadline = fault + THRESHOLD + INTERVAL + Duration::from_secs(30);
    while in_json.is_none() || in_metrics.is_none() {
        if Instant::now() > deadline {
            bail!("{reason} not detected within 30 s past threshold + interval");
        }
        if in_json.is_none() && flagged(agent, port, side, reason)? {
            in_json = Some(fault.elapsed().as_secs_f64());
        }
        if in_metrics.is_none() && gauge(agent, reason)? >= baseline + 1.0 {
            in_metrics = Some(fault.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((in_json.unwrap_or_default(), in_metrics.unwrap_or_default()))
}

fn local_port(first: &str) -> anyhow::Result<u16> {
    Ok(first
        .strip_prefix("port ")
        .with_context(|| format!("client said {first:?}"))?
        .parse()?)
}

/// Trial `trial` of the peer close: the client closes `phase` after connecting, the server never
/// does (`CLOSE_WAIT` on the server) → `close_wait_stuck`. (connections, metrics) latency in s.
fn peer_close(
    agent: &Agent,
    pair: &NetPair,
    trial: usize,
    phase: Duration,
) -> anyhow::Result<(f64, f64)> {
    let addr = format!("{}:{}", pair.server_ip, 7000 + trial);
    let server = worker::spawn(&pair.server, &["server", &addr])?;
    let mut client = worker::spawn(&pair.client, &["client", &addr, "close"])?;
    let port = local_port(&client.first)?;
    std::thread::sleep(phase);
    let baseline = gauge(agent, "close_wait_stuck")?;
    let fault = Instant::now();
    client.send("close")?;
    let detected = detect(agent, fault, port, "remote", "close_wait_stuck", baseline)?;
    let closed = client.read_line()?;
    if closed != "closed" {
        bail!("client: {closed:?}");
    }
    drop((client, server));
    Ok(detected)
}

/// Trial `trial` of the dropped peer: the client streams, and `phase` after connecting the
/// server's namespace drops all input → `peer_unresponsive` on the client. (connections, metrics)
/// latency in s.
fn peer_dropped(
    agent: &Agent,
    pair: &NetPair,
    trial: usize,
    phase: Duration,
) -> anyhow::Result<(f64, f64)> {
    let server_port =
        u16::try_from(8000 + trial).context("too many latency trials: port 8000 + trial")?;
    let addr = format!("{}:{server_port}", pair.server_ip);
    let server = worker::spawn(&pair.server, &["server", &addr])?;
    let client = worker::spawn(&pair.client, &["client", &addr, "stream"])?;
    local_port(&client.first)?;
    std::thread::sleep(phase);
    let baseline = gauge(agent, "peer_unresponsive")?;
    let fault = Instant::now();
    pair.server.drop_input()?;
    // The client's socket is the one flagged; it is found by the server's port, unique per
    // trial (its own local port is not always known to the agent, see BENCHMARKS.md).
    let detected = detect(
        agent,
        fault,
        server_port,
        "remote",
        "peer_unresponsive",
        baseline,
    );
    pair.server.stop_dropping_input()?;
    let detected = detected?;
    drop((client, server));
    Ok(detected)
}

pub(super) fn run(plan: &Plan) -> anyhow::Result<Section> {
    let pair = NetPair::create("bench", 213)?;
    let secs = |d: Duration| format!("{}s", d.as_secs());
    let agent = measured::start(
        plan,
        &[
            "--scan-interval",
            &secs(INTERVAL),
            "--close-wait-after",
            &secs(THRESHOLD),
            "--unresponsive-after",
            &secs(THRESHOLD),
        ],
    )?;
    let (mut cw_json, mut cw_metrics, mut drop_json, mut drop_metrics) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for trial in 0..plan.latency_trials {
        // Spread the fault over the scan period: latency depends on where it falls between
        // two scans, and a fixed delay would sample one phase only.
        let phase = INTERVAL * 2 + INTERVAL.mul_f64(trial as f64 / plan.latency_trials as f64);
        let (j, m) = peer_close(&agent, &pair, trial, phase)?;
        cw_json.push(j);
        cw_metrics.push(m);
        let (j, m) = peer_dropped(&agent, &pair, trial, phase)?;
        drop_json.push(j);
        drop_metrics.push(m);
        eprintln!(
            "bench: latency trial {}/{} done",
            trial + 1,
            plan.latency_trials
        );
    }
    // SIGTERM; how the agent exits changes none of the figures taken.
    drop(agent);
    let bound = (THRESHOLD + INTERVAL).as_secs_f64();
    let row = |fault: &str, reason: &str, where_: &str, v: &[f64]| {
        vec![
            fault.to_owned(),
            reason.to_owned(),
            where_.to_owned(),
            stats::summary(v, 2),
            format!("≤ {bound:.1}"),
            if stats::min_max(v).1 <= bound {
                "met (all trials)"
            } else if stats::median(v) <= bound {
                "met (median)"
            } else {
                "missed"
            }
            .to_owned(),
        ]
    };
    Ok(Section {
        title: format!(
            "4. Detection latency (s from fault to verdict; threshold {THRESHOLD:?}, scan interval {INTERVAL:?})"
        ),
        header: ["fault", "verdict", "seen in", "latency s", "target", ""]
            .map(String::from)
            .to_vec(),
        rows: vec![
            row("peer close", "close_wait_stuck", "/connections", &cw_json),
            row("peer close", "close_wait_stuck", "/metrics", &cw_metrics),
            row(
                "peer dropped",
                "peer_unresponsive",
                "/connections",
                &drop_json,
            ),
            row(
                "peer dropped",
                "peer_unresponsive",
                "/metrics",
                &drop_metrics,
            ),
        ],
        notes: vec![format!(
            "{} trials; /connections and /metrics polled every 20 ms; the fault time is taken \
             just before the client's close() is requested / the DROP rule is inserted. \
             /connections is matched by this trial's ports; /metrics by the \
             tcp_liveness_suspect_connections gauge rising above its value before the fault \
             (on a shared machine other processes' suspects can move it too).",
            plan.latency_trials
        )],
    })
}
