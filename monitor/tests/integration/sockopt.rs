//! The socket-option primitive of the active features (`Programs::sockopt_control`): the
//! `iter_tcp_sockopt` program changes the options of a socket this test holds, and the test reads
//! them back with its own `getsockopt` — what the owning application would see. Run as root;
//! under CI=true a missing privilege fails instead of skipping.

use std::{
    net::{TcpListener, TcpStream},
    os::fd::{AsRawFd as _, RawFd},
};

use harness::privilege::{self, Need};
use monitor::bpf::Programs as Probes;
use monitor_common::sockopt::{
    OUTCOME_DONE, OUTCOME_NOT_SEEN, SET_KEEPALIVE, SET_KEEPCNT, SET_KEEPIDLE, SET_KEEPINTVL,
    SET_USER_TIMEOUT, SockoptRequest, SockoptValues,
};

const CAPACITY: u32 = 1024;

fn get(fd: RawFd, level: i32, name: i32) -> u32 {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("small");
    // SAFETY: `value` and `len` are valid for writes of their sizes.
    let ret = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut len) };
    assert_eq!(ret, 0, "getsockopt({level}, {name})");
    u32::try_from(value).expect("non-negative option")
}

fn set(fd: RawFd, level: i32, name: i32, value: i32) {
    // SAFETY: `value` is a valid c_int for reads of its size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("small"),
        )
    };
    assert_eq!(ret, 0, "setsockopt({level}, {name}, {value})");
}

/// What the application sees, as [`SockoptValues`].
fn options(fd: RawFd) -> SockoptValues {
    SockoptValues {
        keepalive: get(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        keepidle_s: get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        keepintvl_s: get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        keepcnt: get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        user_timeout_ms: get(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    }
}

fn cookie(fd: RawFd) -> u64 {
    let mut value: u64 = 0;
    let mut len = libc::socklen_t::try_from(size_of::<u64>()).expect("small");
    // SAFETY: as in `get`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    assert_eq!(ret, 0, "SO_COOKIE");
    value
}

const ALL: u32 = SET_KEEPALIVE | SET_KEEPIDLE | SET_KEEPINTVL | SET_KEEPCNT | SET_USER_TIMEOUT;

#[test]
fn options_are_set_on_another_socket_and_put_back_exactly() {
    if !privilege::may_run("sockopt_set_and_restore", Need::RootAndKernelBtf) {
        return;
    }
    let mut probes = Probes::load(CAPACITY, false).expect("load the programs");
    let control = probes.sockopt_control().expect("load iter_tcp_sockopt");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (_server, _) = listener.accept().expect("accept");
    let fd = client.as_raw_fd();
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 11);
    let original = options(fd);
    assert_eq!(original.keepalive, 0);

    let want = SockoptValues {
        keepalive: 1,
        keepidle_s: 7,
        keepintvl_s: 3,
        keepcnt: 127,
        user_timeout_ms: 0,
    };
    let request = SockoptRequest {
        set: SET_KEEPALIVE | SET_KEEPIDLE | SET_KEEPINTVL | SET_KEEPCNT,
        want,
        ..SockoptRequest::default()
    };
    // Cookies count up from 1 per boot: none is this large.
    let gone = u64::MAX;
    let outcome = control
        .apply(&[(cookie(fd), request), (gone, request)])
        .expect("apply");
    let (_, done) = outcome[0];
    assert_eq!(done.outcome, OUTCOME_DONE, "{done:?}");
    assert_eq!(done.error, 0, "{done:?}");
    assert_eq!(done.applied, request.set);
    assert_eq!(done.before, original, "before = what getsockopt said");
    assert_eq!(
        done.explicit, SET_KEEPINTVL,
        "only the interval was ever set"
    );
    assert_eq!(
        done.state,
        u32::from(monitor_common::tcp_state::ESTABLISHED)
    );
    assert_eq!(outcome[1].1.outcome, OUTCOME_NOT_SEEN);
    assert_eq!(options(fd), want, "the application sees the new values");

    // Fill: only where the application left the default — the interval it set stays.
    let fill = SockoptRequest {
        set: ALL,
        fill: ALL,
        want: SockoptValues {
            keepalive: 1,
            keepidle_s: 30,
            keepintvl_s: 5,
            keepcnt: 4,
            user_timeout_ms: 9000,
        },
        ..SockoptRequest::default()
    };
    let (_, filled) = control.apply(&[(cookie(fd), fill)]).expect("fill")[0];
    assert_eq!(
        filled.applied, SET_USER_TIMEOUT,
        "everything else was set above: {filled:?}"
    );
    assert_eq!(options(fd).user_timeout_ms, 9000);

    // Put back what was there: the application's getsockopt answers as before.
    let restore = SockoptRequest {
        set: ALL,
        want: original,
        ..SockoptRequest::default()
    };
    let (_, restored) = control.apply(&[(cookie(fd), restore)]).expect("restore")[0];
    assert_eq!(restored.error, 0, "{restored:?}");
    assert_eq!(options(fd), original);
}
