//! `[forensics] stacks`: a C program (`stacks/leaky_report.c`, built here with frame pointers
//! and debug information, and once more stripped) leaks `CLOSE_WAIT` connections opened by
//! `connect()` in `open_report_connection` and by `accept()` in `serve_leaky_client`; the
//! suspects' stacks in `/connections` name those functions, with file and line, and a stripped
//! build still shows each frame's address and module. Without the option nothing is recorded.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use harness::{
    agent::{Agent, SCANS_TO_SHOW},
    command::ChildGuard,
    netns::Netns,
    privilege::Need,
    scenario::Scenario,
    wait::{wait_for, wait_for_optional},
};
use serde_json::Value;
use tempfile::TempDir;

use crate::{
    common::{have, output_text, scenario},
    verdicts::has_reason,
};

const SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/stacks/leaky_report.c"
);
/// `--close-wait-after`.
const THRESHOLD: Duration = Duration::from_secs(1);
/// Connections leaked on each side.
const COUNT: usize = 3;
/// The ports the program connects to (`PORT_A`) and accepts on (`PORT_B`), on the loopback of
/// the test's own namespace.
const PORT_A: u16 = 7101;
const PORT_B: u16 = 7102;

/// The scenario of `test` (None: skipped), a temporary directory for the builds, and the
/// agent with `--close-wait-after 1s` and `flags`.
fn set_up(test: &str, flags: &[&str]) -> Option<(Scenario, TempDir, Agent)> {
    let sc = scenario(test, Need::RootAndKernelBtf)?;
    if !have("cc", "gcc") {
        return None;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let agent = sc
        .launch()
        .args(&[&["--close-wait-after", "1s"], flags].concat())
        .start()
        .expect("agent");
    Some((sc, dir, agent))
}

/// Builds the program into `dir` (`cc -O0 -g -fno-omit-frame-pointer`, and `-s` when
/// `stripped`); returns its path.
fn build(dir: &Path, stripped: bool) -> PathBuf {
    let binary = dir.join(if stripped { "leaky_stripped" } else { "leaky" });
    let mut cc = Command::new("cc");
    cc.args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&binary)
        .arg(SOURCE);
    if stripped {
        cc.arg("-s");
    }
    let out = cc.output().expect("run cc");
    assert!(out.status.success(), "cc: {}", output_text(&out));
    binary
}

/// The source line holding `marker` (a comment on the `connect()` and `accept()` calls).
fn line_of(marker: &str) -> u64 {
    let source = std::fs::read_to_string(SOURCE).expect("read the C source");
    let at = source
        .lines()
        .position(|line| line.contains(marker))
        .expect("marker in the source");
    u64::try_from(at + 1).expect("a line number")
}

/// Runs `binary PORT_A PORT_B COUNT` in `ns`; killed when the guard drops.
fn run_leaky(ns: &Netns, binary: &Path) -> ChildGuard {
    let (a, b, n) = (PORT_A.to_string(), PORT_B.to_string(), COUNT.to_string());
    let child = ns
        .command(binary.to_str().expect("a UTF-8 path"))
        .args([&a, &b, &n])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the leaky program");
    ChildGuard::new(child)
}

/// The `CLOSE_WAIT` suspects of `ns` once all `2 × COUNT` are flagged and `ready` holds for
/// each. The deadline is the later of a verdict's and the next pass over the held sockets
/// (which joins an accepted descriptor's stack to its socket and names the holders:
/// [`Agent::held_pass_and`]), plus one scan (stacks are symbolized after the scan that raises
/// the verdict).
fn suspects(agent: &Agent, ns: u64, ready: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = agent.held_pass_and(THRESHOLD) + agent.scans(1);
    let mut last = Vec::new();
    wait_for_optional(deadline, || {
        last = agent
            .connections_in(ns)
            .into_iter()
            .filter(|c| has_reason(c, "close_wait_stuck"))
            .collect();
        (last.len() == 2 * COUNT && last.iter().all(&ready)).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!("timed out after {deadline:?} waiting for every CLOSE_WAIT suspect, last seen: {last:#?}")
    })
}

fn frames(c: &Value) -> &[Value] {
    c["stack"]["frames"].as_array().map_or(&[], Vec::as_slice)
}

/// The functions of `c`'s frames, innermost first (null for unknown ones).
fn functions(c: &Value) -> Vec<&str> {
    frames(c)
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?"))
        .collect()
}

/// Connect side: `open_report_connection` (at the `connect()` line) ← `handle_request` ←
/// `main`; accept side: `serve_leaky_client` (at the `accept()` line) ← `main`; each frame of
/// the program in its module. Stripped: the program's frames keep address and module.
#[test]
fn suspects_stacks_name_the_functions_that_opened_them() {
    let Some((sc, dir, agent)) = set_up("stacks", &["--stacks"]) else {
        return;
    };
    let (debug, stripped) = (build(dir.path(), false), build(dir.path(), true));
    let net = sc.net();
    let _debug = run_leaky(&net.server, &debug);
    let _stripped = run_leaky(&net.client, &stripped);

    let named = |c: &Value| functions(c).iter().any(|f| f.ends_with("main"));
    for c in suspects(&agent, net.server.inode(), named) {
        let functions = functions(&c);
        let (expected, marker) = if c["remote"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{PORT_A}"))
        {
            (
                &["open_report_connection", "handle_request", "main"][..],
                "CONNECT_LINE",
            )
        } else {
            (&["serve_leaky_client", "main"][..], "ACCEPT_LINE")
        };
        let at = functions
            .iter()
            .position(|f| *f == expected[0])
            .unwrap_or_else(|| panic!("{} not in the stack: {c}", expected[0]));
        assert_eq!(&functions[at..at + expected.len()], expected, "{c}");
        let opener = &frames(&c)[at];
        assert!(
            opener["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("leaky_report.c")),
            "{c}"
        );
        assert_eq!(opener["line"].as_u64(), Some(line_of(marker)), "{c}");
        assert_eq!(opener["module"].as_str(), debug.to_str(), "{c}");
    }

    // Each leak group counts the paths that opened its connections.
    let connect_path = "open_report_connection (leaky_report.c:";
    let paths = wait_for(
        "the groups' opening paths",
        agent.scans(SCANS_TO_SHOW),
        || {
            let alerts: Value =
                serde_json::from_str(&agent.get("/alerts")).expect("/alerts is JSON");
            let paths: Vec<Value> = alerts["alerts"]
                .as_array()
                .expect("alerts")
                .iter()
                .filter(|g| g["owner"] == "leaky")
                .flat_map(|g| g["opening_paths"].as_array().cloned().unwrap_or_default())
                .collect();
            (paths.len() == 2).then_some(paths)
        },
    );
    let connect = paths
        .iter()
        .find(|p| p["path"].as_str().unwrap().starts_with(connect_path))
        .unwrap_or_else(|| panic!("no connect path: {paths:?}"));
    assert!(
        connect["path"]
            .as_str()
            .unwrap()
            .ends_with("← handle_request ← main"),
        "{connect}"
    );
    assert_eq!(connect["count"].as_u64(), Some(COUNT as u64), "{connect}");

    let in_binary = |c: &Value| {
        frames(c)
            .iter()
            .filter(|f| f["module"].as_str() == stripped.to_str())
            .count()
    };
    for c in suspects(&agent, net.client.inode(), |c| in_binary(c) >= 2) {
        for f in frames(&c)
            .iter()
            .filter(|f| f["module"].as_str() == stripped.to_str())
        {
            assert!(f["address"].as_u64().is_some_and(|a| a != 0), "{c}");
            assert!(
                f["function"].is_null(),
                "a stripped program has no names: {c}"
            );
        }
    }
}

/// Off by default: no stack program attached, and no suspect has a `stack`.
#[test]
fn without_the_option_no_stack_is_recorded() {
    let Some((sc, dir, agent)) = set_up("stacks_off", &[]) else {
        return;
    };
    let debug = build(dir.path(), false);
    let net = sc.net();
    let _leaky = run_leaky(&net.server, &debug);
    let flagged = suspects(&agent, net.server.inode(), |_| true);
    // A scan and a pass over the held sockets more (which joins an accepted descriptor's
    // stack): a stack would be there by now.
    agent.wait_held_passes(2);
    for c in agent.connections_in(net.server.inode()) {
        assert!(c.get("stack").is_none(), "a stack without the option: {c}");
    }
    assert_eq!(flagged.len(), 2 * COUNT);
    let hook = "tcp_liveness_hook_attached{hook=\"stack_at_connect\"}";
    assert_eq!(agent.metric(hook), None, "no stack program attached");
}
