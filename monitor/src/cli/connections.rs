//! `tcp-liveness connections`: ask a running agent for its connections and print them like `ss`,
//! or (`--suspect`) only the flagged ones and why.

mod table;

use std::{
    io::{ErrorKind, Write as _},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use monitor_common::tcp_state;

use crate::model::{ConnectionView, format::escape_control};

/// Largest answer accepted: a full 262k-entry table is ~120 MB of JSON; ureq's default is 10 MB.
const BODY_LIMIT: u64 = 512 * 1024 * 1024;

#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionsArgs {
    /// Base URL of the running agent's HTTP listener.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9977")]
    pub agent: String,
    /// Only connections in this TCP state (established, `close_wait`, close-wait, `SYN_SENT`, ...).
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<u8>,
    /// Only connections idle at least this long (30s, 5m, 2h); unknown idle times never match.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub min_idle: Option<Duration>,
    /// Only flagged connections, by reason then oldest first, each with why it is flagged.
    #[arg(long)]
    pub suspect: bool,
    /// Only connections this process owns or holds.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only connections with this local or remote port.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Only connections in this network namespace (its inode: stat -L -c %i /proc/PID/ns/net).
    #[arg(long, value_name = "INODE")]
    pub netns: Option<u32>,
    /// More columns: the times since the last send, receive and segment from the peer,
    /// unacknowledged bytes, retransmits, namespace, cookie, holders, enforce policy, cgroup, pod
    /// (lines longer than 120 columns).
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
    /// Print the agent's JSON (pretty-printed) instead of a table.
    #[arg(long)]
    pub json: bool,
}

// Checked here too, so a typo fails at once with clap's usage message instead of a round trip.
fn parse_state(s: &str) -> Result<u8, String> {
    tcp_state::parse(s)
        .ok_or_else(|| format!("{s:?} is not a TCP state (try established, close_wait)"))
}

/// The `/connections` query parameters for `args`: the agent filters, so only what is asked
/// for crosses the wire.
fn query(args: &ConnectionsArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(name) = args.state.and_then(tcp_state::name) {
        query.push(("state", name.to_owned()));
    }
    if let Some(min_idle) = args.min_idle {
        query.push(("min_idle", format!("{}ms", min_idle.as_millis())));
    }
    if args.suspect {
        query.push(("suspect", "true".to_owned()));
    }
    if let Some(pid) = args.pid {
        query.push(("pid", pid.to_string()));
    }
    if let Some(port) = args.port {
        query.push(("port", port.to_string()));
    }
    if let Some(netns) = args.netns {
        query.push(("netns", netns.to_string()));
    }
    query
}

pub(super) fn run(args: &ConnectionsArgs) -> anyhow::Result<()> {
    let url = format!("{}/connections", args.agent.trim_end_matches('/'));
    let body = fetch(&url, &args.agent, &query(args))?;
    let views: Vec<ConnectionView> = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer a connection list"))?;
    let out = if args.json {
        // Through ConnectionView rather than serde_json::Value: Value would sort the keys
        // alphabetically, while the struct keeps the documented field order.
        serde_json::to_string_pretty(&views)? + "\n"
    } else if args.suspect {
        table::suspects(&views, args.wide)
    } else {
        table::connections(&views, args.wide)
    };
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        // `| head` closing the pipe is not an error worth reporting.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}

/// GET `url` (built from the `--agent` value `agent`) with `query`; the body of a 2xx answer,
/// else an error that says what to check.
pub(crate) fn fetch(url: &str, agent: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
    let client: ureq::Agent = ureq::Agent::config_builder()
        // 4xx answers carry a one-line explanation worth showing; read them instead of erroring.
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let request = client
        .get(url)
        .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    let mut response = request.call().map_err(|err| match err {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            anyhow!("invalid --agent URL {agent:?}: {err}")
        }
        _ => anyhow!(
            "cannot reach the agent at {url}: {err} (is `tcp-liveness` running and listening there? see --agent)"
        ),
    })?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_string()
        .with_context(|| format!("reading the answer from {url}"))?;
    if !status.is_success() {
        // The agent's errors are one line; anything longer is some other server's page.
        let first_line = body
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let detail: String = escape_control(first_line).chars().take(200).collect();
        bail!("{url} answered {status}: {detail}");
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
