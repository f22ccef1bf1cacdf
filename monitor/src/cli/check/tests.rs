use super::*;
use crate::model::{LocalPort, Reason};

#[test]
fn report_lines() {
    assert_eq!(report(&[]), "OK: no suspect connections\n");
    let mut leak = AlertGroup::example(Reason::CloseWaitStuck, "redis-server", 6379, 3, 300.0);
    let mut sample = crate::model::ConnectionView::from(&crate::model::Connection::new(
        7,
        monitor_common::tcp_state::CLOSE_WAIT,
        "10.0.0.1:6379".parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    ));
    sample.suspect = vec!["close_wait_stuck".into()];
    sample.why = vec!["CLOSE_WAIT 5m00s > close_wait_after 1m00s".into()];
    leak.samples = vec![sample];
    let out = report(&[
        leak,
        AlertGroup::example(Reason::IdleNoKeepalive, "java", 8080, 1, 7200.0),
    ]);
    let expected = format!(
        "WARNING: 4 suspect connections in 2 groups\n\
         close_wait_stuck   redis-server  port 6379  3 connections  oldest 5m00s\n    \
         oldest: CLOSE_WAIT 5m00s > close_wait_after 1m00s\n    \
         fix: {}\n\
         idle_no_keepalive  java          port 8080  1 connection   oldest 2h00m\n    \
         fix: {}\n",
        Reason::CloseWaitStuck.remedy(),
        Reason::IdleNoKeepalive.remedy(),
    );
    assert_eq!(out, expected);
}

/// Every remedy fits the width on its indented line(s), the longest wrapped.
#[test]
fn every_line_fits_the_width() {
    let groups: Vec<AlertGroup> = Reason::ALL
        .into_iter()
        .map(|r| AlertGroup::example(r, "redis-server", 6379, 12_000, 86_400.0 * 3.0))
        .collect();
    for line in report(&groups).lines() {
        assert!(line.chars().count() <= crate::cli::table::WIDTH, "{line:?}");
    }
}

#[test]
fn unreachable_agent_is_unknown() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = CheckArgs {
        agent: format!("http://127.0.0.1:{port}"),
        json: false,
        stack: false,
    };
    let err = ask(&args).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot reach the agent"),
        "{err:#}"
    );
    assert_eq!(run(&args), UNKNOWN);
}

#[test]
fn crafted_owners_are_escaped_and_folded_groups_say_what_they_fold() {
    let mut crafted =
        AlertGroup::example(Reason::CloseWaitStuck, "x\u{1b}]0;pwned\u{7}\r", 80, 1, 1.0);
    let mut folded = AlertGroup::example(Reason::CloseWaitStuck, "leaky", 80, 2990, 1.0);
    folded.local_port = LocalPort::Other;
    folded.folded_groups = 2990;
    let mut rest = AlertGroup::example(Reason::IdleNoKeepalive, "other", 80, 5, 1.0);
    rest.local_port = LocalPort::Other;
    rest.folded_groups = 4;
    crafted.pids.clear();
    let out = report(&[folded, rest, crafted]);
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("x\\x1b]0;pwned\\x07\\x0d"), "{out}");
    assert!(out.contains("  2990 more ports  2990 connections"), "{out}");
    assert!(out.contains("  4 more groups    5 connections"), "{out}");
}
