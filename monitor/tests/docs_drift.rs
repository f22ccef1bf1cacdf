//! The documentation against the code it describes, so neither can drift: every alert rule has
//! its runbook section in `docs/alerts.md` (and points at it), every metric family the agent
//! can export is in `docs/metrics.md`, and the `run` synopsis in `docs/configuration.md` lists
//! exactly the long flags `tcp-liveness run --help` prints, and every link between the README
//! and `docs/` leads to a file and heading that exist, and every kernel test file has its row in
//! `docs/testing.md`. Plain tests: no root, no kernel.

use std::{collections::BTreeSet, path::PathBuf, process::Command, sync::Arc};

use monitor::{
    export::{SnapshotStore, metrics::Metrics},
    model::metric_families::FAMILIES,
};

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// `(alert name, runbook_url)` of every rule in `deploy/prometheus/rules.yml`.
fn alert_rules() -> Vec<(String, Option<String>)> {
    let rules: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/rules.yml")).expect("rules.yml");
    let groups = rules["groups"].as_sequence().expect("groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules"))
        .filter_map(|rule| {
            let name = rule["alert"].as_str()?.to_owned();
            let runbook = rule["annotations"]["runbook_url"]
                .as_str()
                .map(str::to_owned);
            Some((name, runbook))
        })
        .collect()
}

/// The Markdown headings of a text, as GitHub turns them into anchors (lowercase, spaces to
/// hyphens, punctuation dropped).
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| {
            let text = heading.trim_start_matches('#').trim().to_lowercase();
            text.chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_rule_has_its_runbook_section() {
    let rules = alert_rules();
    assert!(rules.len() >= 17, "rules.yml: {} alerts", rules.len());
    let sections = anchors(&repo_file("docs/alerts.md"));
    for (name, runbook) in &rules {
        let anchor = name.to_lowercase();
        assert!(
            sections.contains(&anchor),
            "docs/alerts.md has no section `### {name}`"
        );
        assert_eq!(
            runbook.as_deref(),
            Some(format!("docs/alerts.md#{anchor}").as_str()),
            "rules.yml: {name}: runbook_url"
        );
    }
}

/// Whether `name` is written as a metric in `text`: in backticks, alone or with its labels.
fn documents_metric(text: &str, name: &str) -> bool {
    [format!("`{name}`"), format!("`{name}{{")]
        .iter()
        .any(|form| text.contains(form.as_str()))
}

#[test]
fn every_metric_family_is_in_docs_metrics() {
    // What a scrape of a fresh agent answers, and the catalogue the agent's unit tests hold
    // against every family it can register (the probe, remediation and Alertmanager counters
    // exist only with their feature configured).
    let rendered = Metrics::new(Arc::new(SnapshotStore::new()), "0").render();
    let scraped = rendered
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next());
    let mut families: BTreeSet<&str> = scraped.filter(|n| n.starts_with("tcp_liveness_")).collect();
    assert!(families.len() > 20, "families rendered: {families:?}");
    families.extend(FAMILIES.iter().map(|f| f.name));
    let docs = repo_file("docs/metrics.md");
    let missing: Vec<_> = families
        .iter()
        .filter(|name| !documents_metric(&docs, name))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/metrics.md does not list {missing:?}"
    );
}

/// The long flags in a text: `--name` tokens (letters, digits, `-`, `.`), `--help` left out.
fn long_flags(text: &str) -> BTreeSet<String> {
    text.match_indices("--")
        .filter(|(i, _)| *i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
        .map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.').to_owned()
        })
        .filter(|name| !name.is_empty() && name != "help")
        .collect()
}

/// The fenced block of `docs/configuration.md` that follows the `## Synopsis` heading.
fn synopsis() -> String {
    let docs = repo_file("docs/configuration.md");
    let after = docs
        .split_once("## Synopsis")
        .expect("docs/configuration.md: no `## Synopsis` section")
        .1;
    let block = after.split("```").nth(1).expect("a fenced block");
    block.to_owned()
}

#[test]
fn the_run_synopsis_lists_every_flag_of_run_help() {
    let help = Command::new(env!("CARGO_BIN_EXE_tcp-liveness"))
        .args(["run", "--help"])
        .output()
        .expect("tcp-liveness run --help");
    assert!(help.status.success(), "run --help: {help:?}");
    let help = String::from_utf8(help.stdout).expect("UTF-8 help");
    // Only the option lines: the descriptions mention other commands' flags.
    let defined: String = help
        .lines()
        .filter(|line| line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let flags = long_flags(&defined);
    assert!(flags.len() > 20, "flags in run --help: {flags:?}");
    let synopsis = synopsis();
    let run = synopsis
        .split("tcp-liveness ")
        .find(|command| command.starts_with("run"))
        .expect("a `tcp-liveness run` line");
    let documented = long_flags(run);
    let missing: Vec<_> = flags.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&flags).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/configuration.md synopsis: missing {missing:?}, not a flag of run {stale:?}"
    );
}

/// The target of every Markdown link `[text](target)` in a text, web links left out.
fn relative_links(markdown: &str) -> Vec<String> {
    markdown
        .match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &markdown[i + 2..];
            let target = &rest[..rest.find(')')?];
            (!target.starts_with("http")).then(|| target.to_owned())
        })
        .collect()
}

#[test]
fn links_between_readme_and_docs_resolve() {
    let docs_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut pages: Vec<String> = std::fs::read_dir(&docs_dir)
        .expect("docs/")
        .map(|entry| PathBuf::from(entry.expect("docs/ entry").file_name()))
        .filter(|name| name.extension().is_some_and(|ext| ext == "md"))
        .filter_map(|name| Some(format!("docs/{}", name.to_str()?)))
        .collect();
    pages.push("README.md".to_owned());
    let mut broken = Vec::new();
    for page in &pages {
        let dir = PathBuf::from(page)
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        for link in relative_links(&repo_file(page)) {
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                PathBuf::from(page)
            } else {
                dir.join(path)
            };
            let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(&target);
            let resolves = if anchor.is_empty() {
                full.exists()
            } else {
                std::fs::read_to_string(&full).is_ok_and(|text| anchors(&text).contains(anchor))
            };
            if !resolves {
                broken.push(format!("{page}: {link}"));
            }
        }
    }
    assert!(broken.is_empty(), "links that lead nowhere: {broken:#?}");
}

#[test]
fn every_integration_test_file_is_in_docs_testing() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration");
    let docs = repo_file("docs/testing.md");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/integration")
        .map(|entry| PathBuf::from(entry.expect("tests/integration entry").file_name()))
        .filter(|name| name.extension().is_some_and(|ext| ext == "rs"))
        .filter_map(|name| Some(name.to_str()?.to_owned()))
        // The binary's root and the shared set-up, not tests.
        .filter(|name| name != "main.rs" && name != "common.rs")
        .collect();
    files.sort();
    assert!(files.len() > 20, "test files: {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|file| !docs.contains(&format!("| `{file}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/testing.md has no row for {missing:?}"
    );
}
