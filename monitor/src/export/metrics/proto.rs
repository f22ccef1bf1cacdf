//! Small builders for the `prometheus::proto` types, so the collector reads as a list of metrics.
//!
//! The collector builds families from scratch on every scrape (rather than keeping live
//! `GaugeVec`s) so a state or errno that disappears from the snapshot cannot leave a stale series.

use prometheus::{
    Opts,
    proto::{self, LabelPair, MetricFamily, MetricType},
};

use crate::{
    model::metric_families::{Family, Kind},
    scan::summary::{IDLE_BUCKETS, IdleHistogram},
};

/// The prometheus forms of a catalogue [`Family`].
pub(crate) trait FamilyExt {
    /// A family of this spec holding `metrics` (whose labels must match its label names).
    fn family(&self, metrics: Vec<proto::Metric>) -> MetricFamily;
    /// Name and help, for the live counters and gauges (`IntCounter::with_opts`, …).
    fn opts(&self) -> Opts;
}

impl FamilyExt for Family {
    fn family(&self, metrics: Vec<proto::Metric>) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_owned());
        family.set_help(self.help.to_owned());
        family.set_field_type(metric_type(self.kind));
        family.set_metric(metrics);
        family
    }

    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }
}

/// The protobuf type of a [`Kind`].
pub(crate) fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    }
}

fn with_labels(labels: &[(&str, &str)]) -> proto::Metric {
    let pairs = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect();
    let mut metric = proto::Metric::default();
    metric.set_label(pairs);
    metric
}

pub(super) fn gauge(labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut gauge = proto::Gauge::default();
    gauge.set_value(value);
    let mut metric = with_labels(labels);
    metric.set_gauge(gauge);
    metric
}

pub(super) fn counter(labels: &[(&str, &str)], value: u64) -> proto::Metric {
    // Loses precision only past 2^53 events, which a TCP counter will not reach.
    float_counter(labels, value as f64)
}

/// A counter of a continuous quantity (seconds).
pub(super) fn float_counter(labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut counter = proto::Counter::default();
    counter.set_value(value);
    let mut metric = with_labels(labels);
    metric.set_counter(counter);
    metric
}

pub(super) fn histogram_metric(
    labels: &[(&str, &str)],
    histogram: proto::Histogram,
) -> proto::Metric {
    let mut metric = with_labels(labels);
    metric.set_histogram(histogram);
    metric
}

/// Builds a histogram from raw samples: one cumulative bucket per upper bound in `bounds`
/// (ascending, without +Inf: the text encoder adds it from `sample_count`).
pub fn histogram(samples: impl IntoIterator<Item = f64>, bounds: &[f64]) -> proto::Histogram {
    let mut per_bucket = vec![0u64; bounds.len()];
    let (mut count, mut sum) = (0u64, 0.0f64);
    for sample in samples {
        count += 1;
        sum += sample;
        // Prometheus buckets are inclusive upper bounds (`le`).
        if let Some(i) = bounds.iter().position(|&bound| sample <= bound) {
            per_bucket[i] += 1;
        }
    }
    from_counts(bounds, &per_bucket, count, sum)
}

/// The `tcp_liveness_idle_seconds` histogram of one state, from the scan's bucket counts.
pub(super) fn idle_histogram(data: &IdleHistogram) -> proto::Histogram {
    from_counts(&IDLE_BUCKETS, &data.per_bucket, data.count, data.sum)
}

/// A histogram from per-bucket (not cumulative) counts, one per bound.
fn from_counts(bounds: &[f64], per_bucket: &[u64], count: u64, sum: f64) -> proto::Histogram {
    let mut cumulative = 0;
    let buckets = bounds
        .iter()
        .zip(per_bucket)
        .map(|(&bound, &n)| {
            cumulative += n;
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(bound);
            bucket.set_cumulative_count(cumulative);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_sample_count(count);
    histogram.set_sample_sum(sum);
    histogram.set_bucket(buckets);
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(h: &proto::Histogram) -> Vec<u64> {
        h.get_bucket()
            .iter()
            .map(prometheus::proto::Bucket::cumulative_count)
            .collect()
    }

    #[test]
    fn histogram_is_cumulative_with_inclusive_bounds() {
        let h = histogram([0.05, 0.1, 0.7, 3.0, 99.0], &[0.1, 1.0, 5.0]);
        assert_eq!(counts(&h), [2, 3, 4]);
        assert_eq!(h.get_sample_count(), 5);
        assert!((h.get_sample_sum() - 102.85).abs() < 1e-9);
        let bounds: Vec<f64> = h
            .get_bucket()
            .iter()
            .map(prometheus::proto::Bucket::upper_bound)
            .collect();
        assert_eq!(bounds, [0.1, 1.0, 5.0]);
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "no samples sum to exactly 0.0")]
    fn empty_histogram_has_zero_buckets() {
        let h = histogram([], &[1.0, 2.0]);
        assert_eq!(counts(&h), [0, 0]);
        assert_eq!(h.get_sample_count(), 0);
        assert_eq!(h.get_sample_sum(), 0.0);
    }
}
