//! Medians, spreads and a least-squares slope: every number in the table is a median over
//! repetitions, shown with its spread (min–max).

/// "met" when the median of `ratios` reaches `target` (a throughput ratio's floor), else
/// "missed".
pub(super) fn met_by_median(ratios: &[f64], target: f64) -> String {
    if median(ratios) >= target {
        "met"
    } else {
        "missed"
    }
    .to_owned()
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}

pub(super) fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// `median [min–max]` with `decimals` digits.
pub(super) fn summary(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "n/a".into();
    }
    let (lo, hi) = min_max(values);
    format!(
        "{:.d$} [{:.d$}–{:.d$}]",
        median(values),
        lo,
        hi,
        d = decimals
    )
}

/// Least squares `y = slope * x + intercept`, and r².
pub(super) fn fit(xs: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    (slope, my - slope * mx, r2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::float_cmp,
        reason = "medians of small integers are exact in f64: the middle value or a half"
    )]
    fn median_and_fit() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let (slope, intercept, r2) = fit(&[1.0, 2.0, 3.0], &[3.0, 5.0, 7.0]);
        assert!((slope - 2.0).abs() < 1e-9 && (intercept - 1.0).abs() < 1e-9 && r2 > 0.999);
    }

    #[test]
    fn a_target_is_met_by_the_median_not_by_one_repetition() {
        assert_eq!(met_by_median(&[0.94, 0.96, 0.97], 0.95), "met");
        assert_eq!(met_by_median(&[0.90, 0.94, 1.20], 0.95), "missed");
        assert_eq!(
            met_by_median(&[0.95], 0.95),
            "met",
            "a median at the target meets it"
        );
    }
}
