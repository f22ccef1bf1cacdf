//! `tcp-liveness check`: one-shot, monitoring-plugin style (Nagios/Icinga/Sensu exit codes).
//! Exit 0: no suspect connections; 1 (WARNING): some, one line per group; 3 (UNKNOWN): the agent
//! could not be asked.

use std::{fmt::Write as _, io::Write as _};

use anyhow::Context as _;

use super::{connections::fetch, table::indented};
use crate::{
    alerting::{
        AlertGroup, AlertsView,
        exhaustion::{self, ExhaustionAlert},
    },
    model::{
        ConnectionView, LocalPort,
        format::{counted, escape_control, human_age},
        labels,
    },
};

pub(super) const OK: i32 = 0;
pub(super) const WARNING: i32 = 1;
pub(super) const UNKNOWN: i32 = 3;

#[derive(Clone, Debug, clap::Args)]
pub struct CheckArgs {
    /// Base URL of the running agent's HTTP listener.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9977")]
    pub agent: String,
    /// Print the agent's alert groups as JSON instead of one line per group (same exit codes).
    #[arg(long)]
    pub json: bool,
    /// Also print the call paths that opened the suspect connections, most common first, with
    /// their frames (an agent run with `--stacks`; same exit codes).
    #[arg(long)]
    pub stack: bool,
}

/// Runs the check; returns the exit code. Everything, errors included, goes to stdout: monitoring
/// systems show the plugin's stdout.
pub(super) fn run(args: &CheckArgs) -> i32 {
    let (code, out) = match ask(args) {
        Ok(view) => {
            let code = if view.alerts.is_empty() { OK } else { WARNING };
            let out = if args.json {
                serde_json::to_string_pretty(&view)
                    .map_or_else(|e| format!("UNKNOWN: {e}"), |json| json + "\n")
            } else {
                let mut out = report(&view.alerts) + &forecast_lines(&view.fd_exhaustion);
                if args.stack {
                    out += &stack_section(args);
                }
                out
            };
            (code, out)
        }
        // The error can quote what the server answered.
        Err(error) => (
            UNKNOWN,
            format!("UNKNOWN: {}\n", escape_control(&format!("{error:#}"))),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe must not turn WARNING into a panic; the code still says it all.
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    code
}

/// One line per process predicted to run out of descriptors (`TcpLivenessFdExhaustionPredicted`).
fn forecast_lines(alerts: &[ExhaustionAlert]) -> String {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}: {}\n",
                exhaustion::ALERT_NAME,
                escape_control(&a.summary())
            )
        })
        .collect::<Vec<_>>()
        .concat()
}

/// The `--stack` section, from the agent's suspect connections; a line saying why when they
/// cannot be read (the exit code stays the groups').
fn stack_section(args: &CheckArgs) -> String {
    let url = format!("{}/connections", args.agent.trim_end_matches('/'));
    let suspects = fetch(&url, &args.agent, &[("suspect", "true".to_owned())]).and_then(|body| {
        serde_json::from_str::<Vec<ConnectionView>>(&body)
            .with_context(|| format!("{url} did not answer a connection list"))
    });
    match suspects {
        Ok(suspects) => stacks::section(&suspects),
        Err(error) => format!(
            "call paths unavailable: {}\n",
            escape_control(&format!("{error:#}"))
        ),
    }
}

fn ask(args: &CheckArgs) -> anyhow::Result<AlertsView> {
    let url = format!("{}/alerts", args.agent.trim_end_matches('/'));
    let body = fetch(&url, &args.agent, &[])?;
    let view: AlertsView = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer an alert list (is it tcp-liveness?)"))?;
    Ok(view)
}

/// A status line, then one aligned line per group, followed by its oldest connection's `why`
/// and the remedy, each on its own indented line.
pub(super) fn report(groups: &[AlertGroup]) -> String {
    if groups.is_empty() {
        return "OK: no suspect connections\n".to_owned();
    }
    let total: usize = groups.iter().map(|g| g.count).sum();
    let mut out = format!(
        "WARNING: {} in {}\n",
        counted(total, "suspect connection"),
        counted(groups.len(), "group")
    );
    let rows: Vec<[String; 5]> = groups
        .iter()
        .map(|g| {
            [
                g.reason.as_str().to_owned(),
                // The owner is a process name anyone can set: no raw control characters.
                escape_control(&g.owner).into_owned(),
                match g.local_port {
                    LocalPort::Service(port) => format!("port {port}"),
                    LocalPort::Outbound => labels::OUTBOUND.to_owned(),
                    LocalPort::Other if g.owner == labels::OTHER => {
                        counted(g.folded_groups, "more group")
                    }
                    LocalPort::Other => counted(g.folded_groups, "more port"),
                },
                counted(g.count, "connection"),
                format!("oldest {}", human_age(g.oldest_seconds)),
            ]
        })
        .collect();
    let mut widths = [0; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (row, g) in rows.iter().zip(groups) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out += line.trim_end();
        out.push('\n');
        // The oldest sample's reason, in its own values: what to look at first.
        if let Some(why) = g.samples.first().and_then(|s| s.why_for(g.reason.as_str())) {
            out += &indented(&format!("oldest: {why}"), 4);
        }
        out += &indented(&format!("fix: {}", g.reason.remedy()), 4);
    }
    out
}

mod stacks;
#[cfg(test)]
mod tests;
