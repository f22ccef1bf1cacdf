//! The kernel's clock, as the agent reads it: every timestamp the kernel programs store comes
//! from `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`), so every age is computed against this reading.

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock `bpf_ktime_get_ns` reads.
#[must_use]
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so the
    // call cannot fail and leaves `ts` initialised.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`: user and system
/// time, kernel work done on its behalf such as a BPF iterator's run included). Unlike a wall
/// clock it does not grow while the thread waits for a core, so a budget measured with it is
/// the same on a busy host as on an idle one.
#[must_use]
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `monotonic_now_ns`; the per-thread CPU clock exists for every thread.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    std::time::Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_is_monotonic_and_not_realtime() {
        let a = monotonic_now_ns();
        let b = monotonic_now_ns();
        assert!(a > 0 && b >= a);
        let realtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        assert!(
            u128::from(a) < realtime,
            "uptime-based, far below the epoch clock"
        );
    }

    #[test]
    fn thread_cpu_time_counts_work_not_waiting() {
        let before = thread_cpu_time();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = thread_cpu_time().saturating_sub(before);
        // A fixed amount of work, not a wall-clock spin: on a busy machine a spin of some
        // milliseconds may get almost no CPU, while this work needs it whenever it runs.
        let mut x = 0_u64;
        for _ in 0..20_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let worked = thread_cpu_time().saturating_sub(before + slept);
        assert!(slept < std::time::Duration::from_millis(20), "{slept:?}");
        assert!(worked > std::time::Duration::from_millis(5), "{worked:?}");
    }
}
