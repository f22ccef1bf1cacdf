//! `tcp-liveness connections`: ask a running agent for its connections and print them like `ss`.

use std::{
    fmt::Write as _,
    io::{ErrorKind, Write as _},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use monitor_common::tcp_state;

use crate::model::{
    ConnectionView,
    format::{escape_control, human_age},
};

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
    /// Print the agent's JSON (pretty-printed) instead of a table.
    #[arg(long)]
    pub json: bool,
}

// Checked here too, so a typo fails at once with clap's usage message instead of a round trip.
fn parse_state(s: &str) -> Result<u8, String> {
    tcp_state::parse(s)
        .ok_or_else(|| format!("{s:?} is not a TCP state (try established, close_wait)"))
}

pub(super) fn run(args: &ConnectionsArgs) -> anyhow::Result<()> {
    let url = format!("{}/connections", args.agent.trim_end_matches('/'));
    let mut query = Vec::new();
    if let Some(name) = args.state.and_then(tcp_state::name) {
        query.push(("state", name.to_owned()));
    }
    if let Some(min_idle) = args.min_idle {
        query.push(("min_idle", format!("{}ms", min_idle.as_millis())));
    }
    let body = fetch(&url, &args.agent, &query)?;
    let views: Vec<ConnectionView> = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer a connection list"))?;
    let out = if args.json {
        // Through ConnectionView rather than serde_json::Value: Value would sort the keys
        // alphabetically, while the struct keeps the documented field order.
        serde_json::to_string_pretty(&views)? + "\n"
    } else {
        format_table(&views)
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

const HEADER: [&str; 12] = [
    "STATE",
    "LOCAL",
    "REMOTE",
    "PID/COMM",
    "STATE-AGE",
    "IDLE",
    "SEND",
    "RECV",
    "PEER",
    "UNACKED",
    "RETRANS",
    "SUSPECT",
];
/// Ages and counts are right-aligned so their magnitudes line up.
const RIGHT_ALIGNED: [bool; 12] = [
    false, false, false, false, true, true, true, true, true, true, true, false,
];

/// One table row; every cell is escaped ([`escape_control`]): the process name is chosen by
/// whoever runs the process, and the rest comes over the network.
fn row(c: &ConnectionView) -> [String; 12] {
    let owner = match (c.pid, c.comm.as_deref()) {
        (Some(pid), Some(comm)) => format!("{pid}/{comm}"),
        (Some(pid), None) => pid.to_string(),
        (None, Some(comm)) => format!("-/{comm}"),
        (None, None) => "-".to_owned(),
    };
    [
        c.state.clone(),
        c.local.clone(),
        c.remote.clone(),
        owner,
        human_age(c.state_age_seconds),
        human_age(c.idle_seconds),
        human_age(c.since_send_seconds),
        human_age(c.since_recv_seconds),
        human_age(c.since_peer_seconds),
        c.unacked_bytes
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        c.retransmits.to_string(),
        verdict_cell(c),
    ]
    .map(|cell| escape_control(&cell).into_owned())
}

/// The suspect reasons (`-` for none), then the latest keepalive probe's result when the
/// agent probed the socket (`[probe]`): `- probe=peer_alive`, `peer_dead probe=peer_dead`.
fn verdict_cell(c: &ConnectionView) -> String {
    let reasons = if c.suspect.is_empty() {
        "-".to_owned()
    } else {
        c.suspect.join(",")
    };
    match &c.probe {
        Some(probe) => format!("{reasons} probe={}", probe.result),
        None => reasons,
    }
}

/// The `ss`-like table: a header, then one aligned line per connection.
pub(super) fn format_table(views: &[ConnectionView]) -> String {
    let rows: Vec<[String; 12]> = std::iter::once(HEADER.map(str::to_owned))
        .chain(views.iter().map(row))
        .collect();
    let mut widths = [0; 12];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            let sep = if i == 0 { "" } else { "  " };
            // Writing into a String cannot fail.
            let _ = if RIGHT_ALIGNED[i] {
                write!(line, "{sep}{pad}{cell}")
            } else {
                write!(line, "{sep}{cell}{pad}")
            };
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, remote: &str, idle: Option<f64>, suspect: &[&str]) -> ConnectionView {
        ConnectionView {
            cookie: 1,
            state: state.into(),
            local: "10.0.0.1:443".into(),
            remote: remote.into(),
            netns: None,
            pid: Some(812),
            comm: Some("nginx".into()),
            holders: None,
            state_age_seconds: Some(7900.0),
            idle_seconds: idle,
            since_send_seconds: idle,
            since_recv_seconds: None,
            since_peer_seconds: Some(0.05),
            bytes_sent: 0,
            bytes_received: 0,
            unacked_bytes: Some(1448),
            srtt_ms: None,
            send_queue_bytes: None,
            recv_queue_bytes: None,
            retransmits: 12,
            seeded: false,
            state_age_at_least_seconds: None,
            keepalive: None,
            user_timeout_seconds: None,
            orphan: false,
            accept_queue: false,
            cgroup: None,
            container: None,
            enforced: None,
            since_retrans_start_seconds: None,
            gives_up_in_seconds: None,
            suspect: suspect.iter().map(|s| (*s).to_owned()).collect(),
            probe: None,
        }
    }

    /// A probed connection shows the probe's result beside its reasons.
    #[test]
    fn probe_results_follow_the_reasons() {
        let mut alive = view("established", "10.0.0.2:6379", Some(90.0), &[]);
        alive.probe = Some(crate::model::ProbeView {
            sent_at: "2026-12-01T03:00:00.000Z".into(),
            result: "peer_alive".into(),
            answered: true,
            rtt_ms: Some(4.0),
            unanswered: 0,
        });
        assert_eq!(verdict_cell(&alive), "- probe=peer_alive");
        let dead = ConnectionView {
            suspect: vec!["peer_dead".into()],
            probe: alive.probe.clone().map(|p| crate::model::ProbeView {
                result: "peer_dead".into(),
                ..p
            }),
            ..alive
        };
        assert_eq!(verdict_cell(&dead), "peer_dead probe=peer_dead");
        let never = view("established", "10.0.0.2:6379", None, &[]);
        assert_eq!(verdict_cell(&never), "-");
    }

    #[test]
    fn table_is_aligned() {
        let views = [
            view(
                "close_wait",
                "[2001:db8::7]:51234",
                Some(245.0),
                &["peer closed", "idle"],
            ),
            view("established", "10.0.0.2:80", None, &[]),
        ];
        let expected = "\
STATE        LOCAL         REMOTE               PID/COMM   STATE-AGE   IDLE   SEND  RECV  PEER  UNACKED  RETRANS  SUSPECT
close_wait   10.0.0.1:443  [2001:db8::7]:51234  812/nginx      2h11m  4m05s  4m05s     -  50ms     1448       12  peer closed,idle
established  10.0.0.1:443  10.0.0.2:80          812/nginx      2h11m      -      -     -  50ms     1448       12  -
";
        assert_eq!(format_table(&views), expected);
        assert_eq!(format_table(&[]).lines().count(), 1, "header only");
    }

    /// A process can name itself with terminal escapes (`prctl(PR_SET_NAME)`); the table shows
    /// them as text, and a multi-byte name still lines up.
    #[test]
    fn control_characters_in_names_are_escaped() {
        let mut crafted = view("established", "10.0.0.2:80", None, &[]);
        crafted.comm = Some("x\u{1b}[2J\rroot".into());
        let out = format_table(&[crafted]);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("812/x\\x1b[2J\\x0droot"), "{out}");
    }
}
