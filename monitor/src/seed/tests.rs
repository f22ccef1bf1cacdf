//! Privileged end-to-end tests against the running kernel. They need root (sock_diag in other
//! namespaces, setns, `ip netns`); without it they skip, except under CI=true where a skip would
//! hide a broken set-up, so they fail.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor_common::tcp_state;

use super::*;

/// Inode of a socket's file (`fstat` → `st_ino`), what sock_diag reports as `idiag_inode`.
pub(super) fn socket_inode_of(fd: impl AsFd) -> u32 {
    let stat = nix::sys::stat::fstat(fd).expect("fstat on a socket");
    u32::try_from(stat.st_ino).expect("socket inodes are 32-bit")
}

/// Whether a privileged test may run; prints why not.
fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root and CI=true forbids skipping"
    );
    eprintln!("skipping {test}: needs root");
    false
}

/// The cookie `ss -tein` prints (`sk:<hex>`) for the socket with this inode.
fn ss_cookie(inode: u32) -> Option<u64> {
    let out = Command::new("ss").args(["-tein", "-a"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("ino:{inode}");
    let line = text
        .lines()
        .find(|line| line.split_whitespace().any(|t| t == needle))?;
    let hex = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("sk:"))?;
    u64::from_str_radix(hex, 16).ok()
}

fn own_netns() -> Netns {
    let path = PathBuf::from("/proc/self/ns/net");
    let inode = netns::ns_inode(&path).expect("own namespace readable");
    Netns { inode, path }
}

fn find(sockets: &[DiagSocket], local: SocketAddr, remote: SocketAddr) -> &DiagSocket {
    sockets
        .iter()
        .find(|s| s.local == local && s.remote == remote)
        .unwrap_or_else(|| panic!("{local} -> {remote} missing from the dump"))
}

#[test]
fn loopback_sockets_match_the_kernel() {
    if !privileged("loopback_sockets_match_the_kernel") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"hello").expect("write");
    let mut got = [0u8; 5];
    server.read_exact(&mut got).expect("read");

    let ns = own_netns();
    let mask = (1 << tcp_state::LISTEN) | (1 << tcp_state::ESTABLISHED);
    let sockets = dump(&ns, mask).expect("dump own namespace");
    let unspecified: SocketAddr = "0.0.0.0:0".parse().expect("addr");

    let expected = [
        (
            &listener.as_fd(),
            listener.local_addr(),
            Ok(unspecified),
            tcp_state::LISTEN,
        ),
        (
            &client.as_fd(),
            client.local_addr(),
            client.peer_addr(),
            tcp_state::ESTABLISHED,
        ),
        (
            &server.as_fd(),
            server.local_addr(),
            server.peer_addr(),
            tcp_state::ESTABLISHED,
        ),
    ];
    for (fd, local, remote, state) in expected {
        let (local, remote) = (local.expect("local"), remote.expect("remote"));
        let sock = find(&sockets, local, remote);
        assert_eq!(sock.state, state, "{local} -> {remote}");
        assert_eq!(sock.family, monitor_common::AF_INET);
        assert_eq!(sock.netns, ns.inode);
        assert_eq!(sock.inode, socket_inode_of(fd), "inode of {local}");
        assert_ne!(sock.cookie, 0);
        assert_eq!(
            Some(sock.cookie),
            ss_cookie(sock.inode),
            "cookie of {local} vs ss"
        );
        assert!(sock.tcp_info.is_some(), "tcp_info for {local}");
    }

    let client_info = find(
        &sockets,
        client.local_addr().expect("addr"),
        client.peer_addr().expect("addr"),
    )
    .tcp_info
    .expect("client tcp_info");
    assert_eq!(client_info.bytes_sent, Some(5));
    let server_info = find(
        &sockets,
        server.local_addr().expect("addr"),
        server.peer_addr().expect("addr"),
    )
    .tcp_info
    .expect("server tcp_info");
    assert_eq!(server_info.bytes_received, Some(5));
}

/// A named namespace with a listener process in it; torn down on drop, panics included.
struct TestNamespace {
    name: String,
    child: Option<Child>,
}

impl TestNamespace {
    fn create(name: &str) -> Self {
        // Guard first, so a failure half-way still deletes what was made.
        let guard = Self {
            name: name.to_owned(),
            child: None,
        };
        ip(&["netns", "add", name]);
        // A fresh namespace's loopback is down, and 127.0.0.1 cannot be bound until it is up.
        ip(&["-n", name, "link", "set", "lo", "up"]);
        guard
    }

    fn spawn_listener(&mut self, port: u16) -> u32 {
        let script = format!(
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(30)"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn python3 in the namespace");
        let pid = child.id();
        self.child = Some(child);
        pid
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed: {status}");
}

#[test]
fn dump_all_sees_listeners_in_other_namespaces() {
    if !privileged("dump_all_sees_listeners_in_other_namespaces") {
        return;
    }
    let name = format!("tl-seed-test-{}", std::process::id());
    let mut ns = TestNamespace::create(&name);
    let ns_inode = netns::ns_inode(&Path::new("/run/netns").join(&name)).expect("stat netns");
    assert_ne!(ns_inode, own_netns().inode);
    let pid = ns.spawn_listener(5555);
    let wanted: SocketAddr = "127.0.0.1:5555".parse().expect("addr");

    // python3 needs a moment to start and bind.
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let sockets = dump_all(1 << tcp_state::LISTEN);
        if let Some(s) = sockets
            .into_iter()
            .find(|s| s.netns == ns_inode && s.local == wanted)
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "listener in {name} never showed up"
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(found.state, tcp_state::LISTEN);
    assert_ne!(found.inode, 0);
    assert!(
        find_namespaces().iter().any(|n| n.inode == ns_inode),
        "namespace listed"
    );

    let owners = socket_owners();
    let owner = owners.get(&found.inode).expect("listener has an owner");
    assert_eq!(owner.pid, pid, "ip netns exec execs python in place");
    assert!(owner.comm.starts_with("python"), "comm {}", owner.comm);
    drop(ns);
    assert!(!Path::new("/run/netns").join(&name).exists(), "cleaned up");
}
