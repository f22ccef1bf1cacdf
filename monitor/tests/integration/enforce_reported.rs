//! What `/connections` reports as `enforced` follows the socket's options as the kernel keeps
//! them now, not what the policy once did: after the application sets its own keepalive idle
//! time on a socket a `fill` policy gave keepalive, the connection no longer names the policy,
//! and shows the application's value. The application's own `getsockopt` (`tcp_peer.py
//! recv-report`) is the oracle. Run as root.

use std::time::Duration;

use harness::{cgroup::Cgroup, peer::Peer, privilege::Need, wait::wait_for};

use crate::{
    common::scenario,
    enforce::{agent_with, options},
};

#[test]
fn a_policy_is_no_longer_named_once_the_application_sets_its_own_options() {
    let Some(sc) = scenario("enforce_reported", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let cgroup = Cgroup::create("tcp-liveness-test-enforce-reported").expect("cgroup");
    let _server =
        Peer::start(&net.server, &["server", &net.server_ip, "7000", "echo"]).expect("peer");
    let config = format!(
        "[[enforce]]\nname = \"fill-cgroup\"\ncgroup = \"{}\"\nmode = \"fill\"\n\
         keepalive = {{ idle = \"2s\", interval = \"1s\", count = 2 }}\n",
        cgroup.path()
    );
    let (agent, _dir) = agent_with(&sc, &config);
    let client = Peer::start_in_cgroup(
        &net.client,
        &["client", &net.server_ip, "7000", "recv-report"],
        &cgroup,
    )
    .expect("client");
    assert_eq!(options(&client), [1, 2, 1, 2, 0], "the policy's keepalive");
    let remote = format!("{}:7000", net.server_ip);
    let ours = |c: &serde_json::Value| c["remote"] == remote && c["state"] == "established";
    // Named once a pass over the held sockets read the options `sock_ops` set (after the state
    // change that read them first).
    wait_for(
        "the connection named by its policy",
        agent.held_pass_and(Duration::ZERO),
        || {
            let named = agent
                .connections_in(net.client.inode())
                .into_iter()
                .filter(|c| ours(c) && c["enforced"] == "fill-cgroup")
                .count();
            (named == 1).then_some(())
        },
    );

    // The application changes its mind: its own idle time, the policy's interval and count.
    client.signal(libc::SIGUSR2).expect("SIGUSR2");
    assert_eq!(
        options(&client),
        [1, 100, 1, 2, 0],
        "getsockopt after its setsockopt"
    );
    // The next pass over the held sockets reads the new value.
    let deadline = agent.held_pass_and(Duration::ZERO);
    let found = wait_for("the policy no longer named", deadline, || {
        agent
            .connections_in(net.client.inode())
            .into_iter()
            .find(|c| ours(c) && c["enforced"].is_null())
    });
    assert_eq!(
        found["keepalive"]["idle_seconds"], 100.0,
        "the application's idle time, as the kernel keeps it"
    );
    assert_eq!(
        found["keepalive"]["count"], 2,
        "the count the policy set stays"
    );
}
