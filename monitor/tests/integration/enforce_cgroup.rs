//! `[[enforce]]` with a cgroup that comes and goes, on a real kernel: a policy whose cgroup does
//! not exist is a warning (the agent starts, serves and reloads), and once the cgroup is created
//! — and again after it is removed and created anew with a new id, as a restarted service's is —
//! a connection from a process inside it gets the policy's options at connect, from the
//! `sock_ops` program (the application's own `getsockopt` right after `connect()`, and the audit
//! log: the kernel program's work, none by the scan's iterator). Run as root.

use std::{fs, os::unix::fs::MetadataExt as _};

use harness::{
    agent::Agent, cgroup::Cgroup, peer::Peer, privilege::Need, scenario::Scenario, wait::wait_for,
};

use crate::{
    common::{SCANS_TO_SHOW, scenario},
    enforce::{BY_ITERATOR, BY_KERNEL, agent_with, audit, options},
    reload::hangup,
};

const POLICY: &str = "svc-keepalive";
/// What the policy sets, as the `options` line reports it: keepalive on, idle 2 s, interval 1 s,
/// count 2, user timeout 7000 ms.
const SET_AT_CONNECT: [u32; 5] = [1, 2, 1, 2, 7000];

/// The config: one policy on `cgroup`, and `close_wait_after` (changed by the reload).
fn config(cgroup: &str, close_wait_after: &str) -> String {
    format!(
        "close_wait_after = \"{close_wait_after}\"\n\
         [[enforce]]\nname = \"{POLICY}\"\ncgroup = \"{cgroup}\"\n\
         keepalive = {{ idle = \"2s\", interval = \"1s\", count = 2 }}\nuser_timeout = \"7s\"\n"
    )
}

/// Waits for the agent's log line containing `text`; returns it.
fn logged(agent: &Agent, dir: &tempfile::TempDir, text: &str) -> String {
    wait_for(
        &format!("a log line with {text:?}"),
        agent.scans(SCANS_TO_SHOW),
        || audit(dir, text).pop(),
    )
}

/// The cgroup's id: its directory's inode number.
fn cgroup_id(name: &str) -> u64 {
    let root = harness::cgroup::v2_root().expect("cgroup v2 root");
    fs::metadata(root.join(name))
        .expect("cgroup directory")
        .ino()
}

/// A client in `cgroup`: the options its socket has right after `connect()`.
fn connect_from(sc: &Scenario, cgroup: &Cgroup) -> (Peer, [u32; 5]) {
    let net = sc.net();
    let client = Peer::start_in_cgroup(
        &net.client,
        &["client", &net.server_ip, "7000", "recv-report"],
        cgroup,
    )
    .expect("client in the cgroup");
    let at_connect = options(&client);
    (client, at_connect)
}

/// Waits until the audit log has `n` connections given the policy by the kernel program.
fn wait_kernel_enforced(agent: &Agent, dir: &tempfile::TempDir, n: usize) {
    wait_for(
        &format!("{n} sock_ops audit line(s) for {POLICY}"),
        agent.scans(SCANS_TO_SHOW),
        || {
            let lines = audit(dir, BY_KERNEL);
            (lines.iter().filter(|l| l.contains(POLICY)).count() >= n).then_some(())
        },
    );
}

#[test]
fn a_missing_cgroup_waits_and_a_created_or_recreated_one_is_matched_at_connect() {
    let Some(sc) = scenario("enforce_cgroup_later", Need::RootAndKernelBtf) else {
        return;
    };
    // Unique per run: a cgroup left by another run would exist from the start.
    let name = format!("tcp-liveness-test-enforce-later-{}", std::process::id());
    let path = format!("/{name}");
    let _server = sc.server(&["echo"]);

    // (a) Started without the cgroup: not an error (start() fails if the agent exits).
    let (agent, dir) = agent_with(&sc, &config(&path, "1h"));
    assert_eq!(agent.get("/healthz"), "ok");
    let waiting = audit(&dir, "does not exist: policy waiting for its cgroup");
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(
        waiting[0].contains(POLICY) && waiting[0].contains(&path),
        "{waiting:?}"
    );
    // A reload of another setting succeeds (its success time moves on, the start's load being
    // the first).
    let success_time = "tcp_liveness_config_last_reload_success_timestamp_seconds";
    let started = agent.metric(success_time).expect("the start's load");
    fs::write(dir.path().join("enforce.toml"), config(&path, "2h")).expect("write");
    hangup(&agent);
    wait_for("the reload", agent.scans(SCANS_TO_SHOW), || {
        agent.metric(success_time).filter(|&t| t > started)
    });
    assert_eq!(
        agent.metric("tcp_liveness_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(audit(&dir, "config reload rejected").is_empty());

    // (b) The cgroup is created: the agent gives the program its id, and a connection from
    // inside it has the policy's options as soon as connect() returns.
    let cgroup = Cgroup::create(&name).expect("cgroup");
    let first_id = cgroup_id(&name);
    logged(
        &agent,
        &dir,
        &format!("cgroup {path} created (id {first_id})"),
    );
    let (mut first, at_connect) = connect_from(&sc, &cgroup);
    assert_eq!(
        at_connect, SET_AT_CONNECT,
        "set at connect, in the new cgroup"
    );
    wait_kernel_enforced(&agent, &dir, 1);
    first.stop();

    // Removed and created again, as a restarted service's: same path, new id.
    drop(cgroup);
    let cgroup = Cgroup::create(&name).expect("cgroup again");
    let second_id = cgroup_id(&name);
    assert_ne!(first_id, second_id, "a new cgroup");
    // One look may fall between the removal and the creation (removed, then created), or not.
    // "created again (id A → B)" or "created (id B)": both end with the new id.
    let followed = logged(&agent, &dir, &format!(" {second_id}): policy matched"));
    assert!(
        followed.contains(&format!("created again (id {first_id} → {second_id})"))
            || followed.contains(&format!("created (id {second_id})")),
        "{followed}"
    );
    let (_second, at_connect) = connect_from(&sc, &cgroup);
    assert_eq!(
        at_connect, SET_AT_CONNECT,
        "set at connect, in the cgroup created again"
    );
    wait_kernel_enforced(&agent, &dir, 2);
    let by_iterator: Vec<_> = audit(&dir, BY_ITERATOR)
        .into_iter()
        .filter(|l| l.contains(POLICY))
        .collect();
    assert_eq!(
        by_iterator,
        Vec::<String>::new(),
        "all by the sock_ops program"
    );
}

/// Two agents with `[[enforce]]` (a rolling upgrade): the second says at start that another
/// agent's `sock_ops` program is loaded, naming its id.
#[test]
fn a_second_enforcing_agent_warns_of_the_first() {
    let Some(sc) = scenario("enforce_two_agents", Need::RootAndKernelBtf) else {
        return;
    };
    let cgroup =
        Cgroup::create(&format!("tcp-liveness-test-two-{}", std::process::id())).expect("cgroup");
    let text = config(&cgroup.path(), "1h");
    let (first, first_dir) = agent_with(&sc, &text);
    first.wait_scans(1);
    assert!(
        audit(&first_dir, "another tcp-liveness agent").is_empty(),
        "alone at its start"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("enforce.toml");
    fs::write(&file, &text).expect("write config");
    let log = fs::File::create(dir.path().join("agent.log")).expect("log file");
    let port = harness::ports::free_port().expect("a free loopback port");
    let second = sc
        .launch_on(port)
        .args(&["--config", file.to_str().expect("UTF-8 path")])
        .rust_log(Some("warn"))
        .log_to(log)
        .start()
        .expect("the second agent");
    let line = logged(
        &second,
        &dir,
        "another tcp-liveness agent's sock_ops program",
    );
    assert!(line.contains("program_ids=["), "{line}");
}
