//! [`ExhaustionAlert`]s as Alertmanager alerts, one per process: labels name the process
//! (`alertname`, `owner`, `pid`, `instance`, `severity`), annotations carry its descriptors, its
//! limit and the growth rates, which change between resends. Pure, like the groups' push state.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use super::{ALERT_NAME, ExhaustionAlert};
use crate::alerting::alertmanager::{PostableAlert, lifecycle::Lifecycle, rfc3339};

/// What to do, in every alert's `description`.
const REMEDY: &str = "The process will fail with EMFILE (accept() and open() refused) when its \
    descriptors reach its open-file soft limit. Usually leaked CLOSE_WAIT sockets: fix the \
    missing close() after a read returns 0; a restart or a higher LimitNOFILE buys time.";

/// Firing process alerts (re-sent every scan) and resolved ones not yet delivered, by
/// (owner, pid).
#[derive(Debug, Default)]
pub(in crate::alerting) struct ExhaustionPushState {
    processes: Lifecycle<(String, u32), ExhaustionAlert>,
}

impl ExhaustionPushState {
    /// The alerts to send for the current `alerts`: every firing one with `endsAt = now +
    /// hold`, and every one that disappeared with `endsAt = now` until
    /// [`delivered`](Self::delivered).
    pub(in crate::alerting) fn alerts(
        &mut self,
        alerts: Vec<ExhaustionAlert>,
        now: SystemTime,
        hold: Duration,
        instance: &str,
    ) -> Vec<PostableAlert> {
        let current = alerts.into_iter().map(|a| ((a.owner.clone(), a.pid), a));
        self.processes.update(current, now, |_, _| {});
        let mut out = build(&self.processes.firing(), now + hold, instance);
        out.extend(build(&self.processes.resolved(), now, instance));
        out
    }

    /// The last batch reached Alertmanager: resolved alerts need not be sent again.
    pub(in crate::alerting) fn delivered(&mut self) {
        self.processes.delivered();
    }
}

/// The alerts for `alerts`, each `(alert, when it started firing)`, all ending at `ends_at`.
fn build(
    alerts: &[(&ExhaustionAlert, SystemTime)],
    ends_at: SystemTime,
    instance: &str,
) -> Vec<PostableAlert> {
    alerts
        .iter()
        .map(|&(a, started)| PostableAlert {
            labels: BTreeMap::from([
                ("alertname".to_owned(), ALERT_NAME.to_owned()),
                ("owner".to_owned(), a.owner.clone()),
                ("pid".to_owned(), a.pid.to_string()),
                ("instance".to_owned(), instance.to_owned()),
                ("severity".to_owned(), "warning".to_owned()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_owned(), a.summary()),
                ("description".to_owned(), REMEDY.to_owned()),
                ("open_fds".to_owned(), a.open_fds.to_string()),
                ("max_fds".to_owned(), a.max_fds.to_string()),
                (
                    "fds_per_second".to_owned(),
                    format!("{:.3}", a.fds_per_second),
                ),
                (
                    "leaked_per_second".to_owned(),
                    a.leaked_per_second
                        .map_or_else(|| "unknown".to_owned(), |r| format!("{r:.3}")),
                ),
            ]),
            starts_at: rfc3339(started),
            // A start after the end is rejected by Alertmanager.
            ends_at: rfc3339(ends_at.max(started)),
            generator_url: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(pid: u32) -> ExhaustionAlert {
        ExhaustionAlert {
            owner: "leaky".into(),
            pid,
            open_fds: 150,
            max_fds: 300,
            fds_per_second: 4.0,
            leaked_per_second: Some(4.0),
            suspects: 140,
            exhaustion_seconds: 37.5,
        }
    }

    #[test]
    fn fires_with_the_process_rate_and_limit_then_resolves_until_delivered() {
        let mut state = ExhaustionPushState::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let hold = Duration::from_mins(1);
        let sent = state.alerts(vec![alert(7)], now, hold, "web1");
        assert_eq!(sent.len(), 1);
        let a = &sent[0];
        assert_eq!(a.labels["alertname"], ALERT_NAME);
        assert_eq!(
            (a.labels["owner"].as_str(), a.labels["pid"].as_str()),
            ("leaky", "7")
        );
        assert_eq!(a.annotations["max_fds"], "300");
        assert_eq!(a.annotations["fds_per_second"], "4.000");
        assert_eq!(a.ends_at, rfc3339(now + hold));
        let later = now + Duration::from_secs(5);
        let cleared = state.alerts(vec![], later, hold, "web1");
        assert_eq!(cleared.len(), 1);
        assert_eq!(
            cleared[0].starts_at,
            rfc3339(now),
            "started when first sent"
        );
        assert_eq!(cleared[0].ends_at, rfc3339(later), "resolved now");
        state.delivered();
        assert!(state.alerts(vec![], later, hold, "web1").is_empty());
    }
}
