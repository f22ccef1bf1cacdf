//! Pods on a node, as a real container runtime makes them: a containerd of the test's own runs
//! two busybox containers in containerd namespace `k8s.io` with the CRI labels kubelet sets and
//! systemd-driver cgroup paths, each pod in its own network namespace. Pod A's container
//! connects to a server that closes at once and never closes its end (`CLOSE_WAIT`, held by
//! `sleep`); pod B's holds an open connection to a server that keeps it. The agent, asking the
//! runtime's socket (`--containerd-socket`) and grouping by pod, must name both pods in
//! `/connections`, the CLI and `/alerts`, flag only pod A's socket and group it by pod. `ss -tnp`
//! and `/proc/PID/cgroup` are the oracle for which socket is whose. Run as root, one module at a
//! time; under CI=true a missing runtime binary fails instead of skipping.

use std::{fs, path::Path, process::Command, time::Duration};

use harness::{
    agent::Agent,
    containerd::{BUSYBOX, Container, Containerd, Pod},
    netns::Netns,
    privilege::{self, Need},
    scenario::{SERVICE_PORT, Scenario},
    ss,
    wait::wait_for,
};
use serde_json::{Value, json};

use crate::{
    am::Alertmanager,
    common::{AGENT, SCANS_TO_SHOW, have, scenario},
    verdicts::{has_reason, wait_for_verdict},
};

/// The leak's threshold: short so the test runs in seconds.
const CLOSE_WAIT_AFTER: Duration = Duration::from_secs(2);

/// The Kubernetes namespace both pods are in.
const NAMESPACE: &str = "shop";

/// True when containerd, ctr, runc and the static busybox are on the machine (skip otherwise;
/// a failure under CI=true).
pub(crate) fn runtime_installed() -> bool {
    have("containerd", "Debian package containerd")
        && have("ctr", "Debian package containerd")
        && have("runc", "Debian package runc")
        && (Path::new(BUSYBOX).exists()
            || privilege::skip(BUSYBOX, "missing (Debian package busybox-static)"))
}

/// A container of `pod` in the client namespace of `sc` that connects to the scenario's
/// server and hands the socket to `sleep`, which never reads, writes or closes it.
fn holding_container<'a>(
    containerd: &'a Containerd,
    sc: &Scenario,
    pod: &Pod,
    name: &str,
) -> Container<'a> {
    let net = sc.net();
    let port = SERVICE_PORT.to_string();
    let command = [
        "/bin/nc",
        net.server_ip.as_str(),
        &port,
        "-e",
        "/bin/sleep",
        "3600",
    ];
    containerd
        .run(pod, name, &net.client, &command)
        .unwrap_or_else(|e| panic!("container {name}: {e:#}\n{}", containerd.log_tail()))
}

/// The pid holding the only socket in `state` in `ns`, by `ss -tanp`, once it is there.
fn holder_by_ss(agent: &Agent, ns: &Netns, state: &str) -> u32 {
    wait_for(
        &format!("a {state} socket in {}", ns.name()),
        agent.scans(SCANS_TO_SHOW),
        || {
            let out = ns.command("ss").arg("-tanpO").output().expect("run ss");
            assert!(out.status.success(), "ss -tanpO: {}", out.status);
            let sockets = ss::parse(&String::from_utf8_lossy(&out.stdout));
            let socket = sockets.into_iter().find(|s| s.state == state)?;
            socket.holders().into_keys().next()
        },
    )
}

/// Asserts that `pid` runs in `container`'s cgroup (`/proc/PID/cgroup`'s v2 line).
fn assert_in_container(pid: u32, container: &Container<'_>) {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read its cgroup");
    assert!(
        cgroups
            .lines()
            .any(|l| l.strip_prefix("0::") == Some(container.cgroup())),
        "pid {pid} is not in {}: {cgroups}",
        container.cgroup()
    );
}

/// What `/connections` must say of a socket held in `container` of `pod`.
fn identity(pod: &Pod, container: &str) -> Value {
    json!({
        "namespace": pod.namespace,
        "pod": pod.name,
        "pod_uid": pod.uid,
        "container": container,
    })
}

/// `tcp-liveness ARGS --agent URL`: its stdout and exit code.
fn cli(agent: &Agent, args: &[&str]) -> (String, Option<i32>) {
    let out = Command::new(AGENT)
        .args(args)
        .args(["--agent", agent.url()])
        .output()
        .expect("run tcp-liveness");
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    (text, out.status.code())
}

#[test]
fn pods_are_named_and_a_leaking_pod_is_grouped_by_pod() {
    let Some(leaky_net) = scenario("kubernetes", Need::RootAndKernelBtf) else {
        return;
    };
    if !runtime_installed() {
        return;
    }
    let Some(healthy_net) = scenario("kubernetes_healthy", Need::RootAndKernelBtf) else {
        return;
    };
    let _closing_server = leaky_net.server(&["close"]);
    let _holding_server = healthy_net.server(&["no-close"]);
    let containerd = Containerd::start().expect("containerd");
    let leaky = Pod::new(NAMESPACE, "cart-7d9f", 0);
    let healthy = Pod::new(NAMESPACE, "checkout-5b2c", 1);

    let config = tempfile::NamedTempFile::new().expect("a config file");
    fs::write(config.path(), "group_by = \"pod\"\n").expect("write the config");
    let socket = containerd.socket();
    let am = Alertmanager::start();
    let agent = leaky_net
        .launch()
        .args(&[
            "--config",
            config.path().to_str().expect("UTF-8 path"),
            "--close-wait-after",
            "2s",
            "--containerd-socket",
            socket.to_str().expect("UTF-8 path"),
            "--alertmanager-url",
            &am.base,
        ])
        .start()
        .expect("agent");
    // Started after the agent, so the leak's CLOSE_WAIT age is measured, not a lower bound.
    let leaker = holding_container(&containerd, &leaky_net, &leaky, "cart");
    let keeper = holding_container(&containerd, &healthy_net, &healthy, "checkout");

    // The oracle: who holds each socket, and that it runs in the container's cgroup.
    let (leaky_ns, healthy_ns) = (&leaky_net.net().client, &healthy_net.net().client);
    let leak_pid = holder_by_ss(&agent, leaky_ns, "close_wait");
    assert_in_container(leak_pid, &leaker);
    let kept_pid = holder_by_ss(&agent, healthy_ns, "established");
    assert_in_container(kept_pid, &keeper);

    let clock = ("state_age_seconds", CLOSE_WAIT_AFTER);
    let (leak, _) = wait_for_verdict(&agent, leaky_ns.inode(), "close_wait_stuck", clock);
    assert_eq!(leak["pid"], leak_pid, "{leak}");
    assert_eq!(leak["container"], leaker.id(), "{leak}");
    assert_eq!(leak["kubernetes"], identity(&leaky, "cart"), "{leak}");

    let kept = wait_for("pod B's connection", agent.scans(SCANS_TO_SHOW), || {
        agent
            .connections_in(healthy_ns.inode())
            .into_iter()
            .find(|c| c["state"] == "established" && c["pid"] == kept_pid)
    });
    assert_eq!(kept["kubernetes"], identity(&healthy, "checkout"), "{kept}");
    assert_eq!(kept["container"], keeper.id(), "{kept}");
    assert!(
        kept["suspect"].as_array().is_none_or(Vec::is_empty),
        "pod B's connection is healthy: {kept}"
    );

    assert_alert_grouped_by_pod(&agent, &leaky, &healthy);
    assert_alertmanager_labels(&agent, &am, &leaky);
    assert_cli_names_pods(&agent, &leaky, &healthy, healthy_ns.inode());
}

/// `/alerts`: one `close_wait_stuck` group owned by pod A (`namespace/pod`), its samples named;
/// no group owned by pod B.
fn assert_alert_grouped_by_pod(agent: &Agent, leaky: &Pod, healthy: &Pod) {
    let owner = format!("{}/{}", leaky.namespace, leaky.name);
    let group = wait_for("pod A's alert group", agent.scans(SCANS_TO_SHOW), || {
        let alerts: Value = serde_json::from_str(&agent.get("/alerts")).expect("JSON");
        alerts["alerts"]
            .as_array()?
            .iter()
            .find(|g| g["reason"] == "close_wait_stuck" && g["owner"] == owner.as_str())
            .cloned()
    });
    assert_eq!(group["count"], 1, "{group}");
    let sample = &group["samples"][0];
    assert_eq!(sample["kubernetes"], identity(leaky, "cart"), "{group}");
    assert!(has_reason(sample, "close_wait_stuck"), "{group}");
    let alerts = agent.get("/alerts");
    let other = format!("\"{}/{}\"", healthy.namespace, healthy.name);
    assert!(!alerts.contains(&other), "pod B is not flagged: {alerts}");
}

/// Alertmanager holds pod A's alert with the pod's `pod`, `namespace` and `container` labels
/// (the agent pushes after each scan).
fn assert_alertmanager_labels(agent: &Agent, am: &Alertmanager, leaky: &Pod) {
    let owner = format!("{}/{}", leaky.namespace, leaky.name);
    let alert = wait_for(
        "pod A's alert in Alertmanager",
        agent.scans(SCANS_TO_SHOW),
        || {
            am.alerts()
                .into_iter()
                .find(|a| a["labels"]["owner"] == owner.as_str())
        },
    );
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "TcpLivenessCloseWaitStuck", "{alert}");
    assert_eq!(labels["pod"], leaky.name.as_str(), "{alert}");
    assert_eq!(labels["namespace"], leaky.namespace.as_str(), "{alert}");
    assert_eq!(labels["container"], "cart", "{alert}");
}

/// `connections --wide` shows pod B in its POD column; `check` names pod A's group (printed, so
/// a run shows what an operator sees).
fn assert_cli_names_pods(agent: &Agent, leaky: &Pod, healthy: &Pod, healthy_ns: u64) {
    let netns = healthy_ns.to_string();
    let (table, code) = cli(agent, &["connections", "--wide", "--netns", &netns]);
    assert_eq!(code, Some(0), "{table}");
    let header = table.lines().next().expect("a header");
    assert!(
        header.split_whitespace().any(|w| w == "POD"),
        "a POD column: {table}"
    );
    let pod_b = format!("{}/{}", healthy.namespace, healthy.name);
    assert!(
        table.lines().skip(1).any(|l| l.contains(&pod_b)),
        "pod B in the table: {table}"
    );

    let (report, code) = cli(agent, &["check"]);
    eprintln!("tcp-liveness check:\n{report}");
    assert_eq!(code, Some(1), "{report}");
    let pod_a = format!("{}/{}", leaky.namespace, leaky.name);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("close_wait_stuck") && l.contains(&pod_a)),
        "pod A's group: {report}"
    );
    assert!(!report.contains(&pod_b), "pod B is not flagged: {report}");
}
