//! Two network namespaces ("server" and "client") joined by a veth pair, and processes inside them.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

const PEER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tcp_peer.py");

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// `server` gets 10.{subnet}.0.1, `client` 10.{subnet}.0.2.
pub struct NetPair {
    pub server: String,
    pub client: String,
    pub server_ip: String,
    pub client_ip: String,
}

impl NetPair {
    pub fn new(tag: &str, subnet: u8) -> Self {
        let id = std::process::id();
        let pair = Self {
            server: format!("tl-{tag}-s-{id}"),
            client: format!("tl-{tag}-c-{id}"),
            server_ip: format!("10.{subnet}.0.1"),
            client_ip: format!("10.{subnet}.0.2"),
        };
        // Remove leftovers of an earlier run that was killed before its Drop ran.
        for ns in [&pair.server, &pair.client] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        ip(&["netns", "add", &pair.server]);
        ip(&["netns", "add", &pair.client]);
        let (vs, vc) = (format!("tls{subnet}"), format!("tlc{subnet}"));
        ip(&[
            "link",
            "add",
            &vs,
            "netns",
            &pair.server,
            "type",
            "veth",
            "peer",
            "name",
            &vc,
            "netns",
            &pair.client,
        ]);
        for (ns, dev, addr) in [
            (&pair.server, &vs, &pair.server_ip),
            (&pair.client, &vc, &pair.client_ip),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// Inode of a namespace, as the agent reports it in `netns`.
    pub fn inode(ns: &str) -> u64 {
        std::fs::metadata(PathBuf::from("/run/netns").join(ns))
            .expect("stat netns")
            .ino()
    }

    /// Makes the server vanish: it drops every inbound packet, so nothing is acknowledged.
    pub fn drop_server_input(&self) {
        ip_netns_exec(&self.server, &["iptables", "-A", "INPUT", "-j", "DROP"]);
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace also deletes its end of the veth pair.
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip_netns_exec(ns: &str, cmd: &[&str]) {
    let status = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .status()
        .expect("ip netns exec");
    assert!(status.success(), "in {ns}: {cmd:?} failed");
}

/// A tcp_peer.py process inside a namespace; killed on drop. `ip netns exec` execs the command,
/// so `pid` is the pid of the Python process that owns the sockets.
pub struct Peer {
    child: Child,
    pub pid: u32,
}

impl Peer {
    pub fn start(ns: &str, args: &[&str]) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-u", PEER_SCRIPT])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn tcp_peer.py");
        let pid = child.id();
        let stdout = child.stdout.take().expect("peer stdout");
        // Read "ready" on a thread so a peer that never gets there fails the test instead of
        // hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(15)).unwrap_or_default();
        let mut peer = Self { child, pid };
        if line.trim() != "ready" {
            peer.stop();
            panic!("peer {args:?} in {ns} did not start (said {line:?})");
        }
        peer
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}
