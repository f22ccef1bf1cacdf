//! What counts as a peer's silence: a query sent after a long idle spell is unanswered only
//! since it was sent; and a `TCP_USER_TIMEOUT` that cannot fire (nothing outstanding, no
//! keepalive) does not make an idle connection safe. The kernel's own view is the oracle: its
//! reset (the socket gone from `ss`, the client's `recv()` failing with `ETIMEDOUT`), the
//! client's `getsockopt`, `ss -o`'s timers, and its `recv()` still blocked.

use std::time::Duration;

use harness::{agent::SCANS_TO_SHOW, peer::Peer, privilege::Need};
use serde_json::Value;

use crate::{
    common::scenario,
    verdicts::{FAST, IDLE_AFTER, client_retries2_6, has_reason, time_the_reset},
};

/// A pooled connection idles 8 s, then sends a query to a server that vanished during the idle
/// spell (client namespace `tcp_retries2=6`: the kernel gives up ~25 s after the query's first
/// transmission). The peer's last ACK is older than the idle spell, but the peer has left the
/// query unanswered only since it was sent: the verdict counts from the kernel's retransmission
/// start (`since_retrans_start_seconds`, at least 3 s when flagged), and
/// `gives_up_in_seconds` predicts the kernel's own reset (counted from the last ACK, it would
/// be 8 s early).
#[test]
fn unresponsive_counts_from_the_query_after_an_idle_spell() {
    let Some(sc) = scenario("unresponsive_after_idle", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    client_retries2_6(net);
    let _server = sc.server(&["echo"]);
    let unresponsive_after = Duration::from_secs(3);
    let agent = sc
        .launch()
        .args(&["--unresponsive-after", "3s"])
        .start()
        .expect("agent");
    let idle = Duration::from_secs(8);
    let client = sc.client(&["idle-then-send", &idle.as_secs().to_string()]);
    net.server.drop_input().expect("iptables DROP");
    let line = client.next_line(idle + agent.scans(SCANS_TO_SHOW));
    assert_eq!(line.as_deref(), Some("sent"), "the query");
    let inode = net.client.inode();
    let clock = ("since_retrans_start_seconds", unresponsive_after);
    let (c, gives_up) = time_the_reset(net, &agent, inode, clock);
    assert_eq!(c["pid"].as_u64(), Some(u64::from(client.pid())), "{c}");
    let since_peer = c["since_peer_seconds"].as_f64().expect("since_peer");
    assert!(
        since_peer > idle.as_secs_f64(),
        "the peer's last ACK precedes the idle spell: {c}"
    );
    assert!(gives_up < 25.4, "tcp_retries2=6: {gives_up}");
    let outcome = client.next_line(agent.scans(SCANS_TO_SHOW));
    assert_eq!(
        outcome.as_deref(),
        Some("error ETIMEDOUT"),
        "the client's recv()"
    );
}

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
