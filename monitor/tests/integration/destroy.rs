//! `tcp-liveness destroy` by hand against the real kernel: what it refuses (a healthy
//! connection unless `--force`, a listening socket always), what it destroys (gone from `ss`,
//! the application sees `ECONNABORTED`), with and without the agent, selected by cookie or by
//! address as `ss -K` selects.

use std::{collections::HashSet, process::Command, time::Duration};

use harness::{agent::Agent, peer::Peer, privilege::Need, scenario::Scenario, ss, wait::wait_for};

use crate::{
    common::{AGENT, SCANS_TO_SHOW, scenario},
    remediate::{cookies_to, senders},
};

/// No agent listens here.
const NOWHERE: &str = "http://127.0.0.1:1";

/// Runs `tcp-liveness destroy ARGS`; returns the exit code, stdout and stderr.
fn destroy(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(AGENT)
        .arg("destroy")
        .args(args)
        .output()
        .expect("run tcp-liveness destroy");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A sink server, the agent, and two senders to it, which the agent lists (healthy: no verdict).
struct Listed {
    /// Kept for the test's length.
    server: Peer,
    agent: Agent,
    clients: Vec<Peer>,
    /// The two connections' cookies (`ss`).
    cookies: HashSet<u64>,
}

fn two_listed(sc: &Scenario) -> Listed {
    let net = sc.net();
    let server = sc.server(&["sink"]);
    let agent = sc.agent();
    let clients = senders(net, "7000", 2);
    let cookies = cookies_to(&net.client, 7000);
    assert_eq!(cookies.len(), 2);
    wait_for("the connections listed", agent.scans(SCANS_TO_SHOW), || {
        let listed: HashSet<u64> = agent
            .connections_in(net.client.inode())
            .iter()
            .filter_map(|c| c["cookie"].as_u64())
            .collect();
        cookies.is_subset(&listed).then_some(())
    });
    Listed {
        server,
        agent,
        clients,
        cookies,
    }
}

#[test]
fn destroy_command_refuses_a_healthy_connection_unless_forced() {
    let Some(sc) = scenario("destroy_command", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let Listed {
        server: _server,
        agent,
        clients,
        cookies,
    } = two_listed(&sc);
    let mut cookies = cookies.into_iter();
    let (first, second) = (cookies.next().unwrap(), cookies.next().unwrap());
    let first_text = first.to_string();
    let url = agent.url().to_owned();

    let (code, _, err) = destroy(&["--cookie", &first_text, "--agent", &url]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not suspect; --force to destroy it anyway"),
        "{err}"
    );
    let (code, out, err) = destroy(&[
        "--cookie",
        &first_text,
        "--agent",
        &url,
        "--force",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("dry run: would destroy connection {first}")),
        "{out}"
    );
    assert!(
        cookies_to(&net.client, 7000).contains(&first),
        "refused and dry run leave it"
    );

    let (code, out, err) = destroy(&["--cookie", &first_text, "--agent", &url, "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("destroyed connection {first}")),
        "{out}"
    );
    assert!(!cookies_to(&net.client, 7000).contains(&first), "ss: gone");
    let seen = clients
        .iter()
        .find_map(|c| c.next_line(Duration::from_secs(2)));
    assert_eq!(
        seen.as_deref(),
        Some("error ECONNABORTED"),
        "the application sees it"
    );

    // Without an agent, --force finds the socket with a sock_diag dump of every namespace.
    let second_text = second.to_string();
    let nowhere = NOWHERE;
    let (code, _, err) = destroy(&["--cookie", &second_text, "--agent", nowhere]);
    assert_eq!(code, Some(1), "no agent, no --force: {err}");
    let (code, out, err) = destroy(&["--cookie", &second_text, "--agent", nowhere, "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("found with sock_diag"), "{out}");
    assert!(!cookies_to(&net.client, 7000).contains(&second), "ss: gone");

    let (code, _, err) = destroy(&["--cookie", &second_text, "--agent", nowhere, "--force"]);
    assert_eq!(code, Some(1), "gone now: {err}");
    assert!(err.starts_with("not found"), "{err}");
    let (code, _, err) = destroy(&["--cookie", "twelve"]);
    assert_eq!(code, Some(2), "bad input: {err}");

    // A listening socket never, even with --force, through the agent or without it: the
    // service would stop accepting while its process runs on.
    let listener = ss::sockets(&net.server)
        .expect("ss")
        .into_iter()
        .find(|s| s.state == "listen" && s.local.ends_with(":7000"))
        .and_then(|s| s.cookie)
        .expect("the server's listener in ss");
    let listener_text = listener.to_string();
    for agent_url in [url.as_str(), nowhere] {
        let args = ["--cookie", &listener_text, "--agent", agent_url, "--force"];
        let (code, _, err) = destroy(&args);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("is a listening socket"), "{err}");
    }
    let still = ss::sockets(&net.server).expect("ss");
    assert!(
        still.iter().any(|s| s.cookie == Some(listener)),
        "the listener is still there"
    );
}

#[test]
fn destroy_command_selects_by_address_as_ss_does() {
    let Some(sc) = scenario("destroy_by_address", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let Listed {
        server: _server,
        agent,
        clients: _clients,
        cookies,
    } = two_listed(&sc);
    let third = *cookies.iter().next().expect("a connection");
    let url = agent.url().to_owned();
    let nowhere = NOWHERE;

    // By addresses, as `ss -K dst … src …` selects: one of the two connections alone.
    let local = ss::sockets(&net.client)
        .expect("ss")
        .into_iter()
        .find(|s| s.cookie == Some(third))
        .expect("the third connection in ss")
        .local;
    let port = local.rsplit_once(':').expect("ADDR:PORT").1.to_owned();
    let (dst, src) = (format!("{}:7000", net.server_ip), format!(":{port}"));
    let by_address = [
        "--dst",
        dst.as_str(),
        "--src",
        src.as_str(),
        "--agent",
        url.as_str(),
    ];
    let (code, _, err) = destroy(&by_address);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("connection {third} (")), "{err}");
    assert!(err.contains("is not suspect"), "{err}");
    let (code, out, err) = destroy(&[&by_address[..], &["--force", "--dry-run"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1, "one connection selected: {out}");
    assert!(out.starts_with(&format!("dry run: would destroy connection {third}")));
    let (code, _, err) = destroy(&["--dst", ":1", "--agent", url.as_str()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with("not found") && err.contains("dst *:1"),
        "{err}"
    );
    let (code, _, err) = destroy(&["--dst", "server:7000"]);
    assert_eq!(code, Some(2), "bad address: {err}");
    // Without the agent, the server's end of port 7000: the listener refused, the accepted
    // connection selected; one refusal makes the exit 1.
    let server_end = ["--src", ":7000", "--agent", nowhere, "--force", "--dry-run"];
    let (code, out, err) = destroy(&server_end);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("is a listening socket"), "{err}");
    assert!(out.contains("dry run: would destroy connection"), "{out}");
    assert!(
        cookies_to(&net.client, 7000).contains(&third),
        "dry runs leave it"
    );
}
