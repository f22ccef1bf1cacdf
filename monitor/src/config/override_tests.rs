//! `[[override]]` entries applied to connections, in the file's order.

use super::{
    tests::{resolve, secs},
    *,
};
use crate::{
    model::Connection,
    verdict::{Matcher, Override},
};

fn conn(local_port: u16, remote_port: u16, comm: &str) -> Connection {
    let mut c = Connection::new(
        1,
        1,
        format!("10.0.0.1:{local_port}").parse().unwrap(),
        format!("10.0.0.2:{remote_port}").parse().unwrap(),
    );
    c.comm = Some(comm.into());
    c
}

#[test]
fn policy_applies_overrides_in_file_order() {
    let c = resolve(
        &RunArgs::default(),
        r#"
        idle_after = "1h"
        [[override]]
        local_port = 8080
        idle_after = "2h"
        close_wait_after = "5m"
        [[override]]
        local_port = 8080
        process = "nginx"
        idle_after = "3h"
        [[ignore]]
        process = "sshd"
        [[ignore]]
        remote_port = 22
        "#,
    )
    .unwrap();
    let policy = &c.policy;
    assert_eq!(
        policy.overrides[1],
        Override {
            matcher: Matcher {
                local_port: Some(8080),
                process: Some("nginx".into()),
                ..Matcher::default()
            },
            idle_after: Some(secs(3 * 3600)),
            ..Override::default()
        }
    );
    let nginx = policy.thresholds_for(&conn(8080, 40000, "nginx"));
    assert_eq!(nginx.idle_after, secs(3 * 3600), "the later override wins");
    assert_eq!(
        nginx.close_wait_after,
        secs(300),
        "fields it does not set stay from the earlier"
    );
    let other = policy.thresholds_for(&conn(8080, 40000, "envoy"));
    assert_eq!(other.idle_after, secs(2 * 3600));
    let elsewhere = policy.thresholds_for(&conn(9000, 40000, "nginx"));
    assert_eq!(elsewhere.idle_after, secs(3600), "the file's default");
    assert_eq!(elsewhere.fin_wait2_after, secs(120), "the built-in default");
    assert!(policy.ignored(&conn(22, 5000, "sshd")));
    assert!(policy.ignored(&conn(5000, 22, "ssh")));
    assert!(!policy.ignored(&conn(22, 5000, "nginx")));
}
