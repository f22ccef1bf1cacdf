//! Alert groups as Alertmanager API v2 alerts (`POST /api/v2/alerts`). Pure: what to send, and
//! which groups were already sent; [`super::client`] does the sending.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use self::lifecycle::Lifecycle;
use super::{
    AlertGroup,
    groups::{GroupKey, paths},
};
use crate::model::{
    LocalPort,
    format::{counted, human_age},
    labels,
};

/// One element of the `POST /api/v2/alerts` body (Alertmanager's `postableAlert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339. In the future while firing (Alertmanager resolves it by itself if we stop
    /// resending), now once resolved.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// "3 connections of redis-server on port 6379 stuck in `CLOSE_WAIT`, oldest 5m00s"; a folded
/// group says what it folds: "2990 connections of app on 2990 more ports …", "40 connections in
/// 35 more groups (past `max_alert_groups`) …".
pub(super) fn summary(group: &AlertGroup) -> String {
    let connections = counted(group.count, "connection");
    let more = |what| counted(group.folded_groups, &format!("more {what}"));
    let whose = match (group.local_port, group.owner.as_str()) {
        (LocalPort::Service(port), owner) => format!("of {owner} on port {port}"),
        (LocalPort::Outbound, owner) => format!("of {owner} {}", labels::OUTBOUND),
        (LocalPort::Other, labels::OTHER) => {
            format!("in {} (past max_alert_groups)", more("group"))
        }
        (LocalPort::Other, owner) => format!("of {owner} on {} (past top_ports)", more("port")),
    };
    let mut text = format!("{connections} {whose} {}", group.reason.symptom());
    if group.oldest_seconds.is_some() {
        text.push_str(", oldest ");
        text.push_str(&human_age(group.oldest_seconds));
    }
    text
}

/// What `[[remediate]]` policies did to the group's connections while it fired (`destroyed 1,
/// rate_limited 2 ([[remediate]])`); None when nothing.
pub(super) fn remediation(group: &AlertGroup) -> Option<String> {
    if group.remediations.is_empty() {
        return None;
    }
    let done: Vec<String> = group
        .remediations
        .iter()
        .map(|(result, n)| format!("{result} {n}"))
        .collect();
    Some(format!("{} ([[remediate]])", done.join(", ")))
}

pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The alerts for `groups`, each `(group, when it started firing)`, all ending at `ends_at`.
/// Labels identify the group (Alertmanager fingerprints alerts by their labels), so counts and
/// ages go in the annotations, which may change between resends.
pub(super) fn build_alerts(
    groups: &[(&AlertGroup, SystemTime)],
    ends_at: SystemTime,
    instance: &str,
) -> Vec<PostableAlert> {
    groups
        .iter()
        .map(|(group, starts_at)| {
            let labels = [
                ("alertname", Some(group.reason.alert_name().to_owned())),
                ("reason", Some(group.reason.as_str().to_owned())),
                ("owner", Some(group.owner.clone())),
                ("local_port", Some(group.local_port.label())),
                ("instance", Some(instance.to_owned())),
                ("severity", Some(group.reason.severity().to_owned())),
            ];
            // The pod's labels when the group's connections are all in one (with
            // `group_by = "pod"` they always are, the owner being the pod).
            let pod = group.kubernetes.as_ref();
            let pod_labels = [
                ("pod", pod.and_then(|p| p.pod.clone())),
                ("namespace", pod.and_then(|p| p.namespace.clone())),
                ("container", pod.and_then(|p| p.container.clone())),
            ];
            let annotations = [
                ("summary", Some(summary(group))),
                ("description", Some(group.reason.remedy().to_owned())),
                ("remediation", remediation(group)),
                ("call_paths", paths::annotation(&group.opening_paths)),
            ];
            PostableAlert {
                labels: labels
                    .into_iter()
                    .chain(pod_labels)
                    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                    .collect(),
                annotations: annotations
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                    .collect(),
                starts_at: rfc3339(*starts_at),
                // A start after the end is rejected by Alertmanager; clamp in case the clock
                // stepped back between scans.
                ends_at: rfc3339(ends_at.max(*starts_at)),
                generator_url: None,
            }
        })
        .collect()
}

/// What has been sent: firing groups (re-sent every scan) and resolved ones not yet delivered.
#[derive(Debug, Default)]
pub(super) struct PushState {
    groups: Lifecycle<GroupKey, AlertGroup>,
}

impl PushState {
    /// The alerts to send for the current `groups`: every firing group with
    /// `endsAt = now + hold`, and every group that disappeared with `endsAt = now`. Resolved
    /// alerts are repeated until [`delivered`](Self::delivered), so a failed POST does not leave
    /// an alert firing until it expires.
    pub(super) fn alerts(
        &mut self,
        groups: Vec<AlertGroup>,
        now: SystemTime,
        hold: Duration,
        instance: &str,
    ) -> Vec<PostableAlert> {
        let current = groups.into_iter().map(|g| (g.key(), g));
        // Each action is reported once: the alert sums them while it fires.
        self.groups.update(current, now, |group, previous| {
            for (result, n) in previous.remediations {
                *group.remediations.entry(result).or_default() += n;
            }
        });
        let mut alerts = build_alerts(&self.groups.firing(), now + hold, instance);
        alerts.extend(build_alerts(&self.groups.resolved(), now, instance));
        alerts
    }

    /// The last batch reached Alertmanager: resolved groups need not be sent again.
    pub(super) fn delivered(&mut self) {
        self.groups.delivered();
    }

    /// Groups currently firing (tests).
    #[cfg(test)]
    pub(super) fn firing(&self) -> usize {
        self.groups.firing().len()
    }
}

pub(super) mod lifecycle;
#[cfg(test)]
mod tests;
