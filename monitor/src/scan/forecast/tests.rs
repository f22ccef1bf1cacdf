use std::time::Duration;

use super::{procfs, *};
use crate::model::{Comm, Connection};

fn fds(open: u64, max: u64) -> Descriptors {
    Descriptors {
        open,
        max: Some(max),
    }
}

fn candidate(pid: u32, owner: &str, suspects: u64) -> Candidate {
    Candidate {
        pid,
        owner: owner.to_owned(),
        suspects,
    }
}

#[test]
fn slope_fits_a_line_and_needs_two_distinct_points() {
    let line: Vec<(f64, f64)> = (0..10)
        .map(|x| (f64::from(x), 3.0 * f64::from(x) + 7.0))
        .collect();
    assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
    assert_eq!(slope(&[(1.0, 2.0)]), None);
    assert_eq!(slope(&[(1.0, 2.0), (1.0, 5.0)]), None);
}

#[test]
fn time_to_limit_is_the_room_left_over_the_rate() {
    assert_eq!(
        time_to_limit(fds(150, 300), 4.0),
        Some(Duration::from_secs_f64(37.5))
    );
    assert_eq!(time_to_limit(fds(300, 300), 0.0), Some(Duration::ZERO));
    assert_eq!(time_to_limit(fds(150, 300), 0.0), None, "not growing");
    assert_eq!(time_to_limit(fds(150, 300), -1.0), None, "shrinking");
    let unlimited = Descriptors {
        open: 10,
        max: None,
    };
    assert_eq!(time_to_limit(unlimited, 4.0), None);
}

#[test]
fn a_steady_leak_is_forecast_once_the_window_has_enough_readings() {
    let mut forecaster = Forecaster::default();
    let mut last = Vec::new();
    // 4 descriptors a second from 20, read every 250 ms, limit 300.
    for scan in 0..=120_u32 {
        let now = Duration::from_millis(u64::from(scan) * 250);
        let open = 20 + u64::from(scan);
        let suspects = u64::from(scan);
        last = forecaster.observe(now, vec![candidate(7, "leaky", suspects)], |_| {
            Some(fds(open, 300))
        });
        if scan < 40 {
            assert_eq!(last[0].exhaustion_in, None, "10 s of readings needed");
        }
    }
    let f = &last[0];
    assert!((f.fds_per_second.unwrap() - 4.0).abs() < 1e-6);
    assert!((f.suspects_per_second.unwrap() - 4.0).abs() < 1e-6);
    // 140 left at 4/s.
    let eta = f.exhaustion_in.unwrap().as_secs_f64();
    assert!((eta - 40.0).abs() < 1e-6, "{eta}");
    assert!(f.within(Duration::from_hours(1)));
    assert!(!f.within(Duration::from_secs(30)));
}

#[test]
fn readings_older_than_the_window_are_forgotten() {
    let mut forecaster = Forecaster::default();
    let mut last = Vec::new();
    // Growing fast for a window, then flat for a whole window: no longer growing.
    for minute in 0..=12_u64 {
        let open = 100 + 50 * minute.min(5);
        let now = Duration::from_secs(60 * minute);
        last = forecaster.observe(now, vec![candidate(7, "a", 1)], |_| Some(fds(open, 1000)));
    }
    assert_eq!(last[0].fds_per_second, Some(0.0));
    assert_eq!(last[0].exhaustion_in, None);
}

#[test]
fn a_process_that_stops_holding_suspects_starts_afresh() {
    let mut forecaster = Forecaster::default();
    for s in 0..20 {
        forecaster.observe(Duration::from_secs(s), vec![candidate(7, "a", 1)], |_| {
            Some(fds(10 + s, 100))
        });
    }
    forecaster.observe(Duration::from_secs(20), vec![], |_| None);
    let again = forecaster.observe(Duration::from_secs(21), vec![candidate(7, "a", 1)], |_| {
        Some(fds(50, 100))
    });
    assert_eq!(again[0].fds_per_second, None);
    let gone = forecaster.observe(Duration::from_secs(22), vec![candidate(7, "a", 1)], |_| {
        None
    });
    assert!(gone.is_empty(), "a process that exited is left out");
}

#[test]
fn at_the_limit_is_exhausted_without_a_rate() {
    let mut forecaster = Forecaster::default();
    let f = forecaster.observe(Duration::ZERO, vec![candidate(7, "a", 1)], |_| {
        Some(fds(300, 300))
    });
    assert_eq!(f[0].exhaustion_in, Some(Duration::ZERO));
}

#[test]
fn candidates_are_the_top_n_pids_by_suspects() {
    let addr = "127.0.0.1:80".parse().unwrap();
    let conn = |cookie, pid: Option<u32>, comm: &str| {
        let mut c = Connection::new(cookie, monitor_common::tcp_state::CLOSE_WAIT, addr, addr);
        c.pid = pid;
        c.comm = Some(Comm::new(comm));
        c
    };
    let suspects = vec![
        conn(1, Some(10), "a"),
        conn(2, Some(20), "b"),
        conn(3, Some(20), "b"),
        conn(4, Some(30), "c"),
        conn(5, None, "d"),
    ];
    let grouping = Grouping {
        top_n: 2,
        ..Grouping::default()
    };
    assert_eq!(
        candidates(&suspects, grouping),
        [candidate(20, "b", 2), candidate(10, "a", 1)]
    );
}

#[test]
fn per_owner_the_process_closest_to_exhaustion() {
    let f = |pid, owner: &str, open, eta: Option<u64>| ProcessForecast {
        pid,
        owner: owner.to_owned(),
        suspects: 1,
        descriptors: fds(open, 1000),
        fds_per_second: None,
        suspects_per_second: None,
        exhaustion_in: eta.map(Duration::from_secs),
    };
    let all = [
        f(1, "web", 900, None),
        f(2, "web", 100, Some(600)),
        f(3, "web", 200, Some(60)),
        f(4, "db", 10, None),
        f(5, "db", 500, None),
    ];
    let worst: Vec<u32> = worst_per_owner(&all).iter().map(|f| f.pid).collect();
    assert_eq!(worst, [5, 3], "by owner name: db, web");
}

#[test]
fn the_soft_limit_is_read_from_proc_limits() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max processes             63229                63229                processes \n\
                  Max open files            300                  4096                 files     \n";
    assert_eq!(procfs::soft_open_files(limits), Some(Some(300)));
    let unlimited = "Max open files            unlimited            unlimited            files\n";
    assert_eq!(procfs::soft_open_files(unlimited), Some(None));
    assert_eq!(procfs::soft_open_files("Max processes 1 1\n"), None);
    // This test's own process is readable.
    let own = procfs::read(std::process::id()).expect("own /proc");
    assert!(own.open >= 3);
}

#[test]
fn descriptors_in_use_follow_what_the_process_opens() {
    // The oracle: the entries of /proc/self/fd, listed, against the count `read` reports, with
    // 50 more descriptors open in between.
    let listed = || {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .count() as u64
    };
    let pid = std::process::id();
    let before = procfs::read(pid).expect("own /proc").open;
    let files: Vec<std::fs::File> = (0..50)
        .map(|_| std::fs::File::open("/proc/self/status").expect("open"))
        .collect();
    let during = procfs::read(pid).expect("own /proc").open;
    // Other tests' threads open and close files meanwhile: the count moves with them, so
    // compare against a listing taken right after, within that churn.
    let listing = listed();
    assert!(
        during >= before + 50 - 8,
        "{before} before, {during} with 50 more open"
    );
    assert!(
        during.abs_diff(listing) <= 8,
        "stat says {during}, the listing {listing}"
    );
    drop(files);
}
