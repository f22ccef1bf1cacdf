//! The server over real loopback sockets, with a small router of its own: limits, timeouts,
//! the `Host` check, authentication, TLS, and shutdown.

use std::{net::IpAddr, path::Path, time::Duration};

use axum::{body::Bytes, routing::get};
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

use super::*;
use crate::export::http::web_config::WebConfig;

/// Bytes of `/big`: more than the socket buffers hold, so a client that does not read leaves
/// the server with an answer it cannot finish.
const BIG: usize = 64 * 1024 * 1024;

fn router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { "metrics" }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/connections",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("connections for {}", peer.ip())
            }),
        )
        .route("/big", get(|| async { Bytes::from(vec![b'x'; BIG]) }))
}

fn options(limits: Limits) -> Options {
    Options {
        limits,
        tls: None,
        auth: None,
        loopback_only: true,
        metrics: ServerMetrics::unregistered(),
    }
}

/// Timeouts short enough for a test, long enough for a loaded machine to answer in.
fn short() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(800),
        shutdown_grace: Duration::from_millis(500),
        ..Limits::default()
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<io::Result<()>>,
    metrics: prometheus::Registry,
}

async fn start(options: Options) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = prometheus::Registry::new();
    let metrics = ServerMetrics::register(&registry).unwrap();
    let options = Options { metrics, ..options };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router(), options, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        server,
        metrics: registry,
    }
}

impl Running {
    /// A sample of the server's metrics, e.g. `tcp_liveness_http_open_connections`.
    fn metric(&self, series: &str) -> u64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&self.metrics.gather())
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in {text}"))
    }

    /// Asks the server to stop; how long it took to return.
    async fn stop(mut self) -> Duration {
        let start = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .expect("server stopped")
            .unwrap()
            .unwrap();
        start.elapsed()
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A connection from another loopback address (another client, as far as limits go).
    async fn connect_from(&self, ip: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        socket.connect(self.addr).await.unwrap()
    }
}

/// Sends `request` and reads the answer to its end (the requests say `Connection: close`);
/// what arrived before a reset, if the server resets.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answer within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

fn get_request(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// Waits until the server closes `stream` (end of stream or reset); how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut sink = vec![0; 1 << 20];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still open after {limit:?}"));
    start.elapsed()
}

#[tokio::test]
async fn a_half_sent_request_is_dropped_at_the_header_timeout() {
    let server = start(options(short())).await;
    let mut half = server.connect().await;
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Idle since it opened, and idle since its answer (keep-alive): closed too, not counted.
    let mut silent = server.connect().await;
    let mut kept = server.connect().await;
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut half, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(400), "{took:?}");
    closed_within(&mut silent, Duration::from_secs(5)).await;
    closed_within(&mut kept, Duration::from_secs(5)).await;
    assert_eq!(
        server.metric("tcp_liveness_http_connections_dropped_total{reason=\"header_timeout\"}"),
        1
    );
    // Others are served meanwhile and after.
    let answer = exchange(server.connect().await, &get_request("/metrics", "x", "")).await;
    assert_eq!(status(&answer), 200);
    assert!(answer.ends_with("metrics"));
    server.stop().await;
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let limits = Limits {
        max_connections: 3,
        max_connections_per_client: 2,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let server = start(options(limits)).await;
    let _held = [
        server.connect_from("127.0.0.2").await,
        server.connect_from("127.0.0.2").await,
    ];
    let mut third = server.connect_from("127.0.0.2").await;
    closed_within(&mut third, Duration::from_secs(5)).await;
    let refused =
        "tcp_liveness_http_connections_refused_total{limit=\"max_connections_per_client\"}";
    assert_eq!(server.metric(refused), 1);
    assert_eq!(server.metric("tcp_liveness_http_open_connections"), 2);

    // Another client still gets the last slot...
    let mut other = server.connect_from("127.0.0.3").await;
    other
        .write_all(get_request("/metrics", "x", "").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.unwrap();
    assert_eq!(status(&answer), 200);
    // ...and with it closed, one more could; while all three are taken, nobody can.
    let _fill = server.connect_from("127.0.0.4").await;
    let mut over = server.connect_from("127.0.0.5").await;
    closed_within(&mut over, Duration::from_secs(5)).await;
    assert_eq!(
        server.metric("tcp_liveness_http_connections_refused_total{limit=\"max_connections\"}"),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_at_the_idle_timeout() {
    let server = start(options(short())).await;
    let mut stuck = server.connect().await;
    stuck
        .write_all(get_request("/big", "x", "").as_bytes())
        .await
        .unwrap();
    // Never read: the server fills the socket buffers, then cannot write; the idle timer runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server.metric("tcp_liveness_http_connections_dropped_total{reason=\"idle_timeout\"}"),
        1
    );
    assert_eq!(server.metric("tcp_liveness_http_open_connections"), 0);
    let mut answer = Vec::new();
    let _ = stuck.read_to_end(&mut answer).await;
    assert!(answer.len() < BIG, "the answer was cut short");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_with_stuck_clients() {
    let limits = Limits {
        header_timeout: Duration::from_mins(1),
        idle_timeout: Duration::from_mins(1),
        shutdown_grace: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = start(options(limits)).await;
    let mut half = server.connect().await;
    half.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    let mut slow = server.connect().await;
    slow.write_all(get_request("/big", "x", "").as_bytes())
        .await
        .unwrap();
    let mut idle = server.connect().await;
    let keep_alive = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    idle.write_all(keep_alive.as_bytes()).await.unwrap();
    let mut first = [0; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // All three held, with the slow reader's answer in flight.
    while server.metric("tcp_liveness_http_open_connections") < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let took = server.stop().await;
    assert!(took < Duration::from_secs(3), "stopped in {took:?}");
    for stream in [&mut half, &mut slow, &mut idle] {
        closed_within(stream, Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn a_large_answer_arrives_whole_through_the_small_buffers() {
    let server = start(options(Limits::default())).await;
    let answer = exchange(server.connect().await, &get_request("/big", "x", "")).await;
    assert_eq!(status(&answer), 200);
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body.len(), BIG);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_server_stops_at_once() {
    let server = start(options(Limits::default())).await;
    let answer = exchange(server.connect().await, &get_request("/healthz", "x", "")).await;
    assert_eq!(status(&answer), 200);
    let took = server.stop().await;
    assert!(took < Duration::from_secs(1), "stopped in {took:?}");
}

#[tokio::test]
async fn loopback_only_paths_refuse_foreign_host_names() {
    let server = start(options(Limits::default())).await;
    let ask = |path: &'static str, host: &'static str| {
        let addr = server.addr;
        async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            exchange(stream, &get_request(path, host, "")).await
        }
    };
    let refused = ask("/connections", "attacker.example:9977").await;
    assert_eq!(status(&refused), 403);
    assert!(
        refused.contains("Host \"attacker.example:9977\" is not one"),
        "{refused}"
    );
    for host in ["localhost:9977", "127.0.0.1", "[::1]:9977"] {
        let answer = ask("/connections", host).await;
        assert_eq!(status(&answer), 200, "{host}");
        assert!(answer.ends_with("connections for 127.0.0.1"), "{answer}");
    }
    // Metrics are for anyone who may connect: any name.
    assert_eq!(status(&ask("/metrics", "attacker.example").await), 200);
    server.stop().await;

    let open = start(Options {
        loopback_only: false,
        ..options(Limits::default())
    })
    .await;
    let stream = open.connect().await;
    let answer = exchange(stream, &get_request("/connections", "agent.example", "")).await;
    assert_eq!(status(&answer), 200, "--allow-remote-connections: any name");
    open.stop().await;
}

#[tokio::test]
async fn basic_auth_guards_every_path_but_healthz() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let auth = BasicAuth::new([("prometheus".to_owned(), hash)].into()).map(Arc::new);
    let server = start(Options {
        auth,
        ..options(Limits::default())
    })
    .await;
    let basic = |credentials: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Authorization: Basic {encoded}\r\n")
    };
    let ask = |path: &'static str, extra: String| {
        let addr = server.addr;
        async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            exchange(stream, &get_request(path, "localhost", &extra)).await
        }
    };
    let none = ask("/metrics", String::new()).await;
    assert_eq!(status(&none), 401);
    assert!(
        none.contains("www-authenticate: Basic realm=\"tcp-liveness\""),
        "{none}"
    );
    assert_eq!(
        status(&ask("/metrics", basic("prometheus:wrong")).await),
        401
    );
    assert_eq!(
        status(&ask("/connections", basic("root:s3cret")).await),
        401
    );
    assert_eq!(
        status(&ask("/metrics", basic("prometheus:s3cret")).await),
        200
    );
    assert_eq!(
        status(&ask("/connections", basic("prometheus:s3cret")).await),
        200
    );
    assert_eq!(status(&ask("/healthz", String::new()).await), 200);
    server.stop().await;
}

/// A TLS client trusting the test CA, with `client` as its certificate if given.
fn tls_client(
    pki: &harness::tls::TestPki,
    client: Option<(&Path, &Path)>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.server_ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = harness::tls::TestPki::create(dir.path()).unwrap();
    let text = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.client_ca.display(),
    );
    let web = WebConfig::parse(&text, dir.path()).unwrap();
    let server = start(Options {
        tls: web.tls.map(|tls| tls.server),
        ..options(Limits::default())
    })
    .await;
    let name = ServerName::try_from("localhost").unwrap();

    let client = tls_client(&pki, Some((&pki.client_cert, &pki.client_key)));
    let stream = client
        .connect(name.clone(), server.connect().await)
        .await
        .unwrap();
    let answer = exchange(stream, &get_request("/connections", "localhost", "")).await;
    assert_eq!(status(&answer), 200);
    assert!(answer.ends_with("connections for 127.0.0.1"), "{answer}");

    // Without a certificate, or with one from a CA the server does not trust: no answer.
    for client in [
        tls_client(&pki, None),
        tls_client(&pki, Some((&pki.stranger_cert, &pki.stranger_key))),
    ] {
        let refused = async {
            let mut stream = client.connect(name.clone(), server.connect().await).await?;
            stream
                .write_all(get_request("/metrics", "localhost", "").as_bytes())
                .await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            io::Result::Ok(answer)
        };
        let outcome = refused.await;
        assert!(
            outcome.as_ref().is_err() || outcome.as_ref().is_ok_and(Vec::is_empty),
            "{outcome:?}"
        );
    }
    // Plain HTTP on the TLS port: no answer either.
    let plain = exchange(server.connect().await, &get_request("/metrics", "x", "")).await;
    assert!(!plain.contains("200 OK"), "{plain}");
    assert!(
        server.metric("tcp_liveness_http_connections_dropped_total{reason=\"tls_handshake\"}") >= 3
    );
    server.stop().await;
}
