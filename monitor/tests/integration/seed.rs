//! `sock_diag` seeding against the running kernel: dumps of the agent's own namespace and of one
//! the test creates, checked against the sockets the test opened and against `ss`. These need
//! root (`sock_diag` in other namespaces, setns, `ip netns`); without it they skip, except under
//! CI=true where a skip would hide a broken set-up, so they fail. `finds_our_own_socket` needs no
//! privilege: a process may always read its own file descriptors.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use harness::{
    command::ChildGuard,
    netns::Netns as NamedNamespace,
    privilege::{self, Need},
    ss,
};
use monitor::{
    model::Comm,
    netns::{Netns, find_namespaces, ns_inode},
    sock_diag::{self as seed, DiagSocket, dump, dump_all, socket_owners},
};
use monitor_common::tcp_state;

/// Inode of a socket's file (`fstat` → `st_ino`), what `sock_diag` reports as `idiag_inode`.
fn socket_inode_of(fd: impl AsFd) -> u32 {
    let stat = nix::sys::stat::fstat(fd).expect("fstat on a socket");
    u32::try_from(stat.st_ino).expect("socket inodes are 32-bit")
}

/// The cookie `ss` prints (`sk:<hex>`) for the socket with this inode.
fn ss_cookie(inode: u32) -> Option<u64> {
    let sockets = ss::sockets_here().ok()?;
    sockets.iter().find(|s| s.inode() == Some(inode))?.cookie
}

fn own_netns() -> Netns {
    let path = PathBuf::from("/proc/self/ns/net");
    let inode = ns_inode(&path).expect("own namespace readable");
    Netns { inode, path }
}

fn find(sockets: &[DiagSocket], local: SocketAddr, remote: SocketAddr) -> &DiagSocket {
    sockets
        .iter()
        .find(|s| s.local == local && s.remote == remote)
        .unwrap_or_else(|| panic!("{local} -> {remote} missing from the dump"))
}

#[test]
fn finds_our_own_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let inode = socket_inode_of(&listener);
    let owners = socket_owners();
    let owner = owners.get(&inode).expect("our socket is listed");
    assert_eq!(owner.pid, std::process::id());
    let comm = std::fs::read_to_string("/proc/self/comm").expect("own comm");
    assert_eq!(Comm::from_kernel(&owner.comm), comm.trim_end());
}

/// A process name that is not UTF-8 (any process can `prctl(PR_SET_NAME)` one) is seeded as the
/// lossy name the kernel programs would give it, not as an empty one.
#[test]
fn a_name_that_is_not_utf8_is_seeded_lossily() {
    let script = "import ctypes, socket, sys\n\
        ctypes.CDLL(None).prctl(15, b'bad\\xff\\xfe\\x1bname', 0, 0, 0)\n\
        s = socket.socket()\n\
        s.bind(('127.0.0.1', 0))\n\
        s.listen()\n\
        print('ready', flush=True)\n\
        sys.stdin.read()\n";
    let child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let pid = child.id();
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child_mut().stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("ready line");
    assert_eq!(line.trim(), "ready");
    let owners = socket_owners();
    let owner = owners
        .values()
        .find(|o| o.pid == pid)
        .expect("the child's listener is listed");
    assert_eq!(
        Comm::from_kernel(&owner.comm).as_str(),
        "bad\u{fffd}\u{fffd}\u{1b}name"
    );
}

#[test]
fn loopback_sockets_match_the_kernel() {
    if !privilege::may_run("loopback_sockets_match_the_kernel", Need::Root) {
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

/// A python3 listener on 127.0.0.1:`port` inside `ns`; killed on drop. `ip netns exec` execs
/// python, so the guard's pid is the listener's owner.
fn spawn_listener(ns: &NamedNamespace, port: u16) -> ChildGuard {
    let script = format!(
        "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(30)"
    );
    let child = ns
        .command("python3")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn python3 in the namespace");
    ChildGuard::new(child)
}

#[test]
fn dump_all_sees_listeners_in_other_namespaces() {
    if !privilege::may_run("dump_all_sees_listeners_in_other_namespaces", Need::Root) {
        return;
    }
    let name = format!("tl-seed-test-{}", std::process::id());
    let ns = NamedNamespace::create(name.clone()).expect("create the namespace");
    let ns_inode = ns_inode(&Path::new("/run/netns").join(&name)).expect("stat netns");
    assert_ne!(ns_inode, own_netns().inode);
    let listener = spawn_listener(&ns, 5555);
    let pid = listener.id();
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
    let comm = Comm::from_kernel(&owner.comm);
    assert!(comm.starts_with("python"), "comm {comm}");
    // The listener first, then the namespace: the order the test's old guard tore them down in.
    drop(listener);
    drop(ns);
    assert!(!Path::new("/run/netns").join(&name).exists(), "cleaned up");
}

/// The exact query a verdict is confirmed with: the kernel's answer about one socket, by
/// addresses, ports and cookie, equals what a dump says of it; a wrong cookie (another socket
/// with those addresses) and a closed socket are "no such socket".
#[test]
fn an_exact_query_answers_for_one_socket() {
    if !privilege::may_run("an_exact_query_answers_for_one_socket", Need::Root) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    // The client closes: the server end is in CLOSE_WAIT, the client's in FIN_WAIT2.
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let ns = own_netns();
    let local = server.local_addr().expect("addr");
    let remote = server.peer_addr().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(5);
    let dumped = loop {
        let sockets = dump(&ns, 1 << tcp_state::CLOSE_WAIT).expect("dump");
        if let Some(s) = sockets
            .iter()
            .find(|s| s.local == local && s.remote == remote)
        {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "server end never in CLOSE_WAIT");
        thread::sleep(Duration::from_millis(20));
    };
    let key = |cookie| seed::SocketKey {
        netns: ns.inode,
        family: monitor_common::AF_INET,
        local,
        remote,
        cookie,
    };
    let mut queries = seed::SocketQueries::default();
    let answer = queries
        .query(&key(dumped.cookie))
        .expect("query")
        .expect("the socket exists");
    assert_eq!(answer.cookie, dumped.cookie);
    assert_eq!(answer.state, tcp_state::CLOSE_WAIT);
    assert_eq!(answer.inode, socket_inode_of(&server));
    assert!(answer.tcp_info.is_some(), "with tcp_info");
    assert_eq!(
        queries.query(&key(dumped.cookie ^ 1)).expect("query"),
        None,
        "another cookie is another socket"
    );
    drop(server);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while queries.query(&key(dumped.cookie)).expect("query").is_some() {
        assert!(
            Instant::now() < deadline,
            "a closed socket is still answered for"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
