//! Time to descriptor exhaustion, end to end: a server with a soft open-file limit of 300 leaks 4
//! sockets a second into `CLOSE_WAIT` until `accept()` fails with `EMFILE` (the server says when:
//! the oracle). The forecast the agent publishes when the server holds half its limit must land
//! within ±25% of the real time left, and `TcpLivenessFdExhaustionPredicted` must fire before
//! `EMFILE`.

use std::time::{Duration, Instant};

use harness::privilege::Need;
use serde_json::Value;

use crate::common::scenario;

/// The leaking server's soft `RLIMIT_NOFILE`, and the clients' connect-and-close rate.
const LIMIT: u64 = 300;
const PER_SECOND: u64 = 4;

/// The server's entry in `/alerts` `fd_exhaustion`, if it is alerted on.
fn alert_for(agent: &harness::agent::Agent, pid: u32) -> Option<Value> {
    let alerts: Value = serde_json::from_str(&agent.get("/alerts")).expect("/alerts is JSON");
    let list = alerts["fd_exhaustion"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .find(|a| a["pid"].as_u64() == Some(u64::from(pid)))
}

#[test]
fn forecast_at_half_the_limit_lands_near_emfile_and_alerts_before_it() {
    let Some(sc) = scenario("fd_forecast", Need::RootAndKernelBtf) else {
        return;
    };
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "1s"])
        .start()
        .expect("agent");
    let (limit, rate) = (LIMIT.to_string(), PER_SECOND.to_string());
    let server = sc.server(&["leak-emfile", &limit]);
    let _clients = sc.client(&["churn-rate", &rate]);
    let started = Instant::now();
    // EMFILE comes after LIMIT / PER_SECOND seconds at the latest; then a few scans of slack.
    let deadline =
        started + Duration::from_secs(LIMIT / PER_SECOND) + agent.after(Duration::from_secs(1)) * 4;
    let mut first_alert = None;
    let mut at_half: Option<(Instant, f64, Value)> = None;
    // One look per scan until the server reports EMFILE.
    let emfile = loop {
        assert!(
            Instant::now() < deadline,
            "the server never ran out of descriptors"
        );
        if let Some(line) = server.next_line(agent.scan_interval()) {
            assert!(line.starts_with("emfile"), "{line}");
            break Instant::now();
        }
        let Some(alert) = alert_for(&agent, server.pid()) else {
            continue;
        };
        let now = Instant::now();
        first_alert.get_or_insert(now);
        let open = alert["open_fds"].as_u64().expect("open_fds");
        if at_half.is_none() && open >= LIMIT / 2 {
            let eta = alert["exhaustion_seconds"]
                .as_f64()
                .expect("exhaustion_seconds");
            at_half = Some((now, eta, alert));
        }
    };
    let first_alert = first_alert.expect("TcpLivenessFdExhaustionPredicted never fired");
    assert!(first_alert < emfile, "the alert fired before EMFILE");
    let (seen, predicted, alert) = at_half.expect("a forecast at half the limit");
    assert_eq!(alert["max_fds"].as_u64(), Some(LIMIT), "{alert}");
    let actual = (emfile - seen).as_secs_f64();
    // The "emfile" line is read as soon as it is printed (the wait above wakes on it).
    assert!(
        (predicted - actual).abs() <= actual * 0.25,
        "forecast {predicted:.1}s at half the limit, EMFILE after {actual:.1}s: {alert}"
    );
    eprintln!(
        "alert {:.1}s before EMFILE; at half the limit: forecast {predicted:.1}s, actual {actual:.1}s",
        (emfile - first_alert).as_secs_f64()
    );
}
