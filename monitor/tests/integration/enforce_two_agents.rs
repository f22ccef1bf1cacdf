//! Two enforcing agents (a rolling upgrade, or a second copy) whose `[[enforce]]` policies match
//! the same connection with different options: both `sock_ops` programs run at establishment and
//! the socket keeps the options of the one that ran last. Each agent's `/connections` names its
//! policy as `enforced` only while the socket carries its policy's options (exactly one of the
//! two does), shows the options the kernel keeps, and counts the connection in
//! `tcp_liveness_enforced_connections{policy}` accordingly. The application's own `getsockopt`
//! (`tcp_peer.py recv-report`) is the oracle. Run as root.

use std::time::Duration;

use harness::{agent::Agent, cgroup::Cgroup, peer::Peer, privilege::Need, wait::wait_for};
use serde_json::Value;

use crate::{
    common::{SCANS_TO_SHOW, scenario},
    enforce::{agent_with, options},
};

/// One agent's policy: its name and what it sets, as the `options` line reports it
/// (keepalive on, idle s, interval s, count, user timeout ms).
struct Side {
    name: &'static str,
    options: [u32; 5],
}

/// The two policies differ in every option, so the socket's options tell whose they are.
const FIRST: Side = Side {
    name: "first-agent",
    options: [1, 2, 1, 2, 7000],
};
const SECOND: Side = Side {
    name: "second-agent",
    options: [1, 4, 3, 5, 9000],
};

/// An `override` policy on `cgroup` setting `side`'s options.
fn config(side: &Side, cgroup: &str) -> String {
    let [_, idle, interval, count, user_timeout_ms] = side.options;
    format!(
        "[[enforce]]\nname = \"{}\"\ncgroup = \"{cgroup}\"\nmode = \"override\"\n\
         keepalive = {{ idle = \"{idle}s\", interval = \"{interval}s\", count = {count} }}\n\
         user_timeout = \"{user_timeout_ms}ms\"\n",
        side.name
    )
}

/// The metric `tcp_liveness_enforced_connections{policy}` of `agent` for `side`'s policy.
fn enforced_count(agent: &Agent, side: &Side) -> Option<f64> {
    agent.metric(&format!(
        "tcp_liveness_enforced_connections{{policy=\"{}\"}}",
        side.name
    ))
}

#[test]
fn of_two_agents_only_the_one_whose_options_the_socket_carries_names_its_policy() {
    let Some(sc) = scenario("enforce_two_agents_options", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let cgroup = Cgroup::create(&format!(
        "tcp-liveness-test-two-options-{}",
        std::process::id()
    ))
    .expect("cgroup");
    let _server = sc.server(&["echo"]);
    let (first, _first_dir) = agent_with(&sc, &config(&FIRST, &cgroup.path()));
    first.wait_scans(1);
    let (second, _second_dir) = agent_with(&sc, &config(&SECOND, &cgroup.path()));

    let client = Peer::start_in_cgroup(
        &net.client,
        &["client", &net.server_ip, "7000", "recv-report"],
        &cgroup,
    )
    .expect("client in the cgroup");
    let at_connect = options(&client);
    let (winner, loser) = match at_connect {
        o if o == FIRST.options => ((&first, &FIRST), (&second, &SECOND)),
        o if o == SECOND.options => ((&second, &SECOND), (&first, &FIRST)),
        other => panic!("the socket carries neither policy's options: {other:?}"),
    };
    eprintln!("the socket carries {}'s options", winner.1.name);

    // Each agent learns the socket's options at its next pass over the held sockets
    // (`Agent::held_pass_and`). Until then what it shows is no judgement of the options the
    // kernel keeps.
    let remote = format!("{}:7000", net.server_ip);
    let ours = |agent: &Agent| {
        agent
            .connections_in(net.client.inode())
            .into_iter()
            .find(|c| c["remote"] == remote && c["state"] == "established")
    };
    let [_, idle, interval, count, user_timeout_ms] = winner.1.options;
    let shows_the_kernels = |c: &Value| {
        c["keepalive"]["enabled"] == true
            && c["keepalive"]["idle_seconds"] == f64::from(idle)
            && c["keepalive"]["interval_seconds"] == f64::from(interval)
            && c["keepalive"]["count"] == count
            && c["user_timeout_seconds"] == f64::from(user_timeout_ms) / 1000.0
    };
    let deadline = first.held_pass_and(Duration::ZERO);
    let [named, unnamed] = wait_for("both agents to show the socket's options", deadline, || {
        Some([ours(winner.0)?, ours(loser.0)?]).filter(|both| both.iter().all(shows_the_kernels))
    });
    // Exactly one names its policy: the one whose options the socket carries.
    assert_eq!(named["enforced"], winner.1.name, "{named}");
    assert!(unnamed["enforced"].is_null(), "{unnamed}");
    // The counts agree with the names: a scan later at the latest.
    wait_for("the enforced counts", first.scans(SCANS_TO_SHOW), || {
        let counted = enforced_count(winner.0, winner.1) == Some(1.0)
            && enforced_count(loser.0, loser.1) == Some(0.0);
        counted.then_some(())
    });
    // And the kernel's view has not changed since: the application's getsockopt again.
    client.signal_usr1().expect("SIGUSR1");
    assert_eq!(options(&client), at_connect, "getsockopt at the end");
    // Neither agent names the other's policy (each knows only its own).
    for (agent, other) in [(&first, &SECOND), (&second, &FIRST)] {
        let c = ours(agent).expect("the connection");
        assert_ne!(c["enforced"], other.name, "{c}");
    }
}
