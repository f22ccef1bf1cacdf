//! What one unprivileged process can make the agent output: its series and alert groups stay
//! bounded however many ports it leaks on, and its name, whatever bytes it chose, reaches the
//! operator's terminal escaped and never empty. Real sockets in test namespaces, the real agent
//! and CLI. Run as root (`cargo xtask test`); under CI=true a missing privilege fails.

use std::{process::Command, time::Duration};

use harness::{metrics, peer::Peer, privilege::Need, wait::wait_for};
use serde_json::Value;

use crate::am::Alertmanager;
use crate::common::{AGENT, scenario};

/// The issue's case: 3,000 service ports, each with one `CLOSE_WAIT` socket of one process.
/// (3,000 is fast here: one Python process, a few seconds including the agent's start.)
const PORTS: u16 = 3000;
const FIRST_PORT: u16 = 30_000;
/// `top_ports` and `max_alert_groups` at their defaults.
const TOP_PORTS: usize = 10;
const MAX_ALERT_GROUPS: f64 = 200.0;

/// One process holding `CLOSE_WAIT` sockets on 3,000 listening ports makes at most
/// `top_ports` plus one series (its largest ports and `other`), as many alert groups in `/alerts`
/// and in Alertmanager, and the folding is visible in the metrics.
#[test]
fn three_thousand_ports_make_at_most_the_cap_of_series_and_alerts() {
    let Some(sc) = scenario("cardinality", Need::RootAndKernelBtf) else {
        return;
    };
    let am = Alertmanager::start();
    let net = sc.net();
    let (first, count) = (FIRST_PORT.to_string(), PORTS.to_string());
    let _server = Peer::start_named(
        &net.server,
        &["server", &net.server_ip, &first, "many-ports", &count],
        b"portleak",
    )
    .expect("server on 3000 ports");
    let _client = Peer::start(
        &net.client,
        &["client", &net.server_ip, &first, "close-many", &count],
    )
    .expect("client closing 3000 connections");
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "1s", "--alertmanager-url", &am.base])
        .start()
        .expect("agent");

    // Every socket seen and judged: 2,990 ports folded, 3,000 suspects.
    let text = wait_for(
        "3000 CLOSE_WAIT sockets judged",
        Duration::from_mins(1),
        || {
            let text = agent.get("/metrics");
            let folded = metrics::value(&text, "tcp_liveness_close_wait_folded_ports");
            let stuck = metrics::value(
                &text,
                r#"tcp_liveness_suspect_connections{reason="close_wait_stuck"}"#,
            );
            (folded == Some(2990.0) && stuck.is_some_and(|n| n >= 3000.0)).then_some(text)
        },
    );
    let series: Vec<(&str, f64)> = metrics::samples(&text)
        .filter(|(s, _)| {
            s.starts_with("tcp_liveness_close_wait_connections{") && s.contains(r#""portleak""#)
        })
        .collect();
    assert_eq!(series.len(), TOP_PORTS + 1, "{series:?}");
    let other = series
        .iter()
        .find(|(s, _)| s.contains(r#"local_port="other""#));
    assert_eq!(other.map(|(_, n)| *n), Some(2990.0), "{series:?}");
    let limit = |setting: &str| {
        metrics::value(
            &text,
            &format!(r#"tcp_liveness_cardinality_limit{{setting="{setting}"}}"#),
        )
    };
    assert_eq!(limit("top_ports"), Some(10.0));
    assert_eq!(limit("max_alert_groups"), Some(MAX_ALERT_GROUPS));
    let groups = metrics::value(&text, "tcp_liveness_alert_groups").expect("alert groups");
    assert!(groups <= MAX_ALERT_GROUPS, "{groups}");
    assert!(metrics::value(&text, "tcp_liveness_alert_groups_folded").is_some_and(|n| n >= 2990.0));

    // /alerts: the ten largest ports and one group holding the rest, which says so.
    let view: Value = serde_json::from_str(&agent.get("/alerts")).expect("/alerts is JSON");
    let ours: Vec<&Value> = view["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|g| g["owner"] == "portleak")
        .collect();
    assert_eq!(ours.len(), TOP_PORTS + 1);
    let folded = ours
        .iter()
        .find(|g| g["local_port"] == "other")
        .expect("the folded group");
    assert_eq!(folded["count"], 2990);
    assert_eq!(folded["folded_groups"], 2990);

    // Alertmanager got the same bounded set, the folded one with its summary.
    let pushed = wait_for(
        "the folded alert in Alertmanager",
        Duration::from_secs(30),
        || {
            let alerts: Vec<Value> = am
                .alerts()
                .into_iter()
                .filter(|a| a["labels"]["owner"] == "portleak")
                .collect();
            alerts
                .iter()
                .any(|a| a["labels"]["local_port"] == "other")
                .then_some(alerts)
        },
    );
    assert!(pushed.len() <= TOP_PORTS + 1, "{}", pushed.len());
    let summary = pushed
        .iter()
        .find(|a| a["labels"]["local_port"] == "other")
        .and_then(|a| a["annotations"]["summary"].as_str())
        .unwrap_or_default();
    assert!(
        summary.starts_with("2990 connections of portleak on 2990 more ports (past top_ports)"),
        "{summary}"
    );
}

/// A process named with ESC, CR and bytes that are not UTF-8, holding a socket from before the
/// agent started (so its name is seeded from `/proc`): `/connections` carries the lossy name,
/// never an empty one, and `tcp-liveness connections` and `check` print no raw control character.
#[test]
fn crafted_process_names_reach_the_terminal_escaped() {
    let Some(sc) = scenario("crafted_names", Need::RootAndKernelBtf) else {
        return;
    };
    // ESC [ 2 J clears the screen; CR rewinds the line; 0xff 0xfe are not UTF-8. 15 bytes.
    let crafted = b"\x1b[2J\rok\xff\xfeevil";
    let lossy = "\u{1b}[2J\rok\u{fffd}\u{fffd}evil";
    let net = sc.net();
    let _server = Peer::start_named(
        &net.server,
        &["server", &net.server_ip, "7252", "no-close"],
        crafted,
    )
    .expect("server");
    let _client =
        Peer::start(&net.client, &["client", &net.server_ip, "7252", "close"]).expect("client");
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "1s"])
        .start()
        .expect("agent");

    let ours = |c: &Value| c["local"] == format!("{}:7252", net.server_ip);
    let conns = wait_for(
        "the crafted server's sockets",
        Duration::from_secs(30),
        || {
            let conns: Vec<Value> = agent.connections().into_iter().filter(ours).collect();
            conns
                .iter()
                .any(|c| {
                    c["state"] == "close_wait" && !c["suspect"].as_array().is_none_or(Vec::is_empty)
                })
                .then_some(conns)
        },
    );
    for c in &conns {
        assert_eq!(c["comm"], lossy, "lossy, never empty: {c}");
    }
    assert!(
        conns
            .iter()
            .any(|c| c["state"] == "listen" && c["seeded"] == true),
        "the listener predates the agent: {conns:?}"
    );

    for command in ["connections", "check"] {
        let out = Command::new(AGENT)
            .args([command, "--agent", agent.url()])
            .output()
            .expect("run the CLI");
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
        let raw: Vec<char> = stdout
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(raw.is_empty(), "{command} printed {raw:?}:\n{stdout}");
        assert!(
            stdout.contains("\\x1b[2J\\x0dok\u{fffd}\u{fffd}evil"),
            "{command} shows the name escaped:\n{stdout}"
        );
    }
}
