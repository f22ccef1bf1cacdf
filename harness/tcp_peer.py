#!/usr/bin/env python3
"""TCP peers for the kernel tests: each mode is one connection behaviour the agent must classify.

Prints "ready" on stdout once listening/connected, so the test knows when to look.
Servers:  server HOST PORT MODE   (MODE: echo | no-close: echo, and never close after EOF |
          no-close-worker: no-close, each connection served by a thread named "worker" |
          trickle: 2 s after accept, send 100 bytes every 0.5 s, never read |
          keepalive-after-accept: SO_KEEPALIVE with 2 s / 2 s / 6 probes set right after
          accept, then a blocking read | accept-only: accept, never read, write or close |
          never-accept: listen and never accept: connections wait in the accept queue |
          close: accept and close at once (a client that never closes sits in CLOSE_WAIT) |
          slow-stream: read the request until the client's FIN, then send 1000 bytes every
          0.1 s for N seconds (a response streamed after a half-close), print "streamed", and
          never send or close again)
          server HOST PORT many-ports N: listen on PORT .. PORT+N-1, accept, never read or close:
          one process with a CLOSE_WAIT socket on each of N service ports once the client closes
          server HOST PORT leak-emfile N: set its own soft RLIMIT_NOFILE to N, accept and never
          close (CLOSE_WAIT once the client closes) until accept() fails with EMFILE, then print
          "emfile HELD" (sockets held) and hold everything
Clients:  client HOST PORT churn-rate N: connect and close N times a second, for ever.
Clients:  client HOST PORT close-many N: connect to PORT .. PORT+N-1 and close each at once.
Any mode: the environment variable TCP_PEER_COMM_HEX (hex bytes) renames the process
          (prctl(PR_SET_NAME): any bytes, control characters and invalid UTF-8 included).
Clients:  client HOST PORT MODE [N]   (MODE: busy | idle | close | send | churn | churn-orderly
          (N connections one at a time, each closed by both sides first) | hold (N idle) |
          send-hold (N connections, each sends 100 bytes once and then idles) |
          keepalive (idle, SO_KEEPALIVE with 1 s timers and N probes) | keepalive-sysctl (idle,
          SO_KEEPALIVE with the namespace's sysctl timers) | half-close-hold (shutdown
          our side, keep the socket) | half-close (shutdown, read the reply, close) |
          heartbeat (send a byte every 0.5 s, never read: a long-poll whose peer only ACKs) |
          send (1000 bytes every 0.1 s) | send-user-timeout (send, with TCP_USER_TIMEOUT N ms) |
          idle-report (idle, receive-only; prints "options KEEPALIVE KEEPIDLE KEEPINTVL KEEPCNT
          USER_TIMEOUT" as its own getsockopt returns them, at once and whenever they change;
          on SIGUSR1 it sets its own TCP_KEEPCNT to 5) |
          send-report (send, and when a send fails print "error ERRNO_NAME" and hold the socket;
          on SIGUSR1 print "sent BYTES", the bytes its completed sends passed so far) |
          recv-report (no options of its own; after "ready" prints "options KEEPALIVE IDLE INTVL
          CNT USER_TIMEOUT_MS" as its getsockopt says, again on each SIGUSR1, and on SIGUSR2
          sets its own TCP_KEEPIDLE 100 and prints them again; then blocks in recv() and prints
          "error ERRNO_NAME" or "eof" when it ends) | recv-report-preset
          (recv-report, with SO_KEEPALIVE, TCP_KEEPIDLE 100, TCP_KEEPINTVL 50, TCP_KEEPCNT 5 set
          before connect()) | recv-report-user-timeout (recv-report, with TCP_USER_TIMEOUT N ms
          and no keepalive) | idle-then-send (exchange a message, idle N seconds, send a query,
          print "sent", then block in recv() and print "error ERRNO_NAME", "eof" or "data") |
          half-close-read (send a request, shutdown our side, read until the server closes))
Server mode sink: read and never write.
"""
import ctypes
import errno
import os
import resource
import selectors
import socket
import sys
import threading
import time

PR_SET_NAME = 15


def ready():
    print("ready", flush=True)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(host, port, mode, n):
    srv = socket.socket(family(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(4096)
    ready()
    if mode == "never-accept":
        # Connections complete in the kernel and wait in the accept queue for ever.
        time.sleep(3600)
        return
    held = []  # no-close: keep every socket referenced so nothing closes it

    def handle(conn):
        if mode == "close":
            conn.close()
            return
        if mode == "accept-only":
            held.append(conn)
            return
        if mode == "keepalive-after-accept":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
            try:
                conn.recv(64)  # blocks: no send or receive ever completes on this socket
            except OSError:
                pass
            held.append(conn)
            return
        if mode == "trickle":
            time.sleep(2)  # room for the test to cut the peer off right after the handshake
            while True:
                try:
                    conn.sendall(b"x" * 100)
                except OSError:
                    return
                time.sleep(0.5)
        if mode == "slow-stream":
            slow_stream(conn, n)
            held.append(conn)
            return
        if mode == "no-close-worker":
            # The kernel's name for this thread (what a per-thread `comm` would report).
            with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
                comm.write("worker")
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                break
            if mode in ("echo", "no-close", "no-close-worker"):
                try:
                    conn.sendall(data)
                except OSError:
                    return
        if mode in ("no-close", "no-close-worker"):
            held.append(conn)  # the peer closed; we never do: CLOSE_WAIT
            if mode == "no-close-worker":
                threading.Event().wait()  # the worker lives on, as a pool thread would
        else:
            conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def slow_stream(conn, seconds):
    """Reads the request until the client's FIN (CLOSE_WAIT from then on), streams the response
    for `seconds`, then holds the socket without sending or closing."""
    while conn.recv(65536):
        pass
    end = time.monotonic() + seconds
    while True:
        conn.sendall(b"r" * 1000)
        if time.monotonic() >= end:
            break
        time.sleep(0.1)
    print("streamed", flush=True)  # right after the last send


def serve_many_ports(host, first, n):
    """One process, n listeners, every accepted socket held and never read: CLOSE_WAIT on n ports."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * n + 64)), hard))
    sel = selectors.DefaultSelector()
    for port in range(first, first + n):
        srv = socket.socket(family(host), socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(16)
        srv.setblocking(False)
        sel.register(srv, selectors.EVENT_READ)
    ready()
    held = []
    while True:
        for key, _ in sel.select():
            try:
                conn, _ = key.fileobj.accept()
            except BlockingIOError:
                continue
            held.append(conn)


def leak_until_emfile(host, port, limit):
    """Holds every accepted socket until accept() runs out of descriptors: the time of the
    "emfile" line is when a leaking server fails."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    srv = socket.socket(family(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(4096)
    ready()
    held = []
    while True:
        try:
            conn, _ = srv.accept()
        except OSError as e:
            if e.errno != errno.EMFILE:
                raise
            break
        held.append(conn)
    print(f"emfile {len(held)}", flush=True)
    time.sleep(3600)


def churn_rate(host, port, per_second):
    """Connects and closes `per_second` times a second, on a fixed schedule (no drift)."""
    ready()
    started = time.monotonic()
    for i in range(10**9):
        socket.create_connection((host, port)).close()
        delay = started + (i + 1) / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def close_after_peer(s):
    """Shut our side, read until the peer closes too, then close: an orderly end on both sides."""
    s.shutdown(socket.SHUT_WR)
    while s.recv(64):
        pass
    s.close()


def client(host, port, mode, n):
    if mode in ("hold", "send-hold"):
        held = [socket.create_connection((host, port)) for _ in range(n)]
        if mode == "send-hold":
            for s in held:
                s.sendall(b"q" * 100)
        ready()
        time.sleep(3600)
        return
    if mode == "close-many":
        for port in range(port, port + n):
            socket.create_connection((host, port)).close()
        ready()
        time.sleep(3600)
        return
    if mode in ("churn", "churn-orderly"):
        for _ in range(n):
            s = socket.create_connection((host, port))
            s.sendall(b"x")
            if mode == "churn-orderly":
                close_after_peer(s)  # both ends closed before the next connect
            else:
                s.close()
        ready()
        time.sleep(3600)
        return
    if mode in ("recv-report", "recv-report-preset", "recv-report-user-timeout"):
        user_timeout = n if mode == "recv-report-user-timeout" else None
        recv_report(host, port, mode == "recv-report-preset", user_timeout)
        return
    s = socket.create_connection((host, port))
    if mode == "send-user-timeout":
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, n)
        mode = "send"
    if mode in ("keepalive", "keepalive-sysctl"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if mode == "keepalive":  # else the namespace's tcp_keepalive_* sysctls apply
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, n)
        s.sendall(b"hello")
        s.recv(64)
        ready()
        try:
            s.recv(64)  # blocks until the kernel gives up (ETIMEDOUT) or the peer closes
        except OSError:
            pass
        time.sleep(3600)
    elif mode == "half-close-hold":
        s.sendall(b"hello")
        s.recv(64)
        s.shutdown(socket.SHUT_WR)
        ready()
        time.sleep(3600)
    elif mode == "half-close-read":
        s.sendall(b"request")
        s.shutdown(socket.SHUT_WR)
        ready()
        while s.recv(65536):
            pass
        time.sleep(3600)
    elif mode == "idle-then-send":
        s.sendall(b"hello")
        s.recv(64)
        ready()
        time.sleep(n)
        s.sendall(b"query")
        print("sent", flush=True)
        print(recv_outcome(s), flush=True)
        time.sleep(3600)
    elif mode == "half-close":
        s.sendall(b"hello")
        close_after_peer(s)
        ready()
        time.sleep(3600)
    elif mode == "heartbeat":
        ready()
        while True:
            s.sendall(b".")
            time.sleep(0.5)
    elif mode == "busy":
        ready()
        while True:
            s.sendall(b"ping")
            s.recv(64)
    elif mode == "idle-report":
        import signal

        s.sendall(b"hello")
        s.recv(64)
        # The application changing its own options (a probe must not undo it).
        signal.signal(
            signal.SIGUSR1,
            lambda *_: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5),
        )
        ready()
        last = None
        while True:
            now = options_line(s)
            if now != last:
                print(now, flush=True)
                last = now
            time.sleep(0.02)
    elif mode == "idle":
        s.sendall(b"hello")
        s.recv(64)
        ready()
        time.sleep(3600)
    elif mode == "close":
        s.sendall(b"bye")
        s.recv(64)  # take the echo first: closing with unread data would send a reset
        s.close()
        ready()
        time.sleep(3600)
    elif mode == "send":
        ready()
        while True:
            s.sendall(b"x" * 1000)
            time.sleep(0.1)
    elif mode == "send-report":
        import signal

        sent = [0]  # bytes whose sendall() completed: the application's own progress counter
        signal.signal(signal.SIGUSR1, lambda *_: print(f"sent {sent[0]}", flush=True))
        ready()
        try:
            while True:
                s.sendall(b"x" * 1000)  # blocks once the send buffer is full (a vanished peer)
                sent[0] += 1000
                time.sleep(0.1)
        except OSError as e:
            print(f"error {errno.errorcode.get(e.errno, e.errno)}", flush=True)
        time.sleep(3600)


def options(s):
    """The socket's keepalive options and user timeout, as the application's getsockopt sees them."""
    return (
        s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


def options_line(s):
    """`options(s)` as the line the report modes print."""
    return "options " + " ".join(str(v) for v in options(s))


def recv_outcome(s):
    """How a blocking recv() on `s` ends: "eof", "data", or "error ERRNO_NAME"."""
    try:
        data = s.recv(64)  # PEP 475: a signal handler runs, then recv() resumes
        return "eof" if not data else "data"
    except OSError as e:
        return "error " + errno.errorcode.get(e.errno, str(e.errno))


def recv_report(host, port, preset, user_timeout):
    """A receive-only client: reports its socket options as the application sees them, and how
    its blocking recv() ends."""
    import signal

    s = socket.socket(family(host), socket.SOCK_STREAM)
    if user_timeout is not None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout)
    if preset:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 100)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 50)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
    s.connect((host, port))
    s.sendall(b"hello")
    s.recv(64)
    signal.signal(signal.SIGUSR1, lambda *_: print(options_line(s), flush=True))

    def own_idle(*_):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 100)
        print(options_line(s), flush=True)

    signal.signal(signal.SIGUSR2, own_idle)
    ready()
    print(options_line(s), flush=True)
    print(recv_outcome(s), flush=True)
    time.sleep(3600)


def rename_from_env():
    name = os.environ.get("TCP_PEER_COMM_HEX")
    if name:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_NAME, bytes.fromhex(name), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def main():
    rename_from_env()
    role, host, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if role == "server" and mode == "many-ports":
        serve_many_ports(host, port, n)
    elif role == "server" and mode == "leak-emfile":
        leak_until_emfile(host, port, n)
    elif mode == "churn-rate":
        churn_rate(host, port, n)
    elif role == "server":
        serve(host, port, mode, n)
    else:
        client(host, port, mode, n)


if __name__ == "__main__":
    main()
