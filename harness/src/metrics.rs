//! Reading a Prometheus text exposition (the agent's `/metrics`): the value of one series, or a
//! metric summed over its label sets.

/// `(series, value)` of every sample line, where `series` is the metric name with its
/// `{labels}` exactly as rendered (e.g. `tcp_liveness_connections{state="listen"}`). Comment
/// lines and values that are not numbers are left out.
pub fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.trim().parse().ok()?))
        })
}

/// The value of the sample whose series is exactly `series`; None when there is none.
#[must_use]
pub fn value(text: &str, series: &str) -> Option<f64> {
    samples(text).find_map(|(name, value)| (name == series).then_some(value))
}

/// `series` summed: one series as rendered, or, for a bare metric name, every label set of it.
/// 0 when nothing matches.
#[must_use]
pub fn sum(text: &str, series: &str) -> f64 {
    let bare = !series.contains('{');
    samples(text)
        .filter(|(name, _)| *name == series || (bare && name.split('{').next() == Some(series)))
        .map(|(_, value)| value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP tcp_liveness_connections Connections by state.\n\
# TYPE tcp_liveness_connections gauge\n\
tcp_liveness_connections{state=\"established\"} 10\n\
tcp_liveness_connections{state=\"listen\"} 2\n\
tcp_liveness_tracked_sockets 12\n\
tcp_liveness_scan_duration_seconds_sum 0.25\n";

    #[test]
    #[expect(
        clippy::float_cmp,
        reason = "the values are small integers parsed from text and summed, exact in f64"
    )]
    fn reads_one_series_or_a_sum_over_labels() {
        assert_eq!(
            value(TEXT, "tcp_liveness_connections{state=\"listen\"}"),
            Some(2.0)
        );
        assert_eq!(value(TEXT, "tcp_liveness_tracked_sockets"), Some(12.0));
        assert_eq!(value(TEXT, "tcp_liveness_connections"), None);
        assert_eq!(value(TEXT, "tcp_liveness_tracked"), None);
        assert_eq!(sum(TEXT, "tcp_liveness_connections"), 12.0);
        assert_eq!(
            sum(TEXT, "tcp_liveness_connections{state=\"established\"}"),
            10.0
        );
        assert_eq!(sum(TEXT, "tcp_liveness_scan_duration_seconds"), 0.0);
        assert_eq!(sum(TEXT, "absent"), 0.0);
    }
}
