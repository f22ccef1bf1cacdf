//! The idle gauge against the kernel: `tcp_liveness_idle_connections` counts a connection once
//! the kernel's own times say it has been idle longer than the `idle_after` it is judged with
//! (`[[override]]`s applied), and not a busy one on the same port nor an idle one judged by the
//! longer default; `tcp_liveness_threshold_seconds` shows the configured defaults.

use std::time::Duration;

use harness::{privilege::Need, scenario::SERVICE_PORT, ss};

use crate::{common::scenario, enforce::agent_with};

/// `idle_after` for the service port's (server side) sockets; every other socket keeps
/// [`DEFAULT_IDLE_AFTER`].
const SERVICE_IDLE_AFTER: Duration = Duration::from_secs(2);
const DEFAULT_IDLE_AFTER: Duration = Duration::from_hours(1);

const ESTABLISHED: &str = "tcp_liveness_idle_connections{state=\"established\"}";

#[test]
fn the_idle_gauge_counts_each_connection_by_its_own_idle_after() {
    let Some(sc) = scenario("idle_metrics", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let _server = sc.server(&["echo"]);
    let config = format!(
        "idle_after = \"{}s\"\n[[override]]\nlocal_port = {SERVICE_PORT}\nidle_after = \"{}s\"\n",
        DEFAULT_IDLE_AFTER.as_secs(),
        SERVICE_IDLE_AFTER.as_secs()
    );
    let (agent, _dir) = agent_with(&sc, &config);
    agent.wait_scans(1);
    // Sockets elsewhere on the host idle for over an hour, counted before ours exist.
    let before = agent
        .metric(ESTABLISHED)
        .expect("the gauge, every state present");
    let _busy = sc.client(&["busy"]);
    let _idle = sc.client(&["idle"]);
    let service = format!("{}:{SERVICE_PORT}", net.server_ip);
    let server_ns = net.server.inode();
    let past = SERVICE_IDLE_AFTER.as_secs_f64();
    agent.wait_connections(server_ns, 1, "idle service-side connection", |c| {
        c["state"] == "established"
            && c["local"] == service.as_str()
            && c["idle_seconds"].as_f64().is_some_and(|s| s > past)
    });
    // /connections reads the table live; the gauge is the next scan's.
    agent.wait_scans(2);
    let counted = agent.metric(ESTABLISHED).expect("the gauge");
    // The kernel's view of the service side: one socket idle past its threshold (no data
    // either way and no ACK for longer), the other busy.
    let kernel = ss::sockets(&net.server).expect("ss");
    let idle = |s: &ss::SsSocket| {
        ["lastsnd", "lastrcv", "lastack"]
            .iter()
            .map(|k| s.ms(k).unwrap_or(0.0))
            .fold(f64::INFINITY, f64::min)
    };
    let service_side: Vec<f64> = kernel
        .iter()
        .filter(|s| s.state == "established" && s.local == service)
        .map(idle)
        .collect();
    let threshold = SERVICE_IDLE_AFTER.as_secs_f64();
    assert_eq!(service_side.len(), 2, "ss: {kernel:?}");
    assert_eq!(
        service_side
            .iter()
            .filter(|&&idle| idle > threshold)
            .count(),
        1,
        "the kernel sees one idle and one busy service-side socket: {service_side:?}"
    );
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a gauge of socket counts: whole numbers"
    )]
    let added = (counted - before) as i64;
    assert_eq!(
        added, 1,
        "only the idle service-side socket: not the busy one, nor the idle client side judged by \
         {DEFAULT_IDLE_AFTER:?}"
    );
    let idle_after = agent.metric("tcp_liveness_threshold_seconds{threshold=\"idle_after\"}");
    assert_eq!(
        idle_after.map(f64::round),
        Some(DEFAULT_IDLE_AFTER.as_secs_f64())
    );
}
