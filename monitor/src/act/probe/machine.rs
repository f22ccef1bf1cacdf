//! The keepalive probe state machine, pure: which candidates start (caps), which running probes
//! finish (answered, or out of time), what each outcome means. No I/O: the probe thread
//! ([`super::thread`]) turns its plans into `SockoptControl::apply` calls in each namespace and
//! hands the kernel's outcomes back.
//!
//! A socket goes candidate → running (keepalive on with the probe's timers) → finished (the
//! application's options restored; a result kept while the connection lives).

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use monitor_common::sockopt::{
    OUTCOME_DONE, SET_KEEPALIVE, SET_KEEPCNT, SET_KEEPIDLE, SET_KEEPINTVL, SET_USER_TIMEOUT,
    SockoptRequest, SockoptValues,
};

use self::round_trip::first_round_trip;
use super::ProbeSettings;
use crate::{
    model::Comm,
    scan::kernel_state::{FastMap, FastSet},
};

/// `TCP_KEEPCNT` while probing: the kernel's maximum, so the kernel never resets the connection
/// because of our probes within the probe window (it would take 127 unanswered probes).
pub(crate) const PROBE_KEEPCNT: u32 = 127;

/// Our probes unanswered, while the peer's own segments arrive, that show the path to it
/// broken: the first of them then went unanswered for a whole interval (a probe sent just
/// before the peer's segment arrived may simply not have been answered yet).
pub(crate) const ONE_WAY_PROBES: u32 = 2;

/// The kernel's largest `TCP_KEEPIDLE` (`MAX_TCP_KEEPIDLE`), in seconds.
const MAX_KEEPIDLE_S: u32 = 32_767;

/// The options a probe sets: keepalive on, the idle time (the socket's silence: its first probe
/// goes out at once), then a probe every `interval`.
const START_SET: u32 = SET_KEEPALIVE | SET_KEEPIDLE | SET_KEEPINTVL | SET_KEEPCNT;
/// What a finish puts back: all five options, as the application's `getsockopt` showed them.
const RESTORE_SET: u32 = START_SET | SET_USER_TIMEOUT;

/// A connection the last scan found worth probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub cookie: u64,
    /// Network namespace inode: the probe runs inside it.
    pub netns: u32,
    /// For the audit log: whose socket, and how long nothing came from the peer.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub silent_for: Duration,
}

/// A probe in progress: keepalive is on with the probe's timers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Running {
    pub candidate: Candidate,
    /// `CLOCK_MONOTONIC` at the start, and the wall clock for `sent_at`.
    pub started_ns: u64,
    pub sent_at: SystemTime,
    /// The start's outcome: the application's options (`before`), `rcv_tstamp` and `jiffies`.
    pub start: SockoptRequest,
    /// The hooks saw a segment from the peer after the start (`tcp_probe`, via the scans).
    pub heard: bool,
    /// `CLOCK_MONOTONIC` of the last exact query of the socket ([`Machine::due_for_query`]); the
    /// start's at first.
    pub polled_ns: u64,
    /// An exact query showed an ACK from the peer after the start: the probe is finished at
    /// once, before the kernel's next probe can leave (a whole `TCP_KEEPIDLE` after the answer),
    /// so the `rcv_tstamp` the finish reads is the first answer's.
    pub answer_seen: bool,
    /// An exact query showed data sent after the start: an ACK may answer that data, not the
    /// probe, so no round trip is measured.
    pub data_sent: bool,
}

/// What an exact `sock_diag` query of a running probe's socket showed (`tcp_info`), at the
/// query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Polled {
    /// Since the peer's last ACK (`tcpi_last_ack_recv`: `rcv_tstamp`).
    pub last_ack_recv: Duration,
    /// Since the socket last sent data (`tcpi_last_data_sent`: `lsndtime`; a keepalive probe
    /// carries none and leaves it).
    pub last_data_sent: Duration,
}

/// The longest wait between two exact queries of one running probe's socket.
const POLL_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// A finished probe, kept while its connection lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub sent_at: SystemTime,
    pub ended_ns: u64,
    pub answered: bool,
    pub rtt: Option<Duration>,
    /// `icsk_probes_out` at the finish: probes sent since the peer last answered.
    pub unanswered: u32,
    /// `count` probes unanswered: the peer is gone.
    pub dead: bool,
    /// The peer sent segments of its own during the probe (its keepalives, for example), yet
    /// our probes went unanswered: the peer is there, the path from here to it is broken.
    pub one_way: bool,
    /// The application's options, put back at the finish.
    pub before: SockoptValues,
}

/// What one finish concluded, for the metrics and the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conclusion {
    Answered,
    /// `count` probes went unanswered: `peer_dead`.
    Dead,
    /// The peer sent segments of its own, but at least [`ONE_WAY_PROBES`] of ours went
    /// unanswered (the first for a whole interval): the path from here to it is broken.
    OneWay,
    /// No answer, but fewer than `count` probes went out (the socket got busy: the kernel sends
    /// no keepalive with data in flight); no verdict.
    Inconclusive,
    /// The socket was gone (closed meanwhile): nothing to restore.
    Gone,
}

/// The whole state: candidates from the last scan, running probes, finished results.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(super) settings: ProbeSettings,
    /// Offered by the scan in progress / the last scan.
    offers: Vec<Candidate>,
    pending: Vec<Candidate>,
    pub(super) running: FastMap<u64, Running>,
    pub(super) results: FastMap<u64, Finished>,
    /// Cookies with a result that the scan in progress saw (the rest are forgotten at its end).
    seen: FastSet<u64>,
    /// The per-second cap: the current one-second window and the starts in it.
    window_start_ns: u64,
    started_in_window: u32,
    hz: Option<u32>,
}

impl Machine {
    pub(crate) fn new(settings: ProbeSettings, hz: Option<u32>) -> Self {
        Self {
            settings,
            offers: Vec::new(),
            pending: Vec::new(),
            running: FastMap::default(),
            results: FastMap::default(),
            seen: FastSet::default(),
            window_start_ns: 0,
            started_in_window: 0,
            hz,
        }
    }

    /// A scan found `candidate` worth probing. At most `max_per_scan` are kept per scan: the
    /// rest wait for a later one.
    pub(crate) fn offer(&mut self, candidate: Candidate) {
        let busy = self.running.contains_key(&candidate.cookie)
            || self.results.get(&candidate.cookie).is_some_and(|r| r.dead);
        if !busy && self.offers.len() < self.settings.max_per_scan as usize {
            self.offers.push(candidate);
        }
    }

    /// The scan saw `cookie` alive: its result is kept.
    pub(crate) fn saw(&mut self, cookie: u64) {
        if self.results.contains_key(&cookie) {
            self.seen.insert(cookie);
        }
    }

    /// The scan ended: its offers become the pending starts, results of connections it did not
    /// see are forgotten.
    pub(crate) fn end_scan(&mut self) {
        self.pending = std::mem::take(&mut self.offers);
        let seen = std::mem::take(&mut self.seen);
        self.results.retain(|cookie, _| seen.contains(cookie));
    }

    /// The hooks saw the peer `since_peer` ago, as of `now_ns`: a running probe that started
    /// before that was answered.
    pub(crate) fn heard(&mut self, cookie: u64, since_peer: Duration, now_ns: u64) {
        if let Some(running) = self.running.get_mut(&cookie) {
            let heard_at = now_ns.saturating_sub(duration_ns(since_peer));
            if heard_at > running.started_ns {
                running.heard = true;
            }
        }
    }

    /// The candidates to start now, each with its request: while fewer than `max_per_scan` run
    /// and the per-second budget lasts. Taken out of the pending list.
    pub(crate) fn starts(&mut self, now_ns: u64) -> Vec<(Candidate, SockoptRequest)> {
        if now_ns.saturating_sub(self.window_start_ns) >= 1_000_000_000 {
            self.window_start_ns = now_ns;
            self.started_in_window = 0;
        }
        let room = (self.settings.max_per_scan as usize).saturating_sub(self.running.len());
        let budget = self
            .settings
            .max_per_second
            .saturating_sub(self.started_in_window) as usize;
        let take = room.min(budget).min(self.pending.len());
        let chosen: Vec<Candidate> = self.pending.drain(..take).collect();
        self.started_in_window += u32::try_from(chosen.len()).unwrap_or(u32::MAX);
        chosen
            .into_iter()
            .filter(|c| !self.running.contains_key(&c.cookie))
            .map(|c| (c, self.start_request(c.silent_for)))
            .collect()
    }

    /// Keepalive on, `TCP_KEEPINTVL` = `interval`, `TCP_KEEPCNT` = 127, and `TCP_KEEPIDLE` = the
    /// whole seconds the socket has been `silent_for` (at least 1, at most the kernel's 32767).
    ///
    /// The kernel counts the idle time from the last segment received, so a socket silent that
    /// long sends its first probe at once. An answer restarts that count: the next probe would
    /// go out an idle time after it. With the idle time as long as the silence that made the
    /// socket a candidate, that is well after the probe is read as answered, so the `rcv_tstamp`
    /// the finish reads is the first answer's and the round trip measured is the first probe's.
    /// (With `interval` there, a finish that came one interval late read the second answer: a
    /// round trip one interval long.) Unanswered probes follow every `interval` whatever it is.
    pub(crate) fn start_request(&self, silent_for: Duration) -> SockoptRequest {
        let interval = self.settings.interval_s();
        let idle = u32::try_from(silent_for.as_secs())
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_KEEPIDLE_S);
        SockoptRequest {
            set: START_SET,
            want: SockoptValues {
                keepalive: 1,
                keepidle_s: idle,
                keepintvl_s: interval,
                keepcnt: PROBE_KEEPCNT,
                user_timeout_ms: 0,
            },
            ..SockoptRequest::default()
        }
    }

    /// The kernel's answer to a start. A socket it did not see, or one that refused an option,
    /// is not running (the caller restores what was applied, if anything).
    pub(crate) fn started(
        &mut self,
        candidate: Candidate,
        outcome: &SockoptRequest,
        now_ns: u64,
        now: SystemTime,
    ) -> bool {
        if outcome.outcome != OUTCOME_DONE || outcome.applied != START_SET || outcome.error != 0 {
            return false;
        }
        self.running.insert(
            candidate.cookie,
            Running {
                candidate,
                started_ns: now_ns,
                sent_at: now,
                start: *outcome,
                heard: false,
                polled_ns: now_ns,
                answer_seen: false,
                data_sent: false,
            },
        );
        true
    }

    /// The running probes whose sockets are due for an exact query at `now_ns` (their last one
    /// [`poll_every`] ago, no answer seen yet); each is marked polled now.
    pub(crate) fn due_for_query(&mut self, now_ns: u64) -> Vec<Candidate> {
        self.running
            .values_mut()
            .filter(|r| !r.answer_seen)
            .filter(|r| {
                let every = duration_ns(poll_every(r.start.want.keepidle_s));
                now_ns.saturating_sub(r.polled_ns) >= every
            })
            .map(|r| {
                r.polled_ns = now_ns;
                r.candidate
            })
            .collect()
    }

    /// An exact query of `cookie`'s socket at `now_ns` showed `seen`: an ACK from the peer after
    /// the start finishes the probe at the next round ([`due`](Self::due)); data sent after it
    /// leaves the round trip unmeasured.
    pub(crate) fn polled(&mut self, cookie: u64, seen: Polled, now_ns: u64) {
        let Some(running) = self.running.get_mut(&cookie) else {
            return;
        };
        let since_start = now_ns.saturating_sub(running.started_ns);
        running.answer_seen |= duration_ns(seen.last_ack_recv) < since_start;
        running.data_sent |= duration_ns(seen.last_data_sent) < since_start;
    }

    /// How long a probe runs unanswered: `count` probes `interval` apart (the first at once),
    /// then half an interval for the last answer and the timer wheel's lateness.
    pub(crate) fn deadline(&self) -> Duration {
        self.settings.interval * self.settings.count + self.settings.interval / 2
    }

    /// The running probes to finish now (answered, or out of time), or all of them
    /// (`everything`: the agent stops). Each with its restore request; they stay running until
    /// [`finished`](Self::finished).
    pub(crate) fn due(&self, now_ns: u64, everything: bool) -> Vec<(Running, SockoptRequest)> {
        let deadline = duration_ns(self.deadline());
        self.running
            .values()
            .filter(|r| {
                everything
                    || r.heard
                    || r.answer_seen
                    || now_ns.saturating_sub(r.started_ns) >= deadline
            })
            .map(|r| (*r, restore_request(&r.start)))
            .collect()
    }

    /// The kernel's answer to a finish (`outcome`: after the restore; `probes_out` and
    /// `rcv_tstamp` as they were just before it).
    pub(crate) fn finished(
        &mut self,
        cookie: u64,
        outcome: &SockoptRequest,
        now_ns: u64,
    ) -> Conclusion {
        let Some(running) = self.running.remove(&cookie) else {
            return Conclusion::Gone;
        };
        if outcome.outcome != OUTCOME_DONE {
            return Conclusion::Gone;
        }
        let start = &running.start;
        // Only an ACK of our probe answers it (`tcp_ack` moved `rcv_tstamp`). A segment the
        // peer sent on its own (its keepalive probe is out of window: `rcv_tstamp` stays) proves
        // the peer exists, not that our probe got through.
        let answered = outcome.rcv_tstamp != start.rcv_tstamp;
        let rtt = self
            .hz
            .filter(|_| answered && !running.data_sent)
            .and_then(|hz| first_round_trip(start, outcome.rcv_tstamp, hz));
        let heard = running.heard && !answered;
        let dead = !answered && !heard && outcome.probes_out >= self.settings.count;
        let one_way = heard && outcome.probes_out >= ONE_WAY_PROBES;
        self.results.insert(
            cookie,
            Finished {
                sent_at: running.sent_at,
                ended_ns: now_ns,
                answered,
                rtt,
                unanswered: if answered { 0 } else { outcome.probes_out },
                dead,
                one_way,
                before: start.before,
            },
        );
        match (answered, dead, one_way) {
            (true, _, _) => Conclusion::Answered,
            (false, true, _) => Conclusion::Dead,
            (false, false, true) => Conclusion::OneWay,
            (false, false, false) => Conclusion::Inconclusive,
        }
    }
}

/// How often a running probe's socket is queried for its answer: a quarter of the probe's
/// `TCP_KEEPIDLE` (the kernel's next probe leaves that long after an answer), at most
/// [`POLL_AT_MOST_EVERY`]; the probe thread's tick is the floor.
fn poll_every(keepidle_s: u32) -> Duration {
    (Duration::from_secs(keepidle_s.into()) / 4).min(POLL_AT_MOST_EVERY)
}

/// Puts back what the application had: the start's `before`, all five options.
pub(crate) fn restore_request(start: &SockoptRequest) -> SockoptRequest {
    SockoptRequest {
        set: RESTORE_SET,
        want: start.before,
        ..SockoptRequest::default()
    }
}

/// Whether `outcome`, the kernel's answer to a [`restore_request`], put all five options back.
pub(crate) fn is_restored(outcome: &SockoptRequest) -> bool {
    outcome.outcome == OUTCOME_DONE && outcome.error == 0 && outcome.applied == RESTORE_SET
}

pub(super) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

mod round_trip;
#[cfg(test)]
mod tests;
