//! The scan against its readers: slow `/connections` clients neither stop scans nor pile up
//! past the cap, and `/healthz` fails once scans stop. Root and the real agent
//! (`cargo xtask test`); under CI=true a missing privilege fails instead of skipping.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use harness::{http, privilege::Need, wait::wait_for};

use crate::common::{SCANS_TO_SHOW, agent_only, scenario};

/// The agent's cap on concurrent `/connections` answers (`http::MAX_CONNECTIONS_STREAMS`).
const STREAMS_CAP: usize = 8;

/// A `/connections` client that reads the status line and nothing more: its answer stays in
/// progress for as long as it is open (when the answer is larger than what the kernel and the
/// agent buffer for it).
struct SlowReader {
    _stream: TcpStream,
    status: u16,
}

impl SlowReader {
    fn open(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the agent");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
            .write_all(b"GET /connections HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("send the request");
        let mut head = [0; 12];
        stream.read_exact(&mut head).expect("status line");
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {head:?}"));
        Self {
            _stream: stream,
            status,
        }
    }
}

#[test]
fn slow_connections_readers_are_capped_and_scans_go_on() {
    let Some(sc) = scenario("slow_connections_readers", Need::RootAndKernelBtf) else {
        return;
    };
    let _net = sc.net();
    let _server = sc.server(&["accept-only"]);
    // 12 000 sockets: a /connections answer of about 7 MB, more than a loopback socket buffers
    // (about 2.6 MB: its send buffer starts at 10 segments of 64 KiB) plus the agent's chunks.
    let _clients = sc.client(&["hold", "6000"]);
    let agent = sc.agent();
    wait_for(
        "the held connections tracked",
        agent.scans(3 * SCANS_TO_SHOW),
        || {
            agent
                .metric("tcp_liveness_connections{state=\"established\"}")
                .filter(|&n| n >= 12_000.0)
        },
    );

    let readers: Vec<SlowReader> = (0..STREAMS_CAP + 4)
        .map(|_| SlowReader::open(agent.port()))
        .collect();
    let statuses: Vec<u16> = readers.iter().map(|r| r.status).collect();
    let expected: Vec<u16> = [200; STREAMS_CAP].into_iter().chain([503; 4]).collect();
    assert_eq!(statuses, expected, "answers in progress are capped");

    // Scans go on, published and healthy, while the readers hold their answers.
    let last_success = || {
        agent
            .metric("tcp_liveness_last_scan_success_timestamp_seconds")
            .expect("last success metric")
    };
    let before = last_success();
    wait_for(
        "scans to go on beside the slow readers",
        agent.scans(3 * SCANS_TO_SHOW / 2),
        || (last_success() >= before + 2.0).then_some(()),
    );
    assert_eq!(
        http::get(agent.port(), "/healthz").expect("healthz"),
        (200, "ok".into())
    );

    // Once the clients go, their slots free.
    drop(readers);
    wait_for(
        "a /connections answer again",
        agent.scans(3 * SCANS_TO_SHOW / 2),
        || matches!(http::get(agent.port(), "/connections"), Ok((200, _))).then_some(()),
    );
}

/// One thread of a process, stopped with ptrace while the others run on; resumed on drop (and
/// by the kernel should the test process die first).
struct StoppedThread {
    tid: libc::pid_t,
}

impl StoppedThread {
    /// Stops the thread of `pid` named `name` (its `comm`).
    fn stop(pid: u32, name: &str) -> Self {
        let mut tasks =
            std::fs::read_dir(format!("/proc/{pid}/task")).expect("threads of the agent");
        let tid: libc::pid_t = tasks
            .find_map(|task| {
                let task = task.ok()?.path();
                let comm = std::fs::read_to_string(task.join("comm")).ok()?;
                (comm.trim_end() == name).then(|| task.file_name()?.to_str()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no thread named {name} in {pid}"));
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: ptrace requests on a thread id, with no memory passed in or out.
        let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) };
        assert_eq!(
            seized,
            0,
            "PTRACE_SEIZE {tid}: {}",
            std::io::Error::last_os_error()
        );
        // From here on the guard detaches, whatever fails next.
        let stopped = Self { tid };
        // SAFETY: as above.
        let interrupted = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) };
        assert_eq!(
            interrupted,
            0,
            "PTRACE_INTERRUPT: {}",
            std::io::Error::last_os_error()
        );
        let mut status = 0;
        // SAFETY: waits for our tracee (a thread: __WALL) and writes its status to `status`.
        let waited = unsafe { libc::waitpid(tid, &raw mut status, libc::__WALL) };
        assert_eq!(waited, tid, "waitpid: {}", std::io::Error::last_os_error());
        assert!(
            libc::WIFSTOPPED(status),
            "thread {tid} not stopped: {status:#x}"
        );
        stopped
    }
}

impl Drop for StoppedThread {
    fn drop(&mut self) {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: detaching our tracee, which resumes it; no memory passed.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, null, null) };
    }
}

/// The scan thread stopped (as a hung kernel read or a deadlock would): `/healthz` turns 503
/// once the last successful scan is older than its limit (10 s at the test's 250 ms interval),
/// while the HTTP threads answer; it recovers when scans resume.
#[test]
fn healthz_fails_while_scans_are_stopped() {
    let Some(sc) = agent_only(
        "healthz_fails_while_scans_are_stopped",
        Need::RootAndKernelBtf,
    ) else {
        return;
    };
    let agent = sc.agent();
    assert_eq!(
        http::get(agent.port(), "/healthz").expect("healthz"),
        (200, "ok".into())
    );

    let scan = StoppedThread::stop(agent.pid(), "scan");
    let stopped_at = Instant::now();
    let body = wait_for(
        "/healthz to fail",
        agent.scans(2 * SCANS_TO_SHOW),
        || match http::get(agent.port(), "/healthz") {
            Ok((503, body)) => Some(body),
            _ => None,
        },
    );
    let after = stopped_at.elapsed();
    assert!(
        body.starts_with("stale: the last successful scan was") && body.ends_with("(limit 10s)"),
        "{body}"
    );
    // The last success was at most one interval before the stop: the limit, not an accident.
    assert!(after >= Duration::from_secs(9), "503 after only {after:?}");

    drop(scan);
    wait_for(
        "/healthz to recover",
        agent.scans(SCANS_TO_SHOW / 2),
        || matches!(http::get(agent.port(), "/healthz"), Ok((200, _))).then_some(()),
    );
}
