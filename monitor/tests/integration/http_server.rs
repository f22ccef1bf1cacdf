//! The agent's HTTP server against hostile and stuck clients, and with TLS and basic
//! authentication, on the real binary: a slowloris from another namespace while `/metrics` is
//! scraped; SIGTERM with a half-sent request and a `/connections` reader that stopped reading;
//! `curl` and Prometheus itself over TLS with client certificates and basic auth; a foreign
//! `Host` on a loopback-only path. Root (the agent loads its programs); under CI=true a missing
//! privilege fails instead of skipping.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use harness::{
    bpf,
    command::{ChildGuard, run, run_quietly},
    netns::Netns,
    ports::free_port,
    privilege::Need,
    tls::TestPki,
    wait::wait_for,
};

use crate::common::agent_only;
use crate::prom;

/// Half-sent requests: opens N connections to HOST:PORT, each sending a request head without
/// its end, then one more header line per second on each, replacing every connection the
/// server closes, for SECONDS. Prints "ready" once N are open, then at the end how many
/// connections it opened in all.
const SLOWLORIS: &str = r#"
import resource, socket, sys, time
host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
opened = 0
def attack():
    global opened
    s = socket.socket()
    s.settimeout(1)
    opened += 1
    try:
        s.connect((host, port))
        s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        pass
    return s
socks = [attack() for _ in range(n)]
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for i, s in enumerate(socks):
        try:
            s.send(b"X-a: b\r\n")
        except OSError:
            s.close()
            socks[i] = attack()
    time.sleep(1)
print(opened, flush=True)
"#;

/// N established connections on loopback (2N sockets), held until stdin closes. Prints
/// "ready" once all are up.
const SOCKET_PILE: &str = r#"
import resource, socket, sys
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (2 * n + 256, 2 * n + 256))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
held = []
for _ in range(n):
    held.append(socket.create_connection(listener.getsockname()))
    held.append(listener.accept()[0])
print("ready", flush=True)
sys.stdin.read()
"#;

/// `python3 -c script args…` in `ns`, killed on drop, once it printed "ready".
fn python_in(
    ns: &Netns,
    script: &str,
    args: &[&str],
) -> (ChildGuard, BufReader<std::process::ChildStdout>) {
    let child = ns
        .command("python3")
        .args(["-u", "-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut child = ChildGuard::new(child);
    let mut stdout = BufReader::new(child.child_mut().stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        stdout
    });
    let line = rx.recv_timeout(Duration::from_mins(1)).unwrap_or_default();
    assert_eq!(
        line.trim(),
        "ready",
        "python in {} did not start",
        ns.name()
    );
    (child, reader.join().expect("reader thread"))
}

/// A namespace joined to the host by a veth pair: host end 10.229.0.1/24, the namespace's
/// 10.229.0.2/24. Deleting the namespace deletes the pair.
struct HostLink {
    ns: Netns,
}

impl HostLink {
    const HOST_IP: &str = "10.229.0.1";

    fn create() -> Self {
        let ns = Netns::create(harness::netns::unique_name("http")).expect("namespace");
        let host_end = format!("tlh{}", std::process::id() % 1_000_000);
        run_quietly("ip", &["link", "del", &host_end]);
        let link = Self { ns };
        run(
            "ip",
            &[
                "link",
                "add",
                &host_end,
                "type",
                "veth",
                "peer",
                "name",
                "veth-ns",
                "netns",
                link.ns.name(),
            ],
        )
        .expect("veth pair");
        run("ip", &["addr", "add", "10.229.0.1/24", "dev", &host_end]).expect("host address");
        run("ip", &["link", "set", &host_end, "up"]).expect("host end up");
        let ns = link.ns.name();
        run(
            "ip",
            &["-n", ns, "addr", "add", "10.229.0.2/24", "dev", "veth-ns"],
        )
        .expect("address");
        run("ip", &["-n", ns, "link", "set", "veth-ns", "up"]).expect("namespace end up");
        link
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

#[test]
fn slowloris_from_a_namespace_does_not_stop_scrapes() {
    let Some(sc) = agent_only("slowloris_from_a_namespace", Need::RootAndKernelBtf) else {
        return;
    };
    let link = HostLink::create();
    let port = free_port().expect("port");
    let agent = sc
        .launch_on(port)
        .listen_on("0.0.0.0")
        .start()
        .expect("agent");
    let pid = agent.pid();
    let rss_before = rss_kib(pid);

    // Past the header timeout (10 s), so the agent also drops and the attacker replaces.
    let attack_seconds = "16";
    let (mut attacker, mut attacker_out) = python_in(
        &link.ns,
        SLOWLORIS,
        &[HostLink::HOST_IP, &port.to_string(), "1500", attack_seconds],
    );
    let mut slowest = Duration::ZERO;
    let (mut scrapes, mut peak_rss, mut peak_fds) = (0, 0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(14) {
        let asked = Instant::now();
        let (status, body) =
            harness::http::get(port, "/metrics").expect("scrape during the attack");
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("tcp_liveness_build_info"));
        scrapes += 1;
        peak_rss = peak_rss.max(rss_kib(pid));
        peak_fds = peak_fds.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut opened = String::new();
    attacker_out
        .read_line(&mut opened)
        .expect("attacker's count");
    attacker.kill();
    eprintln!(
        "slowloris: {} connections opened; {scrapes} scrapes, slowest {slowest:?}; \
         agent RSS {rss_before} KiB before, peak {peak_rss} KiB; peak open descriptors {peak_fds}",
        opened.trim()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a scrape took {slowest:?}"
    );
    let metric = |series: &str| agent.metric(series).unwrap_or_else(|| panic!("{series}"));
    assert!(
        metric("tcp_liveness_http_connections_refused_total{limit=\"max_connections_per_client\"}")
            > 1000.0
    );
    assert!(
        metric("tcp_liveness_http_connections_dropped_total{reason=\"header_timeout\"}") >= 1.0,
        "half-sent requests dropped at the header timeout"
    );
    assert!(peak_fds < 400, "{peak_fds} descriptors open");
    assert!(
        peak_rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {peak_rss} KiB"
    );
}

/// `FIONREAD`: bytes waiting in `stream`'s receive queue.
fn queued(stream: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &raw mut n) };
    assert_eq!(rc, 0, "FIONREAD");
    usize::try_from(n).unwrap_or(0)
}

#[test]
fn sigterm_with_stuck_clients_exits_in_bounded_time_with_programs_detached() {
    let Some(sc) = agent_only("sigterm_with_stuck_clients", Need::RootAndKernelBtf) else {
        return;
    };
    // 16 000 sockets: a /connections answer of ~9 MB, more than the socket buffers between a
    // client that does not read and the agent hold, so the agent's answer stays in flight.
    let ns = Netns::create(harness::netns::unique_name("pile")).expect("namespace");
    let (_pile, _) = python_in(&ns, SOCKET_PILE, &["8000"]);
    let port = free_port().expect("port");
    let mut agent = sc
        .launch_on(port)
        .stop_within(Duration::from_secs(30))
        .start()
        .expect("agent");
    wait_for("the pile tracked", Duration::from_secs(30), || {
        (agent.metric("tcp_liveness_tracked_sockets")? >= 16_000.0).then_some(())
    });

    let mut half = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
        .expect("half a request");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /connections HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    wait_for("the answer to start", Duration::from_secs(30), || {
        (queued(&slow) > 0).then_some(())
    });
    let programs = bpf::program_ids_of(agent.pid()).expect("agent's programs");
    assert!(!programs.is_empty());

    let asked = Instant::now();
    let status = agent.stop().expect("agent exits");
    let took = asked.elapsed();
    eprintln!("stopped in {took:?} with a half-sent request and a stuck reader");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The kernel frees a program shortly after its last reference goes (RCU), not at once.
    wait_for("every program unloaded", Duration::from_secs(10), || {
        programs
            .iter()
            .all(|&id| bpf::program(id).is_none())
            .then_some(())
    });
    // The answer was cut, not finished: the chunked body never got its last chunk.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(!answer.ends_with(b"0\r\n\r\n"), "the whole answer arrived");
    let mut rest = Vec::new();
    let _ = half.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to half a request");
}

/// `curl -s -o /dev/null -w %{http_code}` with `args`: the status code, or curl's failure.
fn curl(args: &[&str]) -> Result<u16, String> {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new("curl")
        .args([
            "-s",
            "-S",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("run curl");
    if !status.success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        ));
    }
    String::from_utf8_lossy(&stdout)
        .parse()
        .map_err(|e| format!("{e}"))
}

#[test]
fn tls_and_basic_auth_with_curl_and_prometheus() {
    let Some(sc) = agent_only("tls_and_basic_auth", Need::RootAndKernelBtf) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::create(dir.path()).expect("test certificates");
    let hash = bcrypt::hash("s3cret", 8).expect("hash");
    let web_config = dir.path().join("web-config.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .expect("write web config");
    let port = free_port().expect("port");
    let _agent = sc
        .launch_on(port)
        .args(&["--web.config.file", web_config.to_str().unwrap()])
        .spawn()
        .expect("agent");
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let (ca, cert, key) = (
        pki.server_ca.to_str().unwrap(),
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let tls = ["--cacert", ca, "--cert", cert, "--key", key];
    let with = |extra: &[&str], path: &str| {
        let mut args = tls.to_vec();
        args.extend_from_slice(extra);
        let url = url(path);
        args.push(&url);
        curl(&args)
    };
    wait_for("the agent over TLS", Duration::from_mins(1), || {
        (with(&[], "/healthz") == Ok(200)).then_some(())
    });

    let right = ["-u", "prometheus:s3cret"];
    assert_eq!(with(&right, "/metrics"), Ok(200));
    assert_eq!(with(&["-u", "prometheus:wrong"], "/metrics"), Ok(401));
    assert_eq!(with(&[], "/metrics"), Ok(401));
    assert_eq!(with(&right, "/connections"), Ok(200));
    // DNS rebinding: a loopback client naming a foreign host.
    let foreign = ["-u", "prometheus:s3cret", "-H", "Host: attacker.example"];
    assert_eq!(with(&foreign, "/connections"), Ok(403));
    assert_eq!(with(&foreign, "/alerts"), Ok(403));
    // No client certificate, one from a CA the agent does not trust, or plain HTTP: no
    // answer at all.
    let metrics = url("/metrics");
    let user = ["-u", "prometheus:s3cret"];
    let (stranger, stranger_key) = (
        pki.stranger_cert.to_str().unwrap(),
        pki.stranger_key.to_str().unwrap(),
    );
    assert!(curl(&[&["--cacert", ca][..], &user, &[&metrics]].concat()).is_err());
    let untrusted = ["--cacert", ca, "--cert", stranger, "--key", stranger_key];
    assert!(curl(&[&untrusted[..], &user, &[&metrics]].concat()).is_err());
    let plain = format!("http://127.0.0.1:{port}/metrics");
    assert!(curl(&[&user[..], &[&plain]].concat()).is_err());

    // Prometheus itself, as an operator would configure it.
    let job = format!(
        "    scheme: https\n    basic_auth:\n      username: prometheus\n      password: s3cret\n    \
         tls_config:\n      ca_file: {ca}\n      cert_file: {cert}\n      key_file: {key}\n      \
         server_name: localhost\n"
    );
    let prometheus =
        prom::Prometheus::start_scraping(&format!("127.0.0.1:{port}"), "groups: []\n", &job);
    let up = wait_for(
        "Prometheus to scrape over TLS",
        Duration::from_mins(1),
        || {
            let result = prometheus.query("up{job=\"tcp-liveness\"}").ok()?;
            let value = result.first()?["value"][1].as_str()?.to_owned();
            (value == "1").then_some(value)
        },
    );
    assert_eq!(up, "1");
    let built = prometheus.query("tcp_liveness_build_info").expect("query");
    assert_eq!(built.len(), 1, "{built:?}");
}

/// Sets `pid`'s soft open-file limit to `n` (the hard one stays: raising it back would need
/// `CAP_SYS_RESOURCE`, which a container may not have).
fn set_soft_nofile(pid: u32, n: usize) {
    run(
        "prlimit",
        &["--pid", &pid.to_string(), &format!("--nofile={n}:")],
    )
    .expect("prlimit");
}

/// `pid`'s soft open-file limit.
fn soft_nofile(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("Max open files")
}

#[test]
fn accept_errors_are_logged_and_counted_and_the_agent_recovers() {
    let Some(sc) = agent_only("accept_errors", Need::RootAndKernelBtf) else {
        return;
    };
    let log = tempfile::NamedTempFile::new().expect("log file");
    let port = free_port().expect("port");
    let agent = sc
        .launch_on(port)
        .log_to(log.reopen().expect("log file"))
        .start()
        .expect("agent");
    let pid = agent.pid();
    // Room for a few more descriptors only: connections from four clients (within the
    // per-client limit) run the agent out of them.
    let (fds, soft) = (open_fds(pid), soft_nofile(pid));
    set_soft_nofile(pid, fds + 4);
    let clients: Vec<TcpStream> = (2..6)
        .flat_map(|last| (0..8).map(move |_| connect_from([127, 0, 0, last], port)))
        .collect();
    let errors_logged = wait_for(
        "an accept error in the log",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(log.path()).ok()?;
            text.contains("cannot accept HTTP connections")
                .then_some(text)
        },
    );
    assert!(
        errors_logged.contains("Too many open files"),
        "{errors_logged}"
    );
    drop(clients);
    set_soft_nofile(pid, soft);
    let errors = wait_for("/metrics again", Duration::from_secs(20), || {
        agent.metric("tcp_liveness_http_accept_errors_total")
    });
    assert!(errors >= 1.0, "{errors}");
}

/// A connection to the agent on 127.0.0.1:`port` from `ip` (a loopback address other than
/// 127.0.0.1: another client as far as the agent's limits go). std cannot bind before
/// connecting, hence libc.
fn connect_from(ip: [u8; 4], port: u16) -> TcpStream {
    use std::os::fd::FromRawFd as _;
    let addr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap(),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap();
    // SAFETY: plain socket calls on a descriptor we create and hand to TcpStream, which owns
    // it from then on; the addresses are valid sockaddr_in values of the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = addr(ip, 0);
        let rc = libc::bind(fd, (&raw const local).cast(), len);
        assert_eq!(rc, 0, "bind {ip:?}: {}", std::io::Error::last_os_error());
        let remote = addr([127, 0, 0, 1], port);
        let rc = libc::connect(fd, (&raw const remote).cast(), len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}
