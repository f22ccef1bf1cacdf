//! Loopback load generators (std threads, blocking sockets): small-message request/response over
//! several connections, connect/close churn, and one bulk stream. Each returns operations per
//! second over its run.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Load {
    /// 64-byte request, 64-byte response, `RR_CONNECTIONS` connections in parallel.
    RequestResponse,
    /// connect, 1-byte request, 1-byte response, close (the server closes first, so `TIME_WAIT`
    /// lands on the server's port, not on the client's ephemeral ports).
    Churn,
    /// One connection, 128 KiB writes.
    Bulk,
}

pub(super) const RR_CONNECTIONS: usize = 4;
const RR_MESSAGE: usize = 64;
const CHURN_CLIENTS: usize = 2;
const BULK_CHUNK: usize = 128 * 1024;

impl Load {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::RequestResponse => "request/response (4 conns, 64 B)",
            Self::Churn => "connect/close churn",
            Self::Bulk => "bulk (1 conn, 128 KiB writes)",
        }
    }

    pub(super) fn unit(self) -> &'static str {
        match self {
            Self::RequestResponse => "transactions/s",
            Self::Churn => "connections/s",
            Self::Bulk => "MB/s",
        }
    }

    /// Runs the load for `duration`; returns its rate in `unit()`.
    pub(super) fn run(self, duration: Duration) -> anyhow::Result<f64> {
        match self {
            Self::RequestResponse => request_response(duration),
            Self::Churn => churn(duration),
            Self::Bulk => bulk(duration).map(|bytes_per_s| bytes_per_s / 1e6),
        }
    }
}

/// A loopback server whose accept loop hands each connection to `serve`; stopped on drop.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(serve: fn(TcpStream), threaded: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                if threaded {
                    thread::spawn(move || serve(stream));
                } else {
                    serve(stream);
                }
            }
        });
        Ok(Self {
            port,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; RR_MESSAGE];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
}

fn request_response(duration: Duration) -> anyhow::Result<f64> {
    let server = Server::start(echo, true)?;
    let port = server.port;
    let started = Instant::now();
    let deadline = started + duration;
    let clients: Vec<_> = (0..RR_CONNECTIONS)
        .map(|_| {
            thread::spawn(move || -> std::io::Result<u64> {
                let mut stream = TcpStream::connect(("127.0.0.1", port))?;
                stream.set_nodelay(true)?;
                let mut buf = [7u8; RR_MESSAGE];
                let mut done = 0;
                while Instant::now() < deadline {
                    stream.write_all(&buf)?;
                    stream.read_exact(&mut buf)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let total = join_total(clients)?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn answer_and_close(mut stream: TcpStream) {
    let mut byte = [0u8; 1];
    if stream.read_exact(&mut byte).is_ok() {
        let _ = stream.write_all(&byte);
    }
}

fn churn(duration: Duration) -> anyhow::Result<f64> {
    let servers: Vec<Server> = (0..CHURN_CLIENTS)
        .map(|_| Server::start(answer_and_close, false))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let deadline = started + duration;
    let clients: Vec<_> = servers
        .iter()
        .map(|server| {
            let port = server.port;
            thread::spawn(move || -> std::io::Result<u64> {
                let mut done = 0;
                let mut byte = [1u8; 1];
                while Instant::now() < deadline {
                    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
                    stream.set_nodelay(true)?;
                    stream.write_all(&byte)?;
                    stream.read_exact(&mut byte)?;
                    // Wait for the server's FIN so that it closes first.
                    let _ = stream.read(&mut byte);
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let total = join_total(clients)?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    drop(servers);
    Ok(rate)
}

fn discard(mut stream: TcpStream) {
    let mut buf = vec![0u8; BULK_CHUNK];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

fn bulk(duration: Duration) -> anyhow::Result<f64> {
    let server = Server::start(discard, true)?;
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))?;
    let buf = vec![3u8; BULK_CHUNK];
    let started = Instant::now();
    let deadline = started + duration;
    let mut bytes = 0u64;
    while Instant::now() < deadline {
        stream.write_all(&buf)?;
        bytes += BULK_CHUNK as u64;
    }
    let rate = bytes as f64 / started.elapsed().as_secs_f64();
    let _ = stream.shutdown(Shutdown::Both);
    Ok(rate)
}

/// Waits for every load client and adds up what they completed.
fn join_total(clients: Vec<thread::JoinHandle<std::io::Result<u64>>>) -> anyhow::Result<u64> {
    let mut total = 0;
    for client in clients {
        total += client
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    Ok(total)
}
