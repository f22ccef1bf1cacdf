//! The Grafana dashboards in `dashboards/`: their panels, and their `PromQL` with Grafana's
//! template variables replaced by concrete values, so Prometheus itself can run them.

use std::path::Path;

use serde_json::Value;

pub(crate) const FILES: [&str; 2] = ["tcp-liveness-overview.json", "tcp-liveness-agent.json"];

/// `(file, dashboard)` for every dashboard.
pub(crate) fn load() -> Vec<(&'static str, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    FILES
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(dir.join(file))
                .unwrap_or_else(|e| panic!("read dashboards/{file}: {e}"));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("dashboards/{file} is not JSON: {e}"));
            (*file, json)
        })
        .collect()
}

/// Every panel, rows' collapsed children included.
pub(crate) fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// One query of one panel: `(panel title, PromQL as written)`.
pub(crate) fn queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            targets.into_iter().map(move |t| {
                let expr = t["expr"].as_str().unwrap_or_default().to_owned();
                (title.clone(), expr)
            })
        })
        .collect()
}

/// `(selector, label)` of each `label_values(selector, label)` query variable.
pub(crate) fn label_values_variables(dashboard: &Value) -> Vec<(String, String)> {
    let vars = dashboard["templating"]["list"].as_array().cloned();
    vars.unwrap_or_default()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let definition = v["definition"].as_str().unwrap_or_default();
            let args = definition
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!("variable {}: not label_values(): {definition}", v["name"])
                });
            let (selector, label) = args
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            (selector.trim().to_owned(), label.trim().to_owned())
        })
        .collect()
}

/// Replaces `$name` and `${name}` for each `(name, value)`. Longest names first, so `$__range`
/// cannot eat the start of a longer variable.
pub(crate) fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}
