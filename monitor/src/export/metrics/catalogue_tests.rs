//! The catalogue ([`FAMILIES`]) against what the agent registers: every `tcp_liveness_*` family
//! the registry gathers is in it with the same type, help and label names, and every family in
//! it is defined by someone (gathered, or described by the snapshot collector).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use prometheus::{core::Collector as _, proto::LabelPair};

use super::{Metrics, ReloadMetrics, SnapshotCollector, proto::metric_type};
use crate::{
    act::{
        probe::{ProbeBook, ProbeSettings},
        remediate::{RemediationCounters, policy::RemediatePolicy},
    },
    alerting::{Alerting, HttpConfig},
    export::{SnapshotStore, http::server_metrics::ServerMetrics},
    model::{
        Reason,
        metric_families::{FAMILIES, Family},
    },
    verdict::Matcher,
};

/// A registry holding every metric the agent can register: the scan loop's, the reload's, the
/// HTTP server's, the Alertmanager push counters, the probe and remediation counters (each
/// with what makes its series exist: an Alertmanager URL, a `[[remediate]]` policy).
fn full_registry() -> (Metrics, Alerting) {
    let metrics = Metrics::new(Arc::new(SnapshotStore::new()), "0");
    let _reload = ReloadMetrics::register(&metrics);
    ServerMetrics::register(metrics.registry()).expect("server metrics");
    // Port 9 (discard): the sender thread only connects when a scan is pushed, never here.
    let alerting = Alerting::new(
        1,
        Some("http://127.0.0.1:9"),
        &HttpConfig::default(),
        Duration::from_secs(5),
    )
    .expect("alerting");
    alerting
        .register_metrics(metrics.registry())
        .expect("push counters");
    let book = ProbeBook::new(ProbeSettings::default(), None);
    metrics
        .registry()
        .register(Box::new(book.probes_total().clone()))
        .expect("probe counters");
    let policy = RemediatePolicy {
        number: 1,
        reason: Reason::PeerDead,
        matcher: Matcher::default(),
        min_age: Duration::ZERO,
        dry_run: true,
        max_per_minute: 1,
        min_retransmits: 1,
    };
    RemediationCounters::new(&[policy])
        .register(metrics.registry())
        .expect("remediation counters");
    (metrics, alerting)
}

fn in_catalogue(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is registered but not in model::metric_families"))
}

fn sorted(labels: &[&str]) -> Vec<String> {
    let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    labels.sort();
    labels
}

#[test]
fn every_registered_family_is_in_the_catalogue_as_written_there() {
    let (metrics, _alerting) = full_registry();
    let mut defined = BTreeSet::new();
    for gathered in metrics.registry().gather() {
        let name = gathered.name();
        if !name.starts_with("tcp_liveness_") {
            continue;
        }
        let family = in_catalogue(name);
        assert_eq!(gathered.help(), family.help, "{name}");
        assert_eq!(
            gathered.get_field_type(),
            metric_type(family.kind),
            "{name}"
        );
        for metric in gathered.get_metric() {
            let labels: Vec<&str> = metric.get_label().iter().map(LabelPair::name).collect();
            assert_eq!(sorted(&labels), sorted(family.labels), "{name}");
        }
        defined.insert(name.to_owned());
    }
    let collector = SnapshotCollector::new(Arc::new(SnapshotStore::new()), "0").unwrap();
    for desc in collector.desc() {
        let family = in_catalogue(&desc.fq_name);
        assert_eq!(desc.help, family.help, "{}", family.name);
        assert_eq!(desc.variable_labels, family.labels, "{}", family.name);
        defined.insert(desc.fq_name.clone());
    }
    let catalogue: BTreeSet<String> = FAMILIES.iter().map(|f| f.name.to_owned()).collect();
    assert_eq!(defined, catalogue, "families nobody defines");
}
