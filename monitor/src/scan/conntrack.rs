//! The host's own conntrack, read without configuration: for an idle ESTABLISHED connection
//! conntrack would forget ([`Candidates`]), the scan asks the kernel for the flow's entry
//! (an exact ctnetlink GET, in the socket's own namespace, then in the agent's) and keeps the
//! answer by cookie; every pass then writes it into the connection ([`Connection::conntrack`])
//! for `idle_beyond_path_timeout` to judge as the path `conntrack`.
//!
//! An answer holds while the connection stays idle (nothing crosses the flow, so its entry is
//! not refreshed): a candidate is asked once per idle stretch, at most once per scan, and
//! traffic (a later last activity) drops the answer. The asking happens at the end of a scan
//! (after its locks are released), so the verdict follows one scan later.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Annotator, Feature, ScanPass, Summary, kernel_defaults, kernel_state::FastMap};
use crate::{
    clock,
    conntrack::{ConntrackQueries, Tuple},
    locks,
    model::{Connection, ConntrackDrop},
    netns,
    verdict::{
        Policy,
        conntrack::{CONNTRACK_PATH, Candidates},
    },
};

/// Queries per scan at most: a burst of candidates beyond it is asked over the next scans.
const MAX_QUERIES_PER_SCAN: usize = 256;
/// How far a connection's last activity may move (clock reads of one scan differ) and still be
/// the same idle stretch.
const SAME_STRETCH: u64 = 1_000_000_000;
/// How often the agent's own namespace's conntrack timeout is read again (it can change).
const REREAD_HOST_EVERY: Duration = Duration::from_mins(1);

/// What the kernel said about one candidate's flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Asked {
    /// `CLOCK_MONOTONIC` ns of the connection's last activity when asked: the answer holds
    /// while it stays the same.
    last_activity_ns: u64,
    /// The entry found, None when no namespace tracks the flow.
    found: Option<ConntrackDrop>,
}

impl Asked {
    /// Whether this answer is about `c`'s current idle stretch, as of `now_ns`.
    fn holds_for(&self, c: &Connection, now_ns: u64) -> bool {
        last_activity(c, now_ns)
            .is_some_and(|at| at.abs_diff(self.last_activity_ns) <= SAME_STRETCH)
    }
}

fn last_activity(c: &Connection, now_ns: u64) -> Option<u64> {
    let idle = u64::try_from(c.idle?.as_nanos()).unwrap_or(u64::MAX);
    Some(now_ns.saturating_sub(idle))
}

/// The answers by cookie, replaced as a whole at the end of each scan.
type Answers = FastMap<u64, Asked>;

/// The conntrack feature: registered once by the agent.
pub struct HostConntrack {
    /// The agent's own network namespace (inode), None when unreadable.
    host_netns: Option<u32>,
    /// Its `nf_conntrack_tcp_timeout_established` and when it was read.
    host_timeout: Mutex<(Instant, Option<Duration>)>,
    answers: RwLock<Arc<Answers>>,
    queries: Mutex<ConntrackQueries>,
    /// Queries that failed (namespace gone, no `CAP_NET_ADMIN`), since the start.
    errors: AtomicU64,
}

impl HostConntrack {
    /// The feature, with the calling thread's namespace as the host's.
    #[must_use]
    pub fn new() -> Self {
        Self {
            host_netns: netns::ns_inode(std::path::Path::new("/proc/thread-self/ns/net")),
            host_timeout: Mutex::new((Instant::now(), kernel_defaults::conntrack_established())),
            answers: RwLock::default(),
            queries: Mutex::default(),
            errors: AtomicU64::new(0),
        }
    }

    fn host_timeout(&self) -> Option<Duration> {
        let mut host = locks::lock(&self.host_timeout);
        if host.0.elapsed() >= REREAD_HOST_EVERY {
            *host = (Instant::now(), kernel_defaults::conntrack_established());
        }
        host.1
    }

    /// Asks the kernel about `candidate`'s flow: its own namespace first, then the host's.
    fn ask(&self, queries: &mut ConntrackQueries, candidate: &Candidate) -> Option<ConntrackDrop> {
        let places = [
            (candidate.netns, candidate.own_timeout),
            (self.host_netns, candidate.host_timeout),
        ];
        let mut asked = None;
        for (netns, timeout) in places {
            let (Some(netns), Some(timeout)) = (netns, timeout) else {
                continue;
            };
            if asked == Some(netns) {
                continue;
            }
            asked = Some(netns);
            match queries.time_left(netns, candidate.tuple) {
                Ok(Some(left)) => {
                    return Some(ConntrackDrop {
                        timeout,
                        drops_at_idle: candidate.idle + left,
                    });
                }
                Ok(None) => {}
                Err(error) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, netns, "asking conntrack about a flow");
                }
            }
        }
        None
    }
}

impl Default for HostConntrack {
    fn default() -> Self {
        Self::new()
    }
}

impl Feature for HostConntrack {
    fn start_scan(&self) -> Option<Box<dyn ScanPass + '_>> {
        Some(Box::new(ConntrackScan {
            feature: self,
            now_ns: clock::monotonic_now_ns(),
            host_timeout: self.host_timeout(),
            previous: Arc::clone(&locks::read(&self.answers)),
            candidates: None,
            found: Vec::new(),
        }))
    }

    fn annotator(&self) -> Option<Box<dyn Annotator + '_>> {
        let answers = Arc::clone(&locks::read(&self.answers));
        (!answers.is_empty()).then(|| Box::new(WriteAnswers(answers)) as _)
    }

    fn summarize(&self, summary: &mut Summary) {
        summary
            .path_at_risk
            .entry(CONNTRACK_PATH.to_owned())
            .or_insert(0);
    }
}

/// Writes each connection's answer, while it holds, into it.
struct WriteAnswers(Arc<Answers>);

impl Annotator for WriteAnswers {
    fn annotate(&self, c: &mut Connection, now_ns: u64, _policy: &Policy) {
        if let Some(asked) = self.0.get(&c.cookie)
            && asked.holds_for(c, now_ns)
        {
            c.conntrack = asked.found;
        }
    }
}

/// One connection worth asking about, as a scan saw it.
struct Candidate {
    cookie: u64,
    netns: Option<u32>,
    tuple: Tuple,
    idle: Duration,
    last_activity_ns: u64,
    own_timeout: Option<Duration>,
    host_timeout: Option<Duration>,
}

/// One scan: collects the candidates, asks about the new ones at its end.
struct ConntrackScan<'a> {
    feature: &'a HostConntrack,
    now_ns: u64,
    host_timeout: Option<Duration>,
    previous: Arc<Answers>,
    /// The scan's test of candidacy (made at its first connection: it needs the policy).
    candidates: Option<Candidates>,
    /// The candidates seen.
    found: Vec<Candidate>,
}

impl ScanPass for ConntrackScan<'_> {
    fn observe(&mut self, c: &Connection, policy: &Policy) {
        let candidates = self
            .candidates
            .get_or_insert_with(|| Candidates::new(policy, self.host_timeout));
        if !candidates.worth_asking(c, policy) {
            return;
        }
        let (Some(idle), Some(last_activity_ns)) = (c.idle, last_activity(c, self.now_ns)) else {
            return;
        };
        self.found.push(Candidate {
            cookie: c.cookie,
            netns: c.netns,
            tuple: Tuple {
                src: c.local,
                dst: c.remote,
            },
            idle,
            last_activity_ns,
            own_timeout: c.conntrack_timeout,
            host_timeout: self.host_timeout,
        });
    }

    fn finish(self: Box<Self>) {
        let mut answers = Answers::default();
        let mut queries = locks::lock(&self.feature.queries);
        let mut asked = 0;
        for candidate in &self.found {
            let kept = self.previous.get(&candidate.cookie).filter(|previous| {
                previous
                    .last_activity_ns
                    .abs_diff(candidate.last_activity_ns)
                    <= SAME_STRETCH
            });
            let answer = match kept {
                Some(previous) => *previous,
                None if asked < MAX_QUERIES_PER_SCAN => {
                    asked += 1;
                    Asked {
                        last_activity_ns: candidate.last_activity_ns,
                        found: self.feature.ask(&mut queries, candidate),
                    }
                }
                None => continue,
            };
            answers.insert(candidate.cookie, answer);
        }
        if self.found.is_empty() {
            // Each socket holds its namespace alive: none kept while nothing is idle.
            *queries = ConntrackQueries::default();
        }
        *locks::write(&self.feature.answers) = Arc::new(answers);
    }
}

#[cfg(test)]
mod tests;
