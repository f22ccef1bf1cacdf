//! Time to descriptor exhaustion, per process holding suspect sockets: a process that leaks
//! `CLOSE_WAIT` sockets fails when it reaches its soft `RLIMIT_NOFILE` (`accept()` and `open()`
//! return `EMFILE`). Each scan reads, for the processes with the most suspects only, how many
//! descriptors they hold and their limit ([`procfs`]); the growth rate over a sliding window
//! (least squares) says when the limit will be reached.
//!
//! Everything here but [`procfs`] is pure: readings with a clock value in, forecasts out.

pub mod procfs;

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use crate::model::{Connection, Grouping, Owner};

/// How far back the growth rate looks: long enough to smooth a leak that comes in bursts,
/// short enough to follow a leak that speeds up.
pub const WINDOW: Duration = Duration::from_mins(5);

/// A rate needs this many readings of a process…
const MIN_SAMPLES: usize = 3;
/// …spread over at least this long: a few scans 250 ms apart see a leak of 4 sockets a second
/// as steps of 0 or 8 a second.
const MIN_SPAN: Duration = Duration::from_secs(10);

/// What `/proc` says about one process's descriptors at one scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptors {
    /// Descriptors the process has open: the entries of `/proc/PID/fd`.
    pub open: u64,
    /// The soft limit, "Max open files" in `/proc/PID/limits`; None when unlimited.
    pub max: Option<u64>,
}

/// One process chosen for a forecast: it holds suspect sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub pid: u32,
    /// The `owner` label of its connections under the scan's [`Grouping`].
    pub owner: String,
    /// Its suspect connections at this scan.
    pub suspects: u64,
}

/// The forecast for one process at one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessForecast {
    pub pid: u32,
    /// The `owner` label (process name, cgroup or pod per `group_by`).
    pub owner: String,
    /// Its suspect connections at this scan (leaked sockets, for a `CLOSE_WAIT` leak).
    pub suspects: u64,
    /// Descriptors in use and the soft limit, as read at this scan.
    pub descriptors: Descriptors,
    /// Growth of its descriptors, per second, over [`WINDOW`]; None until enough readings.
    pub fds_per_second: Option<f64>,
    /// Growth of its suspect connections, per second, over [`WINDOW`]; None until enough
    /// readings.
    pub suspects_per_second: Option<f64>,
    /// When its descriptors reach the soft limit at the current rate: zero at the limit, None
    /// when not growing, without a limit, or before a rate is known.
    pub exhaustion_in: Option<Duration>,
}

impl ProcessForecast {
    /// Whether exhaustion is predicted within `horizon` (the `TcpLivenessFdExhaustionPredicted` alert).
    #[must_use]
    pub fn within(&self, horizon: Duration) -> bool {
        self.exhaustion_in.is_some_and(|t| t <= horizon)
    }
}

/// The processes with the most suspect connections (ties broken by the lower pid), at most
/// `grouping.top_n`: the only ones whose `/proc` is read.
#[must_use]
pub fn candidates(suspects: &[Connection], grouping: Grouping) -> Vec<Candidate> {
    let mut by_pid: HashMap<u32, Candidate> = HashMap::new();
    for c in suspects {
        let Some(pid) = c.pid else { continue };
        by_pid
            .entry(pid)
            .or_insert_with(|| Candidate {
                pid,
                owner: Owner::of(c, grouping).label().to_owned(),
                suspects: 0,
            })
            .suspects += 1;
    }
    let mut all: Vec<Candidate> = by_pid.into_values().collect();
    all.sort_by(|a, b| b.suspects.cmp(&a.suspects).then(a.pid.cmp(&b.pid)));
    all.truncate(grouping.top_n);
    all
}

/// The least-squares slope of `points` (x, y), in y per x; None for fewer than two distinct x.
#[must_use]
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in points {
        num += (x - mean_x) * (y - mean_y);
        den += (x - mean_x) * (x - mean_x);
    }
    (den > 0.0).then(|| num / den)
}

/// When `descriptors` reach their limit growing `per_second`: zero at or past it, None when
/// unlimited or not growing.
#[must_use]
pub fn time_to_limit(descriptors: Descriptors, per_second: f64) -> Option<Duration> {
    let max = descriptors.max?;
    if descriptors.open >= max {
        return Some(Duration::ZERO);
    }
    if per_second.is_nan() || per_second <= 0.0 {
        return None;
    }
    let seconds = (max - descriptors.open) as f64 / per_second;
    Duration::try_from_secs_f64(seconds).ok()
}

/// One reading: seconds on the monotonic clock, descriptors open, suspects.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: f64,
    open: f64,
    suspects: f64,
}

/// The readings of each candidate over [`WINDOW`], kept from scan to scan. A process that
/// stops being a candidate (its suspects closed, or it exited) loses its history, so a reused
/// pid starts afresh.
#[derive(Debug, Default)]
pub struct Forecaster {
    history: HashMap<u32, VecDeque<Sample>>,
}

impl Forecaster {
    /// Records this scan's readings at `now` (monotonic) and forecasts each process read;
    /// `read` gives a candidate's descriptors (None: the process is gone or unreadable, and is
    /// left out). Readings older than [`WINDOW`] are dropped.
    pub fn observe(
        &mut self,
        now: Duration,
        candidates: Vec<Candidate>,
        mut read: impl FnMut(u32) -> Option<Descriptors>,
    ) -> Vec<ProcessForecast> {
        let at = now.as_secs_f64();
        let mut history = HashMap::with_capacity(candidates.len());
        let mut forecasts = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let Some(descriptors) = read(candidate.pid) else {
                continue;
            };
            let pid = candidate.pid;
            let mut samples = self.history.remove(&pid).unwrap_or_default();
            samples.push_back(Sample {
                at,
                open: descriptors.open as f64,
                suspects: candidate.suspects as f64,
            });
            while samples
                .front()
                .is_some_and(|s| at - s.at > WINDOW.as_secs_f64())
            {
                samples.pop_front();
            }
            forecasts.push(forecast(candidate, descriptors, &samples));
            history.insert(pid, samples);
        }
        self.history = history;
        forecasts
    }
}

/// The rates and time to exhaustion from a process's readings in the window.
fn forecast(
    candidate: Candidate,
    descriptors: Descriptors,
    samples: &VecDeque<Sample>,
) -> ProcessForecast {
    let span = match (samples.front(), samples.back()) {
        (Some(first), Some(last)) => last.at - first.at,
        _ => 0.0,
    };
    let enough = samples.len() >= MIN_SAMPLES && span >= MIN_SPAN.as_secs_f64();
    let rate = |value: fn(&Sample) -> f64| {
        let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.at, value(s))).collect();
        if enough { slope(&points) } else { None }
    };
    let fds_per_second = rate(|s| s.open);
    let suspects_per_second = rate(|s| s.suspects);
    let exhaustion_in = match fds_per_second {
        Some(per_second) => time_to_limit(descriptors, per_second),
        // Already at the limit needs no rate.
        None => time_to_limit(descriptors, 0.0).filter(Duration::is_zero),
    };
    ProcessForecast {
        pid: candidate.pid,
        owner: candidate.owner,
        suspects: candidate.suspects,
        descriptors,
        fds_per_second,
        suspects_per_second,
        exhaustion_in,
    }
}

/// Per owner, the process closest to exhaustion (the soonest; then the highest share of its
/// limit in use; then the lower pid): what the owner-labelled metrics report, one series per
/// owner however many processes share the name.
#[must_use]
pub fn worst_per_owner(forecasts: &[ProcessForecast]) -> Vec<&ProcessForecast> {
    let mut by_owner: HashMap<&str, &ProcessForecast> = HashMap::new();
    for f in forecasts {
        by_owner
            .entry(&f.owner)
            .and_modify(|kept| {
                if closer(f, kept) {
                    *kept = f;
                }
            })
            .or_insert(f);
    }
    let mut worst: Vec<&ProcessForecast> = by_owner.into_values().collect();
    worst.sort_by(|a, b| a.owner.cmp(&b.owner));
    worst
}

/// Whether `a` is closer to exhaustion than `b`.
fn closer(a: &ProcessForecast, b: &ProcessForecast) -> bool {
    let share = |f: &ProcessForecast| {
        f.descriptors
            .max
            .map_or(0.0, |max| f.descriptors.open as f64 / max.max(1) as f64)
    };
    match (a.exhaustion_in, b.exhaustion_in) {
        (Some(x), Some(y)) if x != y => x < y,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        _ => share(a)
            .partial_cmp(&share(b))
            .map_or(a.pid < b.pid, |o| o.is_gt() || (o.is_eq() && a.pid < b.pid)),
    }
}

#[cfg(test)]
mod tests;
