//! The CLI an operator uses during an incident, against a real agent and real sockets:
//! `connections --suspect` lists only the flagged connection, with the kernel's cookie and why it
//! is flagged, in lines that fit 120 columns; the filters select by port; and an agent whose log
//! reader went away keeps running.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    process::{Command, Output},
    sync::mpsc,
    time::Duration,
};

use harness::{
    agent::Agent, netns::Netns, peer::Peer, privilege::Need, scenario::SERVICE_PORT, ss,
    wait::wait_for,
};

use crate::{
    common::{AGENT, SCANS_TO_SHOW, agent_only, scenario},
    verdicts::{owned, wait_for_held_verdict},
};

/// The leak's threshold: short so the test runs in seconds, long enough that the socket is
/// seen young first.
const CLOSE_WAIT_AFTER: Duration = Duration::from_secs(2);
/// The healthy idle connection's service port (the leak is on [`SERVICE_PORT`]).
const IDLE_PORT: u16 = 7001;

/// `tcp-liveness connections ARGS --agent URL`; its stdout, after checking it succeeded.
fn connections(agent: &Agent, args: &[&str]) -> String {
    let out: Output = Command::new(AGENT)
        .arg("connections")
        .args(args)
        .args(["--agent", agent.url()])
        .output()
        .expect("run tcp-liveness connections");
    assert!(
        out.status.success(),
        "connections {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 table")
}

/// The lines of a table after its header.
fn rows(table: &str) -> Vec<&str> {
    table.lines().skip(1).collect()
}

fn assert_fits(table: &str) {
    for line in table.lines() {
        assert!(
            line.chars().count() <= 120,
            "{line:?} is wider than 120 columns"
        );
    }
}

/// The cookie `ss -tie` prints (`sk:`, hex) for the socket of `ns` with this local port and state.
fn ss_cookie(ns: &Netns, local_port: u16, state: &str) -> u64 {
    let sockets = ss::sockets(ns).expect("ss in the namespace");
    let socket = sockets
        .iter()
        .find(|s| s.state == state && s.local.ends_with(&format!(":{local_port}")))
        .unwrap_or_else(|| panic!("no {state} socket on port {local_port} in {sockets:?}"));
    socket.cookie.expect("ss -e prints sk:")
}

#[test]
fn suspect_view_lists_only_the_leak_with_its_cookie_and_why() {
    let Some(sc) = scenario("cli_incident", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    // Keepalive off and idle for far less than the default idle_after: healthy.
    let _idle_server = Peer::start(
        &net.server,
        &["server", &net.server_ip, &IDLE_PORT.to_string(), "echo"],
    )
    .expect("idle server");
    let leaking_server = sc.server(&["no-close"]);
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "2s"])
        .start()
        .expect("agent");
    let _idle_client = Peer::start(
        &net.client,
        &["client", &net.server_ip, &IDLE_PORT.to_string(), "idle"],
    )
    .expect("idle client");
    let _closing_client = sc.client(&["close"]);
    let (server_ns, client_ns) = (net.server.inode(), net.client.inode());
    let clock = ("state_age_seconds", CLOSE_WAIT_AFTER);
    // An accepted socket: the rows below name its owner, which a pass over the held sockets
    // names.
    wait_for_held_verdict(&agent, server_ns, "close_wait_stuck", clock, owned);
    let idle_local = format!("{}:{IDLE_PORT}", net.server_ip);
    wait_for("the idle connection", agent.scans(SCANS_TO_SHOW), || {
        agent
            .connections_in(server_ns)
            .into_iter()
            .find(|c| c["state"] == "established" && c["local"] == idle_local.as_str())
    });

    let server_ns_arg = server_ns.to_string();
    let suspects = connections(&agent, &["--suspect", "--netns", &server_ns_arg]);
    assert_fits(&suspects);
    let header = suspects.lines().next().expect("a header");
    assert!(
        header.starts_with("REASON") && header.contains("COOKIE"),
        "{suspects}"
    );
    let listed: Vec<&str> = rows(&suspects)
        .into_iter()
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(listed.len(), 1, "only the leak:\n{suspects}");
    let leak = listed[0];
    assert!(leak.starts_with("close_wait_stuck"), "{suspects}");
    assert!(
        leak.contains(&format!("{}/python3", leaking_server.pid())),
        "{suspects}"
    );
    assert!(
        leak.contains(&format!("{}:{SERVICE_PORT}", net.server_ip)),
        "{suspects}"
    );
    assert!(leak.contains(&server_ns_arg), "the namespace: {suspects}");
    let cookie = ss_cookie(&net.server, SERVICE_PORT, "close_wait");
    assert!(
        leak.split_whitespace()
            .any(|cell| cell == cookie.to_string()),
        "the kernel's cookie {cookie} (sk:{cookie:x}) in {leak:?}"
    );
    let why = rows(&suspects)
        .into_iter()
        .find(|l| l.starts_with("  "))
        .unwrap_or_else(|| panic!("a why line: {suspects}"));
    assert!(
        why.trim_start().starts_with("CLOSE_WAIT ") && why.ends_with("> close_wait_after 2s"),
        "{why:?}"
    );
    let client_side = connections(&agent, &["--suspect", "--netns", &client_ns.to_string()]);
    assert_eq!(rows(&client_side), Vec::<&str>::new(), "{client_side}");

    assert_filters(&agent, &server_ns_arg, cookie, leaking_server.pid());
    assert_check_explains_the_leak(&agent);
}

/// `--port` (either end, with or without `--suspect`) and `--pid` select what they name: the
/// idle connection's port lists it and nothing flagged, the leak's lists the leak (`cookie`).
fn assert_filters(agent: &Agent, server_ns: &str, cookie: u64, server_pid: u32) {
    let idle_port = IDLE_PORT.to_string();
    let by_port = connections(agent, &["--netns", server_ns, "--port", &idle_port]);
    assert_fits(&by_port);
    let idle_rows = rows(&by_port);
    assert!(!idle_rows.is_empty(), "{by_port}");
    assert!(idle_rows.iter().all(|l| l.contains(":7001")), "{by_port}");
    assert!(
        idle_rows.iter().all(|l| l.trim_end().ends_with(" -")),
        "nothing flagged on the idle port: {by_port}"
    );
    let none = connections(agent, &["--suspect", "--port", &idle_port]);
    assert_eq!(rows(&none), Vec::<&str>::new(), "{none}");
    let leak_port = connections(agent, &["--suspect", "--port", &SERVICE_PORT.to_string()]);
    assert!(
        rows(&leak_port)
            .iter()
            .any(|l| l.contains(&cookie.to_string())),
        "{leak_port}"
    );
    let by_pid = connections(agent, &["--suspect", "--pid", &server_pid.to_string()]);
    assert_eq!(rows(&by_pid).len(), 2, "the leak and its why: {by_pid}");
}

/// `check`: the leak's group, then why its oldest connection is flagged and what to do, each on
/// a line of its own, every line within 120 columns.
fn assert_check_explains_the_leak(agent: &Agent) {
    let check = Command::new(AGENT)
        .args(["check", "--agent", agent.url()])
        .output()
        .expect("run tcp-liveness check");
    let report = String::from_utf8(check.stdout).expect("UTF-8 report");
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert_fits(&report);
    let group = report
        .lines()
        .position(|l| l.starts_with("close_wait_stuck") && l.contains("python3"))
        .unwrap_or_else(|| panic!("the leak's group: {report}"));
    let below: Vec<&str> = report.lines().skip(group + 1).take(2).collect();
    assert!(below[0].starts_with("    oldest: CLOSE_WAIT "), "{report}");
    assert!(below[1].starts_with("    fix: "), "{report}");
}

/// `tcp-liveness run 2>&1 | head`: the start-up log says what the first scan found; once the
/// reader is gone every log write fails with EPIPE (the runtime ignores SIGPIPE), and the agent
/// must go on serving.
#[test]
fn a_closed_stderr_does_not_stop_the_agent() {
    let Some(sc) = agent_only("closed_stderr", Need::RootAndKernelBtf) else {
        return;
    };
    // Close-on-exec: the agent must not inherit the read end, or its writes would never fail.
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let mut agent = sc
        .launch()
        .rust_log(Some("info"))
        .log_to(File::from(write_end))
        .start()
        .expect("agent");
    // What `head` does: read the first lines, then exit, closing the pipe.
    let (first_scan, read) = mpsc::channel();
    std::thread::spawn(move || {
        let found = BufReader::new(File::from(read_end))
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("first scan: "));
        let _ = first_scan.send(found);
    });
    let line = read
        .recv_timeout(agent.scans(SCANS_TO_SHOW))
        .expect("the agent's log within its first scans")
        .expect("the agent logs what its first scan found");
    let said = &line[line.find("first scan: ").unwrap()..];
    let words: Vec<&str> = said.split_whitespace().collect();
    let [
        "first",
        "scan:",
        sockets,
        socket_noun,
        "in",
        namespaces,
        namespace_noun,
        suspects,
        suspect_noun,
    ] = words[..]
    else {
        panic!("{line}");
    };
    // Each count with its noun, singular for 1 only: "1 socket", "0 suspects".
    for (count, noun, singular) in [
        (sockets, socket_noun, "socket"),
        (
            namespaces,
            namespace_noun.trim_end_matches(','),
            "namespace",
        ),
        (suspects, suspect_noun, "suspect"),
    ] {
        let count: usize = count.parse().unwrap_or_else(|_| panic!("{line}"));
        let expected = if count == 1 {
            singular.to_owned()
        } else {
            format!("{singular}s")
        };
        assert_eq!(noun, expected, "{line}");
    }
    assert!(namespace_noun.ends_with(','), "{line}");
    // A reload logs at info level: a write to the closed pipe for certain.
    let hup = Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    agent.wait_scans(3);
    assert!(agent.get("/healthz").starts_with("ok"), "still healthy");
    let status = agent.stop().expect("stop the agent");
    assert!(
        status.success(),
        "exited {status} after SIGTERM, not a panic"
    );
}
