//! `[probe]`: ask a quiet peer whether it is still there. For an ESTABLISHED socket idle past
//! `after` with nothing in flight, no keepalive and no `TCP_USER_TIMEOUT` (an
//! `idle_no_keepalive` candidate) whose connection is opted in, the agent switches keepalive on
//! with short timers through the `iter_tcp_sockopt` program (`bpf_setsockopt`), so the kernel
//! sends keepalive probes (a bare ACK below the peer's window: no data, nothing the
//! application sees). A live peer answers with an ACK (`rcv_tstamp` moves, `icsk_probes_out`
//! resets, the `tcp_probe` hook fires); `count` unanswered probes prove it gone (`peer_dead`).
//! Then the application's own options are put back.
//!
//! [`ProbeBook`] is what the scans and the probe thread share: a pipeline [`Feature`], it reads
//! the results into each [`Connection`] ([`ProbeBook::annotate`]) and takes the scans'
//! candidates ([`ProbeBook::observe`]); the thread ([`ProbeThread`]) starts and finishes probes.

mod journal;
mod machine;
mod recover;
mod thread;

use std::time::Duration;

use monitor_common::{sockopt::SockoptValues, tcp_state};
use prometheus::IntCounterVec;

use self::machine::{Candidate, Conclusion, Machine};
pub use self::{
    journal::{JOURNAL_FILE, Journal, JournalEntry, JournalError, SET_ASIDE_FILE},
    recover::{Recovery, restore_journalled},
    thread::ProbeThread,
};
use crate::{
    model::{Connection, Keepalive, PeerVerdict, ProbeResult},
    scan::{Annotator, Feature, ScanPass},
    verdict::Policy,
};

/// The validated `[probe]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Probe connections not opted out by an `[[override]]` (`probe = false`); when false, only
    /// those opted in (`probe = true`).
    pub enabled: bool,
    /// Idle time (nothing from the peer) before a socket is probed; None: each connection's
    /// `idle_after` (overrides included).
    pub after: Option<Duration>,
    /// Between probes of one socket (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`): whole seconds, 1 s to 1 h.
    pub interval: Duration,
    /// Unanswered probes that prove the peer gone, 1 to 100 (below the 127 the probe sets as
    /// `TCP_KEEPCNT`: the kernel never resets a connection because of a probe).
    pub count: u32,
    /// Probes started per second, at most.
    pub max_per_second: u32,
    /// Probes in progress at once, at most: a scan starts new ones only while fewer run (and
    /// offers at most this many candidates).
    pub max_per_scan: u32,
}

/// `count` when not given: a round calls a live peer dead only when all its probes or their
/// answers are lost, (1 − (1 − p)²)^count at a loss of p each way: at 30%, 0.51¹⁴ = 8·10⁻⁵, less
/// than once in 10,000 rounds.
pub const DEFAULT_COUNT: u32 = 14;

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            after: None,
            interval: Duration::from_secs(5),
            count: DEFAULT_COUNT,
            max_per_second: 20,
            max_per_scan: 100,
        }
    }
}

impl ProbeSettings {
    /// `interval` in whole seconds, as the socket options take it.
    pub(crate) fn interval_s(&self) -> u32 {
        u32::try_from(self.interval.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// `jiffies` at `hz` ticks per second, as a duration.
pub(crate) fn jiffies_to_duration(jiffies: u32, hz: u32) -> Duration {
    Duration::from_nanos(u64::from(jiffies) * 1_000_000_000 / u64::from(hz.max(1)))
}

/// The probe state shared by the scans and the probe thread, and its counters.
#[derive(Debug)]
pub struct ProbeBook {
    machine: std::sync::Mutex<Machine>,
    /// `tcp_liveness_probes_total{result="answered|unanswered|one_way"}`.
    probes_total: IntCounterVec,
}

impl ProbeBook {
    /// A book for `settings`; `hz` (`CONFIG_HZ`) converts the kernel's jiffies into round-trip
    /// times (None: no `rtt_ms`).
    ///
    /// # Panics
    /// Never: the counter's name and labels are constants.
    #[must_use]
    pub fn new(settings: ProbeSettings, hz: Option<u32>) -> Self {
        use crate::model::metric_families::PROBES;
        let probes_total = IntCounterVec::new(
            prometheus::Opts::new(PROBES.name, PROBES.help),
            PROBES.labels,
        )
        .expect("valid counter");
        for result in ["answered", "unanswered", "one_way"] {
            probes_total.with_label_values(&[result]);
        }
        Self {
            machine: std::sync::Mutex::new(Machine::new(settings, hz)),
            probes_total,
        }
    }

    /// The counter to register with the agent's metrics registry.
    #[must_use]
    pub fn probes_total(&self) -> &IntCounterVec {
        &self.probes_total
    }

    fn machine(&self) -> std::sync::MutexGuard<'_, Machine> {
        crate::locks::lock(&self.machine)
    }

    /// Puts the probe state into `c` (its options and owner already read), as of `now_ns`:
    /// `c.probe` from the running or last finished probe, and while a probe runs, the options the
    /// application has (the socket holds the probe's), so the verdicts judge the application's
    /// socket. A dead verdict ends once the peer is heard from after it.
    pub(crate) fn annotate(&self, c: &mut Connection, now_ns: u64, policy: &Policy) {
        let mut m = self.machine();
        if m.running.is_empty() && m.results.is_empty() {
            return;
        }
        if let Some(since_peer) = c.since_peer {
            m.heard(c.cookie, since_peer, now_ns);
        }
        if let Some(running) = m.running.get(&c.cookie) {
            applications_options(c, &running.start.before);
            let last = m.results.get(&c.cookie);
            // A connection that answered its last probe stays alive while the next one runs
            // (an answer ends it within a scan): no idle alert flickers in between.
            let answered = last.is_some_and(|r| r.answered);
            c.probe = Some(ProbeResult {
                sent_at: running.sent_at,
                in_progress: true,
                answered,
                rtt: last.and_then(|r| r.rtt),
                unanswered: last.map_or(0, |r| r.unanswered),
                verdict: answered.then_some(PeerVerdict::Alive),
            });
            return;
        }
        let after = m.settings.after;
        let interval = m.settings.interval;
        let Some(result) = m.results.get_mut(&c.cookie) else {
            return;
        };
        // The last kernel read may predate the restore: it still shows the probe's timers (its
        // idle time was the socket's silence; the interval and the count of 127 are the probe's).
        let probe_timers = |ka: &Keepalive| {
            ka.enabled && ka.interval == Some(interval) && ka.count == Some(machine::PROBE_KEEPCNT)
        };
        if c.keepalive.as_ref().is_some_and(probe_timers) {
            applications_options(c, &result.before);
        }
        let since_finish = Duration::from_nanos(now_ns.saturating_sub(result.ended_ns));
        let heard_since = c.since_peer.is_some_and(|s| s < since_finish);
        if result.dead && heard_since {
            result.dead = false;
        }
        let after = after.unwrap_or_else(|| policy.thresholds_for(c).idle_after);
        c.probe = Some(ProbeResult {
            sent_at: result.sent_at,
            in_progress: false,
            answered: result.answered,
            rtt: result.rtt,
            unanswered: result.unanswered,
            verdict: if result.dead {
                Some(PeerVerdict::Dead)
            } else if result.one_way && since_finish < after {
                // The peer's own segments keep coming: only a fresh observation stands.
                Some(PeerVerdict::OneWay)
            } else {
                (result.answered && c.since_peer.is_none_or(|s| s < after))
                    .then_some(PeerVerdict::Alive)
            },
        });
    }

    /// At a scan, after the verdicts: offers `c` for a probe if it is a candidate
    /// ([`is_candidate`]) opted in by `policy`, and keeps its result alive.
    pub(crate) fn observe(&self, c: &Connection, policy: &Policy) {
        let mut m = self.machine();
        m.saw(c.cookie);
        let settings = m.settings;
        let Some(netns) = c.netns else {
            return;
        };
        let after = settings
            .after
            .unwrap_or_else(|| policy.thresholds_for(c).idle_after);
        if let Some(silent_for) = is_candidate(c, after)
            && policy.probe_opted_in(c, settings.enabled)
        {
            m.offer(Candidate {
                cookie: c.cookie,
                netns,
                local: c.local,
                remote: c.remote,
                pid: c.pid,
                comm: c.comm,
                silent_for,
            });
        }
    }

    /// The scan ended ([`Machine::end_scan`]).
    pub(crate) fn end_scan(&self) {
        self.machine().end_scan();
    }

    fn count(&self, conclusion: Conclusion) {
        let result = match conclusion {
            Conclusion::Answered => "answered",
            Conclusion::Dead => "unanswered",
            Conclusion::OneWay => "one_way",
            Conclusion::Inconclusive | Conclusion::Gone => return,
        };
        self.probes_total.with_label_values(&[result]).inc();
    }
}

/// Every pass shows the probes' state in each connection; each scan offers its candidates and
/// ends with [`Machine::end_scan`].
impl Feature for ProbeBook {
    fn start_scan(&self) -> Option<Box<dyn ScanPass + '_>> {
        Some(Box::new(Probing(self)))
    }

    fn annotator(&self) -> Option<Box<dyn Annotator + '_>> {
        Some(Box::new(Probing(self)))
    }
}

/// The book, in a pass.
struct Probing<'a>(&'a ProbeBook);

impl Annotator for Probing<'_> {
    fn annotate(&self, c: &mut Connection, now_ns: u64, policy: &Policy) {
        self.0.annotate(c, now_ns, policy);
    }
}

impl ScanPass for Probing<'_> {
    fn observe(&mut self, c: &Connection, policy: &Policy) {
        self.0.observe(c, policy);
    }

    fn finish(self: Box<Self>) {
        self.0.end_scan();
    }
}

/// `c` with the options its application has (`before`, what its `getsockopt` returned before
/// the probe) instead of the probe's.
fn applications_options(c: &mut Connection, before: &SockoptValues) {
    let secs = |s: u32| Some(Duration::from_secs(s.into()));
    c.keepalive = Some(Keepalive {
        enabled: before.keepalive != 0,
        idle: secs(before.keepidle_s),
        interval: secs(before.keepintvl_s),
        count: Some(before.keepcnt),
    });
    c.user_timeout =
        (before.user_timeout_ms != 0).then(|| Duration::from_millis(before.user_timeout_ms.into()));
}

/// Whether `c` may be probed, and for how long nothing came from its peer: ESTABLISHED, not
/// orphaned, keepalive known to be off, no `TCP_USER_TIMEOUT`, nothing unacknowledged and
/// nothing waiting to be sent (never a socket with data in flight), silent at least `after`
/// (the clocks of `idle_no_keepalive`).
#[must_use]
pub fn is_candidate(c: &Connection, after: Duration) -> Option<Duration> {
    let silent_for = c
        .since_peer
        .or(c.since_recv)
        .or(c.state_age.or(c.state_age_at_least))?;
    let quiet = c.state == tcp_state::ESTABLISHED
        && !c.orphan
        && c.keepalive.is_some_and(|ka| !ka.enabled)
        && c.user_timeout.is_none()
        && c.unacked_bytes.is_none_or(|n| n == 0)
        && c.send_queue_bytes.is_none_or(|n| n == 0)
        && silent_for >= after;
    quiet.then_some(silent_for)
}

#[cfg(test)]
mod tests;
