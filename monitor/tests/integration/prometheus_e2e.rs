//! The Prometheus and Grafana side of the agent: the example rules pass promtool, the dashboards
//! are complete, and, end to end with a real Prometheus scraping the real agent, every dashboard
//! query and every rule runs and the `CLOSE_WAIT` and half-open alerts fire.
//! The end-to-end test runs as root (`cargo xtask test`); under CI=true a missing privilege or a
//! missing promtool fails instead of skipping.

use std::{collections::BTreeSet, time::Duration};

use harness::{
    netns::NetPair,
    peer::Peer,
    privilege::Need,
    wait::{wait_for, wait_for_optional},
};
use serde_json::Value;

use crate::common::scenario;
use crate::prom;
use crate::prom::{Prometheus, dashboards, deploy_file, promtool};

/// The `CLOSE_WAIT` pile's server port, and the vanished peer's.
const PILE_PORT: &str = "7231";
const GONE_PORT: &str = "7232";

fn assert_ok(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_rules_and_config_pass_promtool() {
    if !prom::promtool_available("example_rules_and_config_pass_promtool") {
        return;
    }
    let path = |name| deploy_file(name).display().to_string();
    let check = promtool(&["check", "rules", &path("rules.yml")], "");
    assert_ok("promtool check rules", &check);
    // Every alert's firing and quiet cases, annotations included.
    let test = promtool(&["test", "rules", &path("rules_test.yml")], "");
    assert_ok("promtool test rules", &test);
    // The example scrape config, with the rule file it names.
    let config = promtool(&["check", "config", &path("prometheus.yml")], "");
    assert_ok("promtool check config", &config);
}

/// Metric names the agent defines (the contract): its catalogue of families.
fn agent_metric_names() -> BTreeSet<String> {
    let families = monitor::model::metric_families::FAMILIES;
    families.iter().map(|f| f.name.to_owned()).collect()
}

/// The `tcp_liveness_*` names a text uses.
fn metric_names_in(text: &str) -> Vec<String> {
    let uses = text.match_indices("tcp_liveness_");
    uses.map(|(i, _)| metric_name_at(&text[i..])).collect()
}

/// The metric name `text` starts with, without a histogram's series suffix.
fn metric_name_at(text: &str) -> String {
    let name: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name);
    base.to_owned()
}

/// Structure a Grafana import relies on, and what the dashboards promise: a description on every
/// panel, the `${datasource}` variable everywhere, `$job`/`$instance` in every query, and only
/// metric names the agent defines.
fn check_dashboard(file: &str, dashboard: &Value, known: &BTreeSet<String>) {
    assert!(dashboard["schemaVersion"].as_u64() >= Some(39), "{file}");
    assert!(
        dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "{file}"
    );
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    let ds = var("datasource").unwrap_or_else(|| panic!("{file}: no datasource variable"));
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    for name in ["job", "instance"] {
        assert!(var(name).is_some(), "{file}: no {name} variable");
    }
    let mut ids = BTreeSet::new();
    for panel in dashboards::panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64()),
            "{file}: duplicate id at {title}"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 40),
            "{file}: panel {title:?} needs a description saying what to do"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{file}: {title} has no query");
        for source in std::iter::once(panel).chain(targets) {
            assert_eq!(
                source["datasource"]["uid"], "${datasource}",
                "{file}: {title}"
            );
        }
    }
    for (title, expr) in dashboards::queries(dashboard) {
        assert!(
            expr.contains("$job") && expr.contains("$instance"),
            "{file}: {title}: {expr}"
        );
        for name in metric_names_in(&expr) {
            assert!(
                known.contains(&name),
                "{file}: {title}: unknown metric {name}"
            );
        }
    }
}

#[test]
fn dashboards_are_complete_and_use_only_agent_metrics() {
    let known = agent_metric_names();
    assert!(
        known.len() > 10,
        "metric names found in the code: {known:?}"
    );
    for (file, dashboard) in dashboards::load() {
        check_dashboard(file, &dashboard, &known);
    }
    let rules = std::fs::read_to_string(deploy_file("rules.yml")).expect("read rules.yml");
    for name in metric_names_in(&rules) {
        assert!(known.contains(&name), "rules.yml: unknown metric {name}");
    }
}

/// rules.yml as the end-to-end test loads it: every `for:` cut to 5s and the pile threshold
/// lowered to 2, so three leaked sockets fire within seconds. The expressions are otherwise the
/// shipped ones.
fn fast_rules() -> String {
    let text = std::fs::read_to_string(deploy_file("rules.yml")).expect("read rules.yml");
    let pile = r#"tcp_liveness_suspect_connections_by_owner{reason="close_wait_stuck"} > 10"#;
    assert_eq!(
        text.matches(pile).count(),
        1,
        "rules.yml: the pile expression changed"
    );
    let lowered = text.replace(pile, &pile.replace("> 10", "> 2"));
    let lines = lowered.lines().map(|line| match line.split_once("for: ") {
        Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 5s"),
        _ => line.to_owned(),
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// The two faults, made for real in the namespaces; the peers live as long as the result.
fn make_faults(net: &NetPair) -> Vec<Peer> {
    let (server, ip) = (&net.server, net.server_ip.as_str());
    // A CLOSE_WAIT pile: the server never closes, three clients do.
    let mut peers =
        vec![Peer::start(server, &["server", ip, PILE_PORT, "no-close"]).expect("peer")];
    for _ in 0..3 {
        peers.push(Peer::start(&net.client, &["client", ip, PILE_PORT, "close"]).expect("peer"));
    }
    // A vanished peer: a client keeps sending, then the server stops answering. Beside it a
    // keepalive client (1 s timers, 3 probes) gives up with ETIMEDOUT a few seconds later, so the
    // socket-errors panel, whose series appear with the first error, has data.
    peers.push(Peer::start(server, &["server", ip, GONE_PORT, "echo"]).expect("peer"));
    peers.push(Peer::start(&net.client, &["client", ip, GONE_PORT, "send"]).expect("peer"));
    peers.push(
        Peer::start(&net.client, &["client", ip, GONE_PORT, "keepalive", "3"]).expect("peer"),
    );
    std::thread::sleep(Duration::from_secs(1));
    net.server.drop_input().expect("iptables DROP");
    peers
}

/// Waits for a firing alert named `name` whose labels pass `matches`.
fn wait_for_firing(prom: &Prometheus, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("{name} firing"), Duration::from_mins(1), || {
        prom.alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == name && a["state"] == "firing" && matches(&a["labels"])
        })
    })
}

/// Every panel query parses and returns data; every variable finds values.
fn check_dashboard_queries(prom: &Prometheus, vars: &[(&str, &str)]) {
    for (file, dashboard) in dashboards::load() {
        for (title, expr) in dashboards::queries(&dashboard) {
            let q = dashboards::substitute(&expr, vars);
            assert!(!q.contains('$'), "{file}: {title}: unknown variable in {q}");
            // Retried for a while: a series that appeared moments ago (ETIMEDOUT) needs a second
            // sample before rate() has a value.
            let data = wait_for_optional(Duration::from_secs(15), || {
                let result = prom.query(&q);
                let result = result.unwrap_or_else(|e| panic!("{file}: {title}: {e}\n{q}"));
                (!result.is_empty()).then_some(())
            });
            assert!(data.is_some(), "{file}: panel {title:?} has no data: {q}");
        }
        for (selector, label) in dashboards::label_values_variables(&dashboard) {
            let q = dashboards::substitute(&selector, vars);
            let series = prom
                .query(&q)
                .unwrap_or_else(|e| panic!("{file}: {q}: {e}"));
            assert!(
                series.iter().any(|s| s["metric"][&label].is_string()),
                "{file}: variable label_values({selector}, {label}) finds nothing"
            );
        }
    }
}

/// Every shipped rule loaded, evaluates without error, runs as a query, and carries what the
/// on-call needs: a severity, a summary, a description and a runbook.
fn check_loaded_rules(prom: &Prometheus) {
    let shipped = std::fs::read_to_string(deploy_file("rules.yml")).expect("read rules.yml");
    let rules = prom.rules();
    let expected = shipped.matches("- alert: ").count();
    assert_eq!(rules.len(), expected, "every rule loaded");
    for rule in &rules {
        let name = &rule["name"];
        assert_eq!(rule["health"], "ok", "{name}: {rule}");
        assert!(
            rule["labels"]["severity"].is_string(),
            "{name}: no severity"
        );
        for key in ["summary", "description", "runbook_url"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(!text.is_empty(), "{name}: no {key}");
        }
        let query = rule["query"].as_str().expect("rule query");
        prom.query(query)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{query}"));
    }
}

#[test]
fn prometheus_runs_every_dashboard_query_and_fires_the_alerts() {
    let Some(sc) = scenario("prometheus_e2e", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "1s", "--unresponsive-after", "2s"])
        .start()
        .expect("agent");
    let target = format!("127.0.0.1:{}", agent.port());
    let prom = Prometheus::start(&target, &fast_rules());
    let _peers = make_faults(net);

    let up = format!("up{{job=\"tcp-liveness\", instance=\"{target}\"}} == 1");
    wait_for(
        "Prometheus to scrape the agent",
        Duration::from_secs(30),
        || (!prom.query(&up).ok()?.is_empty()).then_some(()),
    );
    // The exposition is valid and lint-clean (promtool exits non-zero on lint problems too).
    let lint = promtool(&["check", "metrics"], &agent.get("/metrics"));
    assert_ok("promtool check metrics on /metrics", &lint);

    let pile = wait_for_firing(&prom, "TcpLivenessCloseWaitPileUp", |l| {
        l["owner"] == "python3" && l["local_port"] == PILE_PORT
    });
    let summary = pile["annotations"]["summary"].as_str().unwrap_or_default();
    let expected = format!("3 CLOSE_WAIT sockets of python3 on port {PILE_PORT}");
    assert!(summary.starts_with(&expected), "{pile}");
    let half_open = wait_for_firing(&prom, "TcpLivenessHalfOpenPeerUnresponsive", |l| {
        l["instance"] == target.as_str()
    });
    assert_eq!(half_open["labels"]["severity"], "warning", "{half_open}");
    // The half-open alerts name the process (suspects by owner), not only the host.
    assert_eq!(half_open["labels"]["owner"], "python3", "{half_open}");

    let vars = [
        ("job", "tcp-liveness"),
        ("instance", target.as_str()),
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "5m"),
    ];
    check_dashboard_queries(&prom, &vars);
    check_loaded_rules(&prom);
}
