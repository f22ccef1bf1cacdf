//! The agent's exact-query sockets (`sock_diag`, one opened in each network namespace it asks
//! about, to confirm a verdict) each hold their namespace alive. A namespace the agent stopped
//! asking about keeps none, even while another namespace is asked at every scan (a node where
//! pods keep raising suspects, and a deleted pod's namespace must be freed). The oracle is the
//! namespace's own `/proc/net/netlink` (`sock_diag` rows) against the agent's descriptors.

use std::{collections::HashSet, time::Duration};

use harness::{netns::Netns, privilege::Need, wait::wait_for};

use crate::{
    common::{SCANS_TO_SHOW, scenario},
    verdicts::wait_for_verdict,
};

/// `NETLINK_SOCK_DIAG`, the protocol column of `/proc/net/netlink`.
const NETLINK_SOCK_DIAG: &str = "4";
const CLOSE_WAIT_AFTER: Duration = Duration::from_secs(1);

/// How many `sock_diag` sockets of process `pid` are open in namespace `ns`.
fn query_sockets_of(pid: u32, ns: &Netns) -> usize {
    let held: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the agent's descriptors")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let out = ns
        .command("cat")
        .arg("/proc/net/netlink")
        .output()
        .expect("the namespace's /proc/net/netlink");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|row| {
            let columns: Vec<&str> = row.split_whitespace().collect();
            columns.get(1) == Some(&NETLINK_SOCK_DIAG)
                && columns.last().is_some_and(|inode| held.contains(*inode))
        })
        .count()
}

#[test]
fn a_namespace_no_longer_asked_about_keeps_no_socket_of_the_agent() {
    let Some(quiet) = scenario("query_sockets_quiet", Need::RootAndKernelBtf) else {
        return;
    };
    let Some(busy) = scenario("query_sockets_busy", Need::RootAndKernelBtf) else {
        return;
    };
    let agent = quiet
        .launch()
        .args(&["--close-wait-after", "1s", "--fin-wait2-after", "1h"])
        .args(&["--unresponsive-after", "1h", "--idle-after", "1h"])
        .start()
        .expect("agent");
    let pid = agent.pid();
    // Busy: ten connections a second left in CLOSE_WAIT by a server that never closes, so
    // every scan confirms new suspects there.
    let _busy_server = busy.server(&["no-close"]);
    let _busy_clients = busy.client(&["churn-rate", "10"]);
    let busy_ns = &busy.net().server;
    wait_for(
        "the agent's query socket in the busy namespace",
        agent.after(CLOSE_WAIT_AFTER),
        || (query_sockets_of(pid, busy_ns) > 0).then_some(()),
    );

    // Quiet: one CLOSE_WAIT, confirmed once (a lasting verdict is not asked about again).
    let quiet_ns = &quiet.net().server;
    let _server = quiet.server(&["no-close"]);
    let _client = quiet.client(&["half-close-hold"]);
    let clock = ("state_age_seconds", CLOSE_WAIT_AFTER);
    let (cw, _) = wait_for_verdict(&agent, quiet_ns.inode(), "close_wait_stuck", clock);
    assert_eq!(cw["state"], "close_wait");

    // Its socket is closed at the end of the first scan that did not ask there...
    wait_for(
        "no query socket of the agent left in the quiet namespace",
        agent.scans(SCANS_TO_SHOW),
        || (query_sockets_of(pid, quiet_ns) == 0).then_some(()),
    );
    // ...while the busy namespace, asked at every scan, keeps its own.
    wait_for(
        "the agent's query socket still in the busy namespace",
        agent.scans(SCANS_TO_SHOW),
        || (query_sockets_of(pid, busy_ns) > 0).then_some(()),
    );
    // The verdict stands without its socket (it was confirmed, and is remembered).
    let still = agent.connections_in(quiet_ns.inode());
    assert!(
        still
            .iter()
            .any(|c| crate::verdicts::has_reason(c, "close_wait_stuck")),
        "the quiet namespace's verdict after its socket closed: {still:?}"
    );
}
