use std::{cell::Cell, net::SocketAddr};

use monitor_common::tcp_state;

use super::*;
use crate::{sock_diag::TcpInfoSummary, verdict::Matcher};

/// A kernel whose sockets are silent dead peers unless a test changes them: it sends one
/// unanswered keepalive probe a second (200 ms RTO) unless `quiet`.
#[derive(Default)]
struct FakeKernel {
    /// cookie → (state, ms since the last ACK at t = 0, bytes acked)
    sockets: FastMap<u64, (u8, u32, u64)>,
    /// Its timers send nothing (between two probes, or during a backoff).
    quiet: bool,
    destroyed: Vec<u64>,
    queries: usize,
}

impl SocketControl for FakeKernel {
    fn query(&mut self, key: &SocketKey) -> Result<Option<DiagSocket>, SockDiagError> {
        self.queries += 1;
        Ok(self
            .sockets
            .get(&key.cookie)
            .map(|&(state, ack, acked)| DiagSocket {
                netns: key.netns,
                cookie: key.cookie,
                family: key.family,
                state,
                local: key.local,
                remote: key.remote,
                inode: 1,
                tcp_info: Some(TcpInfoSummary {
                    probes: if self.quiet {
                        0
                    } else {
                        u8::try_from(CLOCK.get() / 1_000).unwrap()
                    },
                    rto_us: 200_000,
                    last_ack_recv_ms: ack + u32::try_from(CLOCK.get()).unwrap(),
                    bytes_acked: Some(acked),
                    bytes_received: Some(0),
                    ..TcpInfoSummary::default()
                }),
                keepalive_timer: false,
            }))
    }

    fn destroy(&mut self, key: &SocketKey) -> Result<bool, SockDiagError> {
        Ok(self
            .sockets
            .remove(&key.cookie)
            .inspect(|_| self.destroyed.push(key.cookie))
            .is_some())
    }
}

thread_local! {
    /// The test's `CLOCK_MONOTONIC`, ms: one scan is 1000.
    static CLOCK: Cell<u64> = const { Cell::new(0) };
}

fn dead(cookie: u64) -> Connection {
    let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let remote: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    let mut c = Connection::new(cookie, tcp_state::ESTABLISHED, local, remote);
    c.netns = Some(1);
    c.suspect = vec![Reason::KeepaliveUnanswered];
    c.since_peer = Some(Duration::from_secs(30));
    c
}

fn policy(dry_run: bool, max_per_minute: u32) -> RemediatePolicy {
    RemediatePolicy {
        number: 1,
        reason: Reason::KeepaliveUnanswered,
        matcher: Matcher::default(),
        min_age: Duration::from_secs(10),
        dry_run,
        max_per_minute,
        min_retransmits: 8,
    }
}

/// Judges by the kernel's answer as overlaid: still suspect while the peer is silent 5 s.
fn judge(c: &Connection) -> Vec<Reason> {
    if c.since_peer.is_some_and(|s| s >= Duration::from_secs(5)) {
        vec![Reason::KeepaliveUnanswered]
    } else {
        Vec::new()
    }
}

/// One scan of `suspects`, the clock a second later afterwards.
fn scan(
    r: &mut Remediator,
    kernel: &mut FakeKernel,
    suspects: &[Connection],
) -> Vec<(u64, RemediationResult)> {
    let now = || 1_000_000 + CLOCK.get();
    let actions = r.run(suspects, kernel, &judge, &now);
    CLOCK.set(CLOCK.get() + 1_000);
    actions.into_iter().map(|a| (a.cookie, a.result)).collect()
}

fn remediator(policy: RemediatePolicy) -> Remediator {
    let counters = RemediationCounters::new(std::slice::from_ref(&policy));
    Remediator::new(vec![policy], counters)
}

fn kernel_with(cookies: &[u64]) -> FakeKernel {
    let mut kernel = FakeKernel::default();
    for &cookie in cookies {
        kernel
            .sockets
            .insert(cookie, (tcp_state::ESTABLISHED, 30_000, 100));
    }
    kernel
}

#[test]
fn destroys_once_a_probe_after_the_first_look_goes_unanswered_within_the_rate_limit() {
    CLOCK.set(0);
    let mut r = remediator(policy(false, 1));
    let mut kernel = kernel_with(&[1, 2, 3]);
    let suspects = [dead(1), dead(2), dead(3)];
    assert_eq!(scan(&mut r, &mut kernel, &suspects), [], "first looks only");
    // A probe was sent since: its answer is due within the RTO and the margin.
    assert_eq!(
        scan(&mut r, &mut kernel, &suspects),
        [],
        "waiting for the answer"
    );
    assert_eq!(
        scan(&mut r, &mut kernel, &suspects),
        [
            (1, RemediationResult::Destroyed),
            (2, RemediationResult::RateLimited),
            (3, RemediationResult::RateLimited)
        ]
    );
    assert_eq!(kernel.destroyed, [1]);
    // Reported once: the next scans add nothing while the minute lasts.
    let queries = kernel.queries;
    assert_eq!(scan(&mut r, &mut kernel, &suspects[1..]), []);
    assert_eq!(
        kernel.queries, queries,
        "no look while nothing could be done"
    );
}

#[test]
fn dry_run_destroys_nothing_and_reports_each_socket_once() {
    CLOCK.set(0);
    let mut r = remediator(policy(true, 10));
    let mut kernel = kernel_with(&[1]);
    assert_eq!(scan(&mut r, &mut kernel, &[dead(1)]), []);
    assert_eq!(scan(&mut r, &mut kernel, &[dead(1)]), []);
    assert_eq!(
        scan(&mut r, &mut kernel, &[dead(1)]),
        [(1, RemediationResult::DryRun)]
    );
    assert_eq!(scan(&mut r, &mut kernel, &[dead(1)]), []);
    assert!(kernel.destroyed.is_empty());
    assert!(kernel.sockets.contains_key(&1));
}

#[test]
fn a_socket_that_showed_life_or_left_is_not_destroyed() {
    CLOCK.set(0);
    let mut r = remediator(policy(false, 10));
    let mut kernel = kernel_with(&[1, 2, 3]);
    let suspects = [dead(1), dead(2), dead(3)];
    assert_eq!(scan(&mut r, &mut kernel, &suspects), []);
    // 1: the peer acknowledged data since (its last ACK is still old enough for the verdict);
    // 2: closed; 3: the peer answered just now (the verdict no longer holds).
    kernel
        .sockets
        .insert(1, (tcp_state::ESTABLISHED, 30_000, 200));
    kernel.sockets.remove(&2);
    kernel.sockets.insert(3, (tcp_state::ESTABLISHED, 0, 100));
    CLOCK.set(CLOCK.get());
    let actions = scan(&mut r, &mut kernel, &suspects);
    assert_eq!(
        actions,
        [
            (1, RemediationResult::SkippedChanged),
            (2, RemediationResult::Gone),
            (3, RemediationResult::SkippedChanged)
        ]
    );
    assert!(kernel.destroyed.is_empty());
}

#[test]
fn young_verdicts_and_unmatched_sockets_are_not_looked_at() {
    CLOCK.set(0);
    let mut r = remediator(policy(false, 10));
    let mut kernel = kernel_with(&[1, 2]);
    let mut young = dead(1);
    young.since_peer = Some(Duration::from_secs(9));
    let mut other = dead(2);
    other.suspect = vec![Reason::CloseWaitStuck];
    for _ in 0..3 {
        assert_eq!(
            scan(&mut r, &mut kernel, &[young.clone(), other.clone()]),
            []
        );
    }
    assert_eq!(kernel.queries, 0);
}

#[test]
fn a_silence_nothing_was_sent_into_since_the_first_look_is_not_acted_on() {
    // Between keepalive probes (or during a retransmission backoff) the peer has not been
    // asked since the first look: it may be back, so the looks wait, however many.
    CLOCK.set(0);
    let mut r = remediator(policy(false, 10));
    let mut kernel = kernel_with(&[1]);
    kernel.quiet = true;
    for _ in 0..5 {
        assert_eq!(scan(&mut r, &mut kernel, &[dead(1)]), []);
    }
    assert!(kernel.destroyed.is_empty());
    // The next probe goes out and stays unanswered past the RTO: now proven.
    kernel.quiet = false;
    assert_eq!(scan(&mut r, &mut kernel, &[dead(1)]), [], "sent");
    assert_eq!(
        scan(&mut r, &mut kernel, &[dead(1)]),
        [(1, RemediationResult::Destroyed)]
    );
}
