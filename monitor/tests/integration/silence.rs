//! What counts as a peer's silence: a `TCP_USER_TIMEOUT` that cannot fire (nothing
//! outstanding, no keepalive) does not make an idle connection safe. The kernel's own view is
//! the oracle: the client's `getsockopt`, `ss -o`'s timers, and its `recv()` still blocked.

use std::time::Duration;

use harness::{agent::SCANS_TO_SHOW, peer::Peer, privilege::Need};
use serde_json::Value;

use crate::{
    common::scenario,
    verdicts::{FAST, IDLE_AFTER, has_reason},
};

/// The options a `recv-report` client printed: `[KEEPALIVE, IDLE, INTVL, CNT, USER_TIMEOUT_MS]`.
fn reported_options(peer: &Peer, within: Duration) -> Vec<u64> {
    let line = peer.next_line(within).expect("the options line");
    let values = line.strip_prefix("options ").expect("an options line");
    values
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

/// The client's own socket as `ss -tno` shows it: its line, with a `timer:` field when a
/// timer (retransmit, keepalive, zero-window probe) is pending.
fn ss_timers(net: &harness::netns::NetPair, local: &str) -> String {
    let port = local.rsplit(':').next().expect("a port");
    let out = net
        .client
        .command("ss")
        .args(["-tnoH", "sport", "=", &format!(":{port}")])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Twin receive-only clients, one with `TCP_USER_TIMEOUT` 1 s (no keepalive, as its own
/// `getsockopt` says), and their server vanishes. Both are `idle_no_keepalive`: with nothing
/// outstanding and no keepalive, no timer is pending on either socket (`ss -o`), and the user
/// timeout never fires — the client is still blocked in `recv()` three user timeouts later.
#[test]
fn user_timeout_without_keepalive_is_still_idle() {
    let Some(sc) = scenario("user_timeout_idle", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let agent = sc.launch().args(FAST).start().expect("agent");
    let user_timeout = Duration::from_secs(1);
    let ms = user_timeout.as_millis().to_string();
    let plain = sc.client(&["recv-report"]);
    let timed = sc.client(&["recv-report-user-timeout", &ms]);
    let within = agent.scans(SCANS_TO_SHOW);
    assert_eq!(reported_options(&plain, within)[0], 0, "no keepalive");
    let options = reported_options(&timed, within);
    assert_eq!((options[0], options[4]), (0, 1000), "{options:?}");
    net.server.drop_input().expect("iptables DROP");
    let inode = net.client.inode();
    let flagged_for = |peer: &Peer| -> Value {
        let pid = Some(u64::from(peer.pid()));
        harness::wait::wait_for(
            "idle_no_keepalive on the client",
            agent.after(IDLE_AFTER),
            || {
                agent
                    .connections_in(inode)
                    .into_iter()
                    .find(|c| c["pid"].as_u64() == pid && has_reason(c, "idle_no_keepalive"))
            },
        )
    };
    let plain_conn = flagged_for(&plain);
    let timed_conn = flagged_for(&timed);
    assert_eq!(
        plain_conn["user_timeout_seconds"],
        Value::Null,
        "{plain_conn}"
    );
    assert_eq!(
        timed_conn["user_timeout_seconds"].as_f64(),
        Some(user_timeout.as_secs_f64()),
        "{timed_conn}"
    );
    assert_eq!(timed_conn["keepalive"]["enabled"], false, "{timed_conn}");
    let local = timed_conn["local"].as_str().expect("local address");
    let timers = ss_timers(net, local);
    assert!(!timers.is_empty(), "ss shows the socket");
    assert!(!timers.contains("timer:"), "no timer pending: {timers}");
    assert_eq!(
        timed.next_line(3 * user_timeout),
        None,
        "the user timeout never fires on an idle socket: still blocked in recv()"
    );
}
