//! Cost of one scan and one /metrics render at 200 000 sockets, without the kernel: a synthetic
//! table behind a vector-backed `SocketSource`, through the agent's own scan code.
//!
//! `cargo run --release -p monitor --example scan-bench [-- SOCKETS]`
//! (`SCAN_BENCH_SCAN_ONLY=1`: 20 scans and nothing else, for a profiler;
//! `SCAN_BENCH_KEEPALIVE_OFF=1`: no socket has keepalive, so most are idle long enough to be
//! `idle_no_keepalive` suspects, as on a host of idle connection pools)
//!
//! Reports ns per entry and heap use: peak (bytes live at once above the starting point),
//! allocated (all bytes requested) and retained (still live after the step, i.e. the snapshot).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use monitor::{
    alerting::{self, Alerting},
    bpf::{FixedStatus, SocketSource},
    export::{
        SnapshotStore,
        json::{ConnectionFilter, ViewsWriter},
        metrics::Metrics,
    },
    model::Grouping,
    scan::{Pipeline, Scanner, conntrack::HostConntrack, convert::SocketDefaults},
    verdict::Policy,
};
use monitor_common::{
    AF_INET, FLAG_KEEPALIVE_ON, FLAG_OPTIONS_KNOWN, FLAG_TRANSPORT_KNOWN, SockActivity, tcp_state,
};

/// Counts live, peak and total heap bytes.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        TOTAL.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap use of one step.
struct Heap {
    peak: usize,
    allocated: usize,
    retained: isize,
}

fn measure<T>(step: impl FnOnce() -> T) -> (T, Duration, Heap) {
    let (live, total) = (LIVE.load(Ordering::Relaxed), TOTAL.load(Ordering::Relaxed));
    PEAK.store(live, Ordering::Relaxed);
    let started = Instant::now();
    let out = step();
    let elapsed = started.elapsed();
    let heap = Heap {
        peak: PEAK.load(Ordering::Relaxed) - live,
        allocated: TOTAL.load(Ordering::Relaxed) - total,
        // Live bytes never exceed isize::MAX (no allocation can), so both casts are exact.
        retained: LIVE.load(Ordering::Relaxed).cast_signed() - live.cast_signed(),
    };
    (out, elapsed, heap)
}

const SEC: u64 = 1_000_000_000;
const NOW_NS: u64 = 100_000 * SEC;

/// Mostly ESTABLISHED (2% with keepalive off, some of them idle long enough to be suspect), 5%
/// `CLOSE_WAIT` from five process names (half on listening ports, half outbound), 1% listeners,
/// `TIME_WAIT` stragglers, some `FIN_WAIT2` and `SYN_SENT`; 200 pids, a few of them real (this
/// process) so cgroup lookups hit /proc.
fn synthetic_table(n: usize, keepalive_off: bool) -> Vec<(u64, SockActivity)> {
    let own_pid = std::process::id();
    (0..n)
        .map(|i| {
            let k = u32::try_from(i).expect("fewer than 2^32 synthetic sockets");
            let [b0, b1, b2, _] = k.to_le_bytes();
            let mut e = SockActivity::zeroed();
            e.family = AF_INET;
            e.saddr[..4].copy_from_slice(&[10, 0, b1, b0]);
            e.daddr[..4].copy_from_slice(&[10, 1, b2, b1]);
            e.netns = 4_026_531_840 + k % 4;
            e.tgid = if i % 50 == 0 { own_pid } else { 1000 + k % 200 };
            let name: &[u8] = match i % 5 {
                0 => b"nginx",
                1 => b"redis-server",
                2 => b"java",
                3 => b"postgres",
                _ => b"envoy",
            };
            e.comm[..name.len()].copy_from_slice(name);
            e.flags = FLAG_TRANSPORT_KNOWN | FLAG_OPTIONS_KNOWN;
            if i % 50 != 3 && !keepalive_off {
                e.flags |= FLAG_KEEPALIVE_ON;
            }
            e.srtt_us = 300;
            e.bytes_sent = i as u64 * 7;
            e.bytes_received = i as u64 * 11;
            let age = (i as u64 * 7919) % 20_000;
            e.state_since_ns = NOW_NS - age * SEC;
            e.last_send_ns = NOW_NS - (age / 2) * SEC;
            e.last_recv_ns = NOW_NS - (age / 3) * SEC;
            e.last_peer_ns = e.last_recv_ns;
            e.sport = 40000 + (k % 20000) as u16;
            e.dport = 443;
            e.state = match i % 100 {
                0 => tcp_state::LISTEN,
                1..=5 => tcp_state::CLOSE_WAIT,
                6..=7 => tcp_state::TIME_WAIT,
                8 => tcp_state::FIN_WAIT2,
                9 => tcp_state::SYN_SENT,
                _ => tcp_state::ESTABLISHED,
            };
            if e.state == tcp_state::LISTEN {
                e.sport = 8000 + (k / 100 % 50) as u16;
            }
            if e.state == tcp_state::CLOSE_WAIT && i % 2 == 0 {
                e.sport = 8000 + (k % 50) as u16;
            }
            (i as u64 + 1, e)
        })
        .collect()
}

fn kib(bytes: usize) -> usize {
    bytes / 1024
}

fn main() -> anyhow::Result<()> {
    let sockets: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let keepalive_off = std::env::var_os("SCAN_BENCH_KEEPALIVE_OFF").is_some();
    let source: Arc<dyn SocketSource> = Arc::new(synthetic_table(sockets, keepalive_off));
    // As on a host with conntrack loaded (its default established timeout, 5 days), with the
    // conntrack feature the agent registers: every ESTABLISHED socket goes through its check,
    // and none is idle long enough to be asked about.
    let defaults = SocketDefaults {
        conntrack_established: Some(Duration::from_hours(120)),
        ..SocketDefaults::default()
    };
    let conntrack = Arc::new(HostConntrack::new());
    let pipeline = Arc::new(Pipeline::new(defaults, Policy::default()).with_feature(conntrack));
    let scanner = Scanner::new(
        Arc::clone(&source),
        Arc::new(FixedStatus::default()),
        Arc::clone(&pipeline),
        Grouping::default(),
    );
    let mut alerting = Alerting::new(
        10,
        None,
        &monitor::alerting::HttpConfig::default(),
        Duration::from_secs(5),
    )?;
    let store = Arc::new(SnapshotStore::new());
    let metrics = Metrics::new(Arc::clone(&store), "bench");
    println!("{sockets} synthetic sockets");
    let scan_only = std::env::var_os("SCAN_BENCH_SCAN_ONLY").is_some();
    for round in 0..if scan_only { 20 } else { 3 } {
        let (suspects, scan, heap) = measure(|| {
            // The table pass and the alert transitions, as the agent's scan loop does them.
            let snapshot = scanner.scan_table(alerting.watched(), NOW_NS);
            alerting.observe(&snapshot);
            let suspects = snapshot.suspects.len();
            store.publish(snapshot, alerting.detections().clone());
            suspects
        });
        println!(
            "round {round}: scan {scan:.1?} ({:.0} ns/entry, {suspects} suspects): peak {} KiB, allocated {} KiB, retained {} KiB",
            scan.as_nanos() as f64 / sockets as f64,
            kib(heap.peak),
            kib(heap.allocated),
            heap.retained / 1024,
        );
        if scan_only {
            continue;
        }
        let (text, render, heap) = measure(|| metrics.render());
        println!(
            "         /metrics {render:.1?} ({} bytes): peak {} KiB, allocated {} KiB",
            text.len(),
            kib(heap.peak),
            kib(heap.allocated),
        );
        let (json, read, heap) = measure(|| {
            let mut views = ViewsWriter::new(ConnectionFilter::default());
            pipeline.read(source.as_ref(), NOW_NS, &mut |c| views.push(c));
            views.finish()
        });
        println!(
            "         /connections {read:.1?} ({:.0} ns/entry, {} KiB of JSON): peak {} KiB, allocated {} KiB",
            read.as_nanos() as f64 / sockets as f64,
            kib(json.len()),
            kib(heap.peak),
            kib(heap.allocated),
        );
        if round == 0 {
            dump_for_comparison(&text, &store)?;
        }
    }
    Ok(())
}

/// With `SCAN_BENCH_DUMP=DIR`: the socket-derived metrics and the /alerts answer, to compare the
/// output of two versions of the agent byte for byte.
fn dump_for_comparison(text: &str, store: &SnapshotStore) -> anyhow::Result<()> {
    let Ok(dir) = std::env::var("SCAN_BENCH_DUMP") else {
        return Ok(());
    };
    let stable: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("process_") && !l.contains("scan_duration"))
        .collect();
    std::fs::write(format!("{dir}/metrics.txt"), stable.join("\n"))?;
    let alerts = alerting::group(&store.latest().snapshot);
    std::fs::write(
        format!("{dir}/alerts.json"),
        serde_json::to_string_pretty(&alerts)?,
    )?;
    Ok(())
}
