//! A named thread that runs one job over and over, pausing between runs for as long as each run
//! asks, until it is dropped: the scan loop and the kernel-state reader. Their own threads, not
//! a runtime's shared pool, so nothing else (an HTTP client reading slowly) can delay them.

use std::{
    sync::mpsc::{self, RecvTimeoutError},
    thread::JoinHandle,
    time::Duration,
};

/// The running thread. Dropping it stops the thread — at once when it is pausing, else after the
/// run in progress — and joins it.
pub(crate) struct Periodic {
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

/// What ends a pause early.
#[derive(Debug)]
enum Signal {
    Stop,
    Wake,
}

/// Ends the thread's current pause (or the next one, when it is running): it runs again at
/// once. Holding one does not keep the thread alive.
#[derive(Clone, Debug)]
pub(crate) struct Waker(mpsc::Sender<Signal>);

impl Waker {
    /// Asks for a run now; several asks before it starts make one run.
    pub(crate) fn wake(&self) {
        // A stopped thread needs no run.
        let _ = self.0.send(Signal::Wake);
    }
}

impl Periodic {
    /// Starts thread `name` calling `run` at once and then again after the pause each call
    /// returns.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn start(
        name: &str,
        mut run: impl FnMut() -> Duration + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::start_with_last_run(name, move |last| if last { Duration::ZERO } else { run() })
    }

    /// As [`start`](Self::start), calling `run(false)` each time, and once more `run(true)`
    /// when stopped, before the thread ends (a job with something to undo: the probe thread
    /// puts back the options of the sockets it is still probing).
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn start_with_last_run(
        name: &str,
        mut run: impl FnMut(bool) -> Duration + Send + 'static,
    ) -> std::io::Result<Self> {
        let (signals, received) = mpsc::channel::<Signal>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                loop {
                    let pause = run(false);
                    match received.recv_timeout(pause) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(Signal::Wake) => {
                            // Wakes sent while it ran or paused: one run answers them all.
                            while let Ok(signal) = received.try_recv() {
                                if let Signal::Stop = signal {
                                    run(true);
                                    return;
                                }
                            }
                        }
                        Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => {
                            run(true);
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            signals,
            thread: Some(thread),
        })
    }

    /// A [`Waker`] of this thread.
    pub(crate) fn waker(&self) -> Waker {
        Waker(self.signals.clone())
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    /// Runs again after each pause, and a drop during a long pause stops it at once.
    #[test]
    fn runs_until_dropped() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let thread = Periodic::start("test", move || {
            if counted.fetch_add(1, Ordering::SeqCst) < 2 {
                Duration::ZERO
            } else {
                Duration::from_hours(1)
            }
        })
        .expect("thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(std::time::Instant::now() < deadline, "three runs");
            std::thread::yield_now();
        }
        let dropped = std::time::Instant::now();
        drop(thread);
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "stopped mid-pause"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    /// The last run comes once, after the stop, and only then.
    #[test]
    fn the_last_run_follows_the_stop() {
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&runs);
        let thread = Periodic::start_with_last_run("test", move |last| {
            seen.lock().expect("not poisoned").push(last);
            Duration::from_hours(1)
        })
        .expect("thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runs.lock().expect("not poisoned").is_empty() {
            assert!(std::time::Instant::now() < deadline, "a first run");
            std::thread::yield_now();
        }
        drop(thread);
        assert_eq!(*runs.lock().expect("not poisoned"), [false, true]);
    }

    /// A wake ends a long pause at once; a waker kept after the drop neither keeps the thread
    /// alive nor fails.
    #[test]
    fn a_wake_runs_it_again_at_once() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let thread = Periodic::start("test", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Duration::from_hours(1)
        })
        .expect("thread");
        let waker = thread.waker();
        let wait_for = |n: u32| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while runs.load(Ordering::SeqCst) < n {
                assert!(std::time::Instant::now() < deadline, "run {n}");
                std::thread::yield_now();
            }
        };
        wait_for(1);
        waker.wake();
        wait_for(2);
        drop(thread);
        waker.wake();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "one run per wake, none after the stop"
        );
    }
}
