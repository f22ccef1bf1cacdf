use super::*;
use crate::model::Reason;

fn group(reason: Reason, owner: &str, port: u16, count: usize, oldest: f64) -> AlertGroup {
    AlertGroup {
        reason,
        owner: owner.into(),
        local_port: Some(port),
        count,
        oldest_seconds: Some(oldest),
        pids: vec![1],
        samples: Vec::new(),
        remedy: reason.remedy().into(),
    }
}

#[test]
fn report_lines() {
    assert_eq!(report(&[]), "OK: no suspect connections\n");
    let out = report(&[
        group(Reason::CloseWaitStuck, "redis-server", 6379, 3, 300.0),
        group(Reason::IdleNoKeepalive, "java", 8080, 1, 7200.0),
    ]);
    let expected = format!(
        "WARNING: 4 suspect connections in 2 groups\n\
         close_wait_stuck   redis-server  port 6379  3 connections  oldest 5m00s  {}\n\
         idle_no_keepalive  java          port 8080  1 connection   oldest 2h00m  {}\n",
        Reason::CloseWaitStuck.remedy(),
        Reason::IdleNoKeepalive.remedy(),
    );
    assert_eq!(out, expected);
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
    };
    let err = ask(&args).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot reach the agent"),
        "{err:#}"
    );
    assert_eq!(run(&args), UNKNOWN);
}
