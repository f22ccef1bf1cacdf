//! Owners are the holders: a connection's `pid`, `comm` and `holders` in `/connections` are the
//! processes holding the socket now, as `ss -tanp` lists them, not the last process that did I/O
//! on it. Two server sockets: one accepted and used by a process that handed it to a daemon-like
//! child and exited (the socket then sits in `CLOSE_WAIT`, held only by the daemon), one held by
//! two processes. Run as root, under the shared kernel test lock; under CI=true a missing
//! privilege fails instead of skipping.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Lines},
    process::{ChildStdout, Stdio},
};

use harness::{
    agent::Agent,
    command::ChildGuard,
    netns::Netns,
    privilege::Need,
    scenario::SERVICE_PORT,
    ss::{self, SsSocket},
};
use serde_json::Value;

use crate::common::scenario;

/// `server HOST PORT`: listens, prints "listening", then serves two connections. The first is
/// accepted by a child renamed "opener", which answers "ping" with "pong", forks a grandchild
/// renamed "holder-daemon" that keeps the socket (and prints "inherited OPENER DAEMON"), and
/// exits without closing it. The second is accepted by the script itself, which answers, forks a
/// child renamed "holder-twin" that keeps it too (and prints "shared TWIN"). Then everything
/// sleeps; the test kills the descendants by pid. A descendant lets go of stdout once it
/// printed: a script that fails ends the test's read instead of hanging it.
///
/// `client HOST PORT`: connects the first, exchanges ping/pong and closes it; connects the
/// second, exchanges ping/pong and keeps it; prints "ready".
const OWNERS_SCRIPT: &str = r#"
import ctypes, os, socket, sys, time
socket.setdefaulttimeout(60)
role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rename(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
def exchange(s, send, expect):
    s.sendall(send)
    assert s.recv(4) == expect
def answer(s):
    assert s.recv(4) == b"ping"
    s.sendall(b"pong")
def report_and_hold(*words):
    # One write(2) of the whole line: the daemon and the twin report at about the same time on
    # the same pipe, and a line written in pieces can interleave with the other's.
    os.write(1, (" ".join(map(str, words)) + "\n").encode())
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    time.sleep(3600)
def child(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid
if role == "client":
    first = socket.create_connection((host, port))
    exchange(first, b"ping", b"pong")
    first.close()
    second = socket.create_connection((host, port))
    exchange(second, b"ping", b"pong")
    print("ready", flush=True)
    time.sleep(3600)
    sys.exit(0)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((host, port))
listener.listen(8)
print("listening", flush=True)
def opener():
    rename("opener")
    conn, _ = listener.accept()
    listener.close()
    answer(conn)
    me = os.getpid()
    def daemon():
        rename("holder-daemon")
        os.setsid()
        report_and_hold("inherited", me, os.getpid())
    child(daemon)
os.waitpid(child(opener), 0)
conn, _ = listener.accept()
answer(conn)
def twin():
    rename("holder-twin")
    listener.close()
    report_and_hold("shared", os.getpid())
child(twin)
time.sleep(3600)
"#;

/// The script in one namespace (killed on drop, with `descendants`).
struct Script {
    main: ChildGuard,
    lines: Lines<BufReader<ChildStdout>>,
    descendants: Vec<u32>,
}

impl Script {
    fn start(ns: &Netns, role: &str, host: &str) -> Self {
        let spawned = ns
            .command("python3")
            .args(["-u", "-c", OWNERS_SCRIPT, role, host])
            .arg(SERVICE_PORT.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the owners script");
        let mut main = ChildGuard::new(spawned);
        let stdout = main.child_mut().stdout.take().expect("stdout");
        Self {
            main,
            lines: BufReader::new(stdout).lines(),
            descendants: Vec::new(),
        }
    }

    /// The next line the script (or a descendant) printed, split into words.
    fn words(&mut self) -> Vec<String> {
        let line = self
            .lines
            .next()
            .expect("the script ended early (its stderr says why)")
            .expect("read the script's output");
        line.split_whitespace().map(str::to_owned).collect()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        for &pid in &self.descendants {
            // SAFETY: kill(2) of a descendant of a process this test started.
            unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap_or(0), libc::SIGKILL) };
        }
        self.main.kill();
    }
}

fn pid(word: &str) -> u32 {
    word.parse().expect("a pid")
}

/// The server socket on the service port in `state`, as `ss -tanp` shows it.
fn ss_socket(ns: &Netns, state: &str) -> Option<SsSocket> {
    let out = ns.command("ss").arg("-tanp").output().expect("run ss");
    assert!(out.status.success(), "ss failed: {}", out.status);
    ss::parse(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .find(|s| s.state == state && s.local.ends_with(&format!(":{SERVICE_PORT}")))
}

/// The agent's connection of the service port in `state` (exactly one).
fn agent_connection(agent: &Agent, ns: &Netns, state: &str) -> Value {
    let port = format!(":{SERVICE_PORT}");
    let found: Vec<Value> = agent
        .connections_in(ns.inode())
        .into_iter()
        .filter(|c| c["state"] == state && c["local"].as_str().is_some_and(|l| l.ends_with(&port)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{state} server sockets in /connections: {found:?}"
    );
    found.into_iter().next().unwrap_or_default()
}

/// `pid`, `comm` and `holders` of `connection` against `ss -p`'s holders: the owner is the
/// lowest holding pid. Returns the disagreements.
fn compare(connection: &Value, ss_holders: &BTreeMap<u32, String>) -> Vec<String> {
    let mut wrong = Vec::new();
    let holders: Vec<Value> = ss_holders
        .iter()
        .map(|(pid, comm)| serde_json::json!({"pid": pid, "comm": comm}))
        .collect();
    if connection["holders"] != Value::Array(holders.clone()) {
        wrong.push(format!(
            "holders {} vs ss {holders:?}",
            connection["holders"]
        ));
    }
    let (owner, name) = ss_holders.iter().next().expect("ss lists a holder");
    if connection["pid"] != *owner || connection["comm"] != name.as_str() {
        let (pid, comm) = (&connection["pid"], &connection["comm"]);
        wrong.push(format!(
            "owner {pid} {comm} vs the lowest holder {owner} {name}"
        ));
    }
    wrong
}

#[test]
fn owners_are_the_processes_holding_the_socket_now() {
    let Some(sc) = scenario("owners_holders", Need::RootAndKernelBtf) else {
        return;
    };
    let agent = sc.agent();
    let net = sc.net();
    let mut server = Script::start(&net.server, "server", &net.server_ip);
    assert_eq!(server.words(), ["listening"]);
    let mut client = Script::start(&net.client, "client", &net.server_ip);
    assert_eq!(client.words(), ["ready"]);
    let (mut opener, mut daemon, mut twin) = (None, None, None);
    while daemon.is_none() || twin.is_none() {
        match server.words().as_slice() {
            [what, a, b] if what == "inherited" => (opener, daemon) = (Some(pid(a)), Some(pid(b))),
            [what, a] if what == "shared" => twin = Some(pid(a)),
            other => panic!("unexpected line from the server script: {other:?}"),
        }
    }
    let (opener, daemon, twin) = (opener.unwrap_or(0), daemon.unwrap_or(0), twin.unwrap_or(0));
    server.descendants.extend([daemon, twin]);
    let main = server.main.id();

    // The scenario itself, so a wrong set-up cannot pass by agreeing with ss: the client's close
    // reached the server (a local FIN: well within the agent's cadence).
    let inherited = harness::wait::wait_for(
        "the inherited server socket in CLOSE-WAIT (ss)",
        agent.scans(4),
        || ss_socket(&net.server, "close_wait"),
    );
    let daemon_only = BTreeMap::from([(daemon, "holder-daemon".to_owned())]);
    assert_eq!(
        inherited.holders(),
        daemon_only,
        "the opener {opener} exited"
    );
    let shared = ss_socket(&net.server, "established").expect("the shared server socket");
    let both = BTreeMap::from([
        (main, "python3".to_owned()),
        (twin, "holder-twin".to_owned()),
    ]);
    assert_eq!(shared.holders(), both);

    // Two passes over the held sockets: the second read the holders after the set-up.
    agent.wait_held_passes(2);
    let mut wrong = Vec::new();
    for (state, ss_holders) in [("close_wait", &daemon_only), ("established", &both)] {
        let connection = agent_connection(&agent, &net.server, state);
        wrong.extend(
            compare(&connection, ss_holders)
                .into_iter()
                .map(|w| format!("{state}: {w}")),
        );
    }
    assert!(
        wrong.is_empty(),
        "/connections vs ss -p:
{}",
        wrong.join(
            "
"
        )
    );
    drop(client);
}
