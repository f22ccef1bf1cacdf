//! Privileges after start-up (docs/privileges.md): every thread of the running agent holds at
//! most the kept set (`CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, `CAP_DAC_READ_SEARCH`, and
//! `CAP_NET_ADMIN` for the conntrack questions since the agent runs as root here), only the scan and
//! kernel-state threads (and the namespace threads they start) hold even that, `CAP_BPF` and
//! `CAP_PERFMON` are gone from every set, and the agent still works: kernel reads in every
//! namespace, counters from the maps, owners of new sockets. A start short of a capability exits
//! 2 with one line naming it.

use std::{process::Command, time::Duration};

use harness::{
    agent::{self},
    capabilities::{self, BPF, DAC_READ_SEARCH, NET_ADMIN, PERFMON, SYS_ADMIN, SYS_PTRACE, mask},
    ports::free_port,
    privilege::{self, Need},
    wait::wait_for,
};
use serde_json::Value;

use crate::common::{AGENT, scenario};

/// The threads that enter namespaces and walk `/proc`: they alone keep capabilities.
const PRIVILEGED_THREADS: &[&str] = &["scan", "kernel-state", "seed-netns"];

#[test]
fn every_thread_holds_at_most_the_kept_set_and_the_agent_still_works() {
    let Some(sc) = scenario("privileges_after_start", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    // An Alertmanager URL (nobody listens there) so that the sender thread exists.
    let agent = sc
        .launch()
        .args(&["--alertmanager-url", "http://127.0.0.1:9"])
        .start()
        .expect("agent");

    // CAP_NET_ADMIN: kept when given (root here), for ctnetlink; never required at start.
    let kept = mask(&[DAC_READ_SEARCH, SYS_PTRACE, SYS_ADMIN, NET_ADMIN]);
    let loading = mask(&[BPF, PERFMON]);
    let threads = capabilities::threads(agent.pid());
    assert!(
        threads.len() >= 5,
        "main, 2 workers, scan, kernel-state, …: {threads:#?}"
    );
    for t in &threads {
        assert_eq!(t.effective & !kept, 0, "CapEff beyond the kept set: {t:?}");
        assert_eq!(t.permitted & !kept, 0, "CapPrm beyond the kept set: {t:?}");
        assert_eq!(
            t.bounding & loading,
            0,
            "CapBnd holds CAP_BPF/CAP_PERFMON: {t:?}"
        );
        assert_eq!((t.inheritable, t.ambient), (0, 0), "{t:?}");
        assert!(t.no_new_privs, "{t:?}");
        if !PRIVILEGED_THREADS.contains(&t.name.as_str()) {
            assert_eq!(
                (t.effective, t.permitted),
                (0, 0),
                "a thread that parses network input (or the main thread) keeps a capability: {t:?}"
            );
        }
    }
    for name in ["scan", "kernel-state"] {
        let t = threads.iter().find(|t| t.name == name);
        let t = t.unwrap_or_else(|| panic!("no {name} thread: {threads:#?}"));
        assert_eq!(t.effective, kept, "{name} keeps what it uses: {t:?}");
    }
    for name in ["tokio-rt-worker", "alertmanager"] {
        assert!(
            threads.iter().any(|t| t.name == name),
            "no {name} thread: the check above proved nothing for it: {threads:#?}"
        );
    }

    // Still works: a CLOSE_WAIT made now, in another namespace, shows up with its owner (an
    // accepted socket: named by a pass over the held sockets).
    let server = sc.server(&["no-close"]);
    let _client = sc.client(&["close"]);
    let inode = net.server.inode();
    let cw: Value = wait_for(
        "the CLOSE_WAIT with its owner",
        agent.held_pass_and(Duration::ZERO),
        || {
            agent.connections_in(inode).into_iter().find(|c| {
                c["state"] == "close_wait" && c["pid"].as_u64() == Some(u64::from(server.pid()))
            })
        },
    );
    assert_eq!(cw["comm"], "python3", "{cw}");
    // Kernel reads (an iterator created on the held link, in every namespace) go on.
    agent.wait_kernel_reads(2);
    // Counters (map lookups on held descriptors) and verdict confirmations did not fail.
    for stage in ["counters", "confirm"] {
        let series = format!("tcp_liveness_scan_errors_total{{stage=\"{stage}\"}}");
        assert_eq!(agent.metric(&series), Some(0.0), "{series}");
    }
    let transitions = agent.get("/metrics");
    assert!(
        transitions
            .lines()
            .any(|l| l.starts_with("tcp_liveness_state_transitions_total{") && !l.ends_with(" 0")),
        "no state transition counted from the maps:\n{transitions}"
    );
}

#[test]
fn a_missing_capability_is_named_before_anything_is_loaded() {
    if !privilege::may_run("missing_capability", Need::Root) {
        return;
    }
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !setpriv && !privilege::skip("missing_capability", "setpriv (util-linux) not installed") {
        return;
    }
    let all = [
        "bpf",
        "perfmon",
        "sys_admin",
        "sys_ptrace",
        "dac_read_search",
    ];
    for missing in all {
        let port = free_port().expect("a free loopback port");
        let caps: Vec<String> = all
            .iter()
            .filter(|c| **c != missing)
            .map(|c| format!("+{c}"))
            .collect();
        let (code, stderr) = agent::run_confined(AGENT, &caps.join(","), port, &[]);
        assert_eq!(code, Some(2), "without {missing}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        let name = format!("missing capability CAP_{}", missing.to_uppercase());
        assert!(
            last.starts_with("tcp-liveness: ") && last.contains(&name),
            "without {missing}, the last line: {last}"
        );
        assert!(stderr.contains("starting"), "the log was written: {stderr}");
        assert!(!stderr.contains("probes loaded"), "{stderr}");
    }
}
