use std::sync::atomic::{AtomicUsize, Ordering};

use monitor_common::{AF_INET, SockActivity, tcp_state};

use super::*;
use crate::{
    bpf::{BpfError, HookStatus},
    scan::convert::SocketDefaults,
    verdict::Policy,
};

/// Kernel counters that read `retransmits = n` on the n-th read, and fail on the reads listed.
struct FlakyCounters {
    reads: AtomicUsize,
    failing: Vec<usize>,
}

impl KernelStatus for FlakyCounters {
    fn counters(&self) -> Result<KernelCounters, BpfError> {
        let read = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        if self.failing.contains(&read) {
            return Err(BpfError::MissingMap("COUNTERS"));
        }
        Ok(KernelCounters {
            retransmits: read as u64,
            ..KernelCounters::default()
        })
    }

    fn hooks(&self) -> Vec<HookStatus> {
        vec![HookStatus {
            hook: "tcp_probe",
            attached: true,
            error: None,
        }]
    }

    fn table_capacity(&self) -> u32 {
        1024
    }

    fn forget(&self, _cookies: &[u64]) {}
}

/// An ESTABLISHED IPv4 table entry on local port `port` (also the feature tests' socket).
pub(super) fn established(port: u16) -> SockActivity {
    let mut e = SockActivity::zeroed();
    e.family = AF_INET;
    e.state = tcp_state::ESTABLISHED;
    e.sport = port;
    e.state_since_ns = 1;
    e
}

fn scanner(failing: Vec<usize>) -> Scanner {
    let table: Vec<(u64, SockActivity)> = vec![(1, established(80)), (2, established(81))];
    Scanner::new(
        Arc::new(table),
        Arc::new(FlakyCounters {
            reads: AtomicUsize::new(0),
            failing,
        }),
        Arc::new(Pipeline::without_proc(
            SocketDefaults::default(),
            Policy::default(),
        )),
        Grouping::default(),
    )
}

#[test]
fn one_scan_builds_the_whole_snapshot() {
    let snapshot = scanner(vec![]).scan(Cookies::from_iter([2, 99]));
    assert_eq!(snapshot.tracked_sockets, 2);
    assert_eq!(snapshot.counters.retransmits, 1);
    assert_eq!(snapshot.table_capacity, 1024);
    assert_eq!(snapshot.hooks.len(), 1);
    assert_eq!(snapshot.watched_open, Cookies::from_iter([2]));
    assert!(snapshot.scan_duration > Duration::ZERO);
    assert!(snapshot.failures.is_empty());
}

/// A failed counter read publishes the last good counters (never zeros, which Prometheus would
/// read as a counter reset) and says which stage failed; the table pass is still fresh.
#[test]
fn a_failed_counter_read_keeps_the_last_good_values() {
    let scanner = scanner(vec![2, 3]);
    assert_eq!(scanner.scan(Cookies::default()).counters.retransmits, 1);
    let failed = scanner.scan(Cookies::default());
    assert_eq!(failed.counters.retransmits, 1, "last good value, not 0");
    assert_eq!(failed.tracked_sockets, 2);
    assert_eq!(failed.failures.len(), 1);
    assert_eq!(failed.failures[0].stage, ScanStage::Counters);
    assert!(failed.failures[0].error.contains("COUNTERS"));
    assert_eq!(scanner.scan(Cookies::default()).counters.retransmits, 1);
    let recovered = scanner.scan(Cookies::default());
    assert_eq!(recovered.counters.retransmits, 4);
    assert!(recovered.failures.is_empty());
}

/// Before any read succeeded there is nothing better than zeros, but the failure is still said.
#[test]
fn a_first_failed_read_is_reported() {
    let snapshot = scanner(vec![1]).scan(Cookies::default());
    assert_eq!(snapshot.counters, KernelCounters::default());
    assert_eq!(snapshot.failures[0].stage, ScanStage::Counters);
}
