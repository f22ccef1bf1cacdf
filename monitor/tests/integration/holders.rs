//! The `iter/task_file` reader (`Programs::holders_reader`) against the kernel's own view: real
//! connections in two pairs of namespaces the test creates, among them a socket held by two
//! processes (a descriptor inherited across `fork`) and one whose only holder is a process whose
//! parent exited. One pass must report every socket of those namespaces with `ss -tanieOp`'s
//! holders, cookie and state, ages within `ss -ti`'s tolerance and its byte and segment counts,
//! both ways the program reads `tcp_sock` fields (through `bpf_rdonly_cast`, the default where
//! the kernel has it, and with probe reads, as on kernels before 6.2). Run as root, under the
//! shared kernel test lock; under CI=true a missing privilege fails instead of skipping.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use harness::{
    command::ChildGuard,
    netns::Netns,
    privilege::Need,
    scenario::SERVICE_PORT,
    ss::{self, SsSocket, close_to},
};
use monitor::bpf::{
    Programs, TcpSockReads,
    kernel_state::kernel_hz,
    task_file::{
        TaskFileReader,
        holders::{SocketHolders, by_socket, since_last_ack, since_last_recv, since_last_send},
    },
};
use monitor_common::{holders::HeldSocket, tcp_state};

use crate::common::scenario;

/// Socket table slots for the probes this process loads (only the iterator is used here).
const CAPACITY: u32 = 4096;

/// Connects three sockets to `HOST PORT`, sends on each, then: `shared` stays held by this
/// process and a forked child; `own` by this process only; `inherited` by a grandchild whose
/// parent (the intermediate) has exited. Prints the child's and the grandchild's pids, then
/// "ready", and sleeps; the test kills the grandchild by pid (it is no child of the test's).
const HOLDERS_SCRIPT: &str = r#"
import os, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def connect():
    s = socket.create_connection((host, port))
    s.sendall(b"ping")
    s.recv(4)
    return s
shared, own = connect(), connect()
child = os.fork()
if child == 0:
    own.close()
    time.sleep(3600)
    os._exit(0)
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    shared.close(); own.close(); os.close(r)
    inherited = connect()
    grandchild = os.fork()
    if grandchild == 0:
        os.close(w)
        time.sleep(3600)
        os._exit(0)
    os.write(w, str(grandchild).encode())
    os._exit(0)
os.close(w)
grandchild = int(os.read(r, 32))
os.waitpid(middle, 0)
print(child, grandchild, flush=True)
print("ready", flush=True)
time.sleep(3600)
"#;

/// The holders script's process tree in one namespace: its own pid, the forked child's and the
/// grandchild's (killed on drop).
struct Holders {
    main: ChildGuard,
    child: u32,
    grandchild: u32,
}

impl Holders {
    fn start(ns: &Netns, host: &str) -> Self {
        let spawned = ns
            .command("python3")
            .args(["-u", "-c", HOLDERS_SCRIPT, host, &SERVICE_PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the holders script");
        let mut main = ChildGuard::new(spawned);
        let stdout = main.child_mut().stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let pids = lines.next().expect("pids line").expect("read pids");
        let (child, grandchild) = pids.split_once(' ').expect("two pids");
        let holders = Self {
            main,
            child: child.parse().expect("child pid"),
            grandchild: grandchild.trim().parse().expect("grandchild pid"),
        };
        let ready = lines.next().expect("ready line").expect("read ready");
        assert_eq!(ready, "ready");
        holders
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for pid in [self.child, self.grandchild] {
            // SAFETY: kill(2) of a process this test started (or its descendant).
            unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap_or(0), libc::SIGKILL) };
        }
        self.main.kill();
    }
}

/// `ss -tanieOp` in `ns`: every TCP socket with `tcp_info`, cookie and holders.
pub(crate) fn ss_sockets(ns: &Netns) -> Vec<SsSocket> {
    let out = ns.command("ss").arg("-tanieOp").output().expect("run ss");
    assert!(out.status.success(), "ss failed: {}", out.status);
    ss::parse(&String::from_utf8_lossy(&out.stdout))
}

/// The pids `ss -p` lists as holding `s`, ascending and distinct.
fn ss_pids(s: &SsSocket) -> Vec<u32> {
    s.holders().into_keys().collect()
}

/// One pass's sockets of namespace `inode`, by cookie.
fn pass_in(reader: &TaskFileReader, inode: u64) -> BTreeMap<u64, SocketHolders> {
    let records: Vec<HeldSocket> = reader
        .read()
        .expect("read the task_file iterator")
        .into_iter()
        .filter(|r| u64::from(r.netns) == inode)
        .collect();
    by_socket(&records)
        .into_iter()
        .map(|s| (s.cookie, s))
        .collect()
}

/// Compares one namespace's sockets in the passes before and after `ss` with `ss`'s. Returns
/// the disagreements.
///
/// The program reads the cookie the kernel keeps in the socket, which exists once something
/// asked for it; a first `ss -e` (`sock_diag`) makes it for every socket of `ns`.
fn compare(reader: &TaskFileReader, ns: &Netns, hz: u32) -> (Vec<String>, Vec<SsSocket>) {
    ss_sockets(ns);
    let before = pass_in(reader, ns.inode());
    let lines = ss_sockets(ns);
    let after = pass_in(reader, ns.inode());
    let ss_cookies: BTreeSet<u64> = lines
        .iter()
        .map(|s| s.cookie.expect("ss -e prints sk:"))
        .collect();
    assert_eq!(
        before.keys().copied().collect::<BTreeSet<_>>(),
        ss_cookies,
        "sockets of {}: one pass vs ss",
        ns.name()
    );
    assert_eq!(after.len(), before.len(), "the second pass sees the same");
    let mut wrong = Vec::new();
    for line in &lines {
        let cookie = line.cookie.expect("cookie");
        let (first, second) = (&before[&cookie], &after[&cookie]);
        let who = format!(
            "{} {} -> {} sk:{cookie:x}",
            line.state, line.local, line.remote
        );
        if first.pids() != ss_pids(line) {
            wrong.push(format!(
                "{who}: holders {:?} vs ss {:?}",
                first.pids(),
                line.fields.get("users")
            ));
        }
        let state = tcp_state::name(first.kernel.state).unwrap_or("?");
        if state != line.state {
            wrong.push(format!("{who}: state {state}"));
        }
        if first.kernel.state == tcp_state::LISTEN {
            continue;
        }
        wrong.extend(values_vs_ss(&who, &first.kernel, &second.kernel, line, hz));
    }
    (wrong, lines)
}

/// Where the kernel values of one socket, read twice (`first` before `line`, `second` after),
/// disagree with `ss -tanieO`'s `line`: the byte and segment counters (the connections are idle
/// by then, so they are what ss shows; ss leaves out a count of 0) and the ages of the last
/// send, receive and ACK (within ss's tolerance of either read).
pub(crate) fn values_vs_ss(
    who: &str,
    first: &HeldSocket,
    second: &HeldSocket,
    line: &SsSocket,
    hz: u32,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (key, ours) in [
        ("bytes_sent", first.bytes_sent),
        ("bytes_received", first.bytes_received),
        ("segs_in", u64::from(first.segs_in)),
    ] {
        let kernel: u64 = line.fields.get(key).map_or(0, |v| v.parse().expect(key));
        if ours != kernel {
            wrong.push(format!("{who}: {key} {ours} vs ss {kernel}"));
        }
    }
    if first.recv_queue != line.recv_q {
        wrong.push(format!(
            "{who}: recv_queue {} vs ss Recv-Q {}",
            first.recv_queue, line.recv_q
        ));
    }
    for (key, age) in [
        ("lastsnd", since_last_send as fn(&HeldSocket, u32) -> _),
        ("lastrcv", since_last_recv),
        ("lastack", since_last_ack),
    ] {
        // ss leaves out an age of 0 ms.
        let kernel = line.ms(key).unwrap_or(0.0);
        let secs = |s: &HeldSocket| age(s, hz).expect("HZ").as_secs_f64();
        let (a, b) = (secs(first), secs(second));
        if !close_to(a, kernel) && !close_to(b, kernel) {
            wrong.push(format!("{who}: {key} {a:.3}/{b:.3} s vs ss {kernel:.3} s"));
        }
    }
    wrong
}

#[test]
fn one_pass_reports_every_socket_of_every_namespace_with_its_holders() {
    // Two scenarios: two namespace pairs, each with its own subnet.
    let scenarios: Vec<_> = (0..2)
        .map_while(|_| scenario("holders_one_pass", Need::RootAndKernelBtf))
        .collect();
    if scenarios.len() < 2 {
        return;
    }
    let mut servers = Vec::new();
    let mut holders = Vec::new();
    for sc in &scenarios {
        servers.push(sc.server(&["echo"]));
        holders.push(Holders::start(&sc.net().client, &sc.net().server_ip));
    }
    let pairs: Vec<_> = scenarios
        .iter()
        .map(harness::scenario::Scenario::net)
        .collect();
    let mut cast = Programs::load(CAPACITY, false).expect("load the probes");
    // bpf_rdonly_cast came with Linux 6.2: from there on the default reads through it.
    let expected = if kernel_at_least(6, 2) {
        TcpSockReads::Cast
    } else {
        TcpSockReads::Probe
    };
    assert_eq!(cast.tcp_sock_reads, expected, "tcp_sock reads by default");
    let mut probed = Programs::load_with_probe_reads(CAPACITY).expect("load the probes");
    assert_eq!(probed.tcp_sock_reads, TcpSockReads::Probe);
    let readers = [&mut cast, &mut probed].map(|programs| {
        let reads = programs.tcp_sock_reads;
        let reader = programs
            .holders_reader()
            .expect("load the task_file iterator");
        (reads, reader)
    });
    let hz = kernel_hz().expect("kernel tick rate");

    let mut wrong = Vec::new();
    for (pair, tree) in pairs.into_iter().zip(&holders) {
        for (reads, reader) in &readers {
            let (server_wrong, server_lines) = compare(reader, &pair.server, hz);
            wrong.extend(server_wrong.into_iter().map(|w| format!("{reads:?}: {w}")));
            // The listener and three accepted sockets.
            assert_eq!(server_lines.len(), 4, "server sockets: {server_lines:?}");
            let (client_wrong, client_lines) = compare(reader, &pair.client, hz);
            wrong.extend(client_wrong.into_iter().map(|w| format!("{reads:?}: {w}")));
            assert_eq!(client_lines.len(), 3, "client sockets: {client_lines:?}");
            // The scenario itself, so a wrong set-up cannot pass by agreeing with ss.
            let mut client_pids: Vec<Vec<u32>> = client_lines.iter().map(ss_pids).collect();
            client_pids.sort();
            let main = tree.main.id();
            let mut expected = vec![vec![main], vec![main, tree.child], vec![tree.grandchild]];
            for pids in &mut expected {
                pids.sort_unstable();
            }
            expected.sort();
            assert_eq!(client_pids, expected, "holders of the client sockets");
            let sent: u64 = client_lines
                .iter()
                .filter_map(|l| l.fields.get("bytes_sent")?.parse::<u64>().ok())
                .sum();
            assert_eq!(
                sent, 12,
                "each client socket sent 4 bytes: {client_lines:?}"
            );
        }
    }
    assert!(wrong.is_empty(), "one pass vs ss:\n{}", wrong.join("\n"));
}

/// Whether the running kernel's release (`uname -r`) is at least `major.minor`.
pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}
