use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use axum::body::to_bytes;
use monitor_common::{
    AF_INET6, SockActivity,
    tcp_state::{CLOSE_WAIT, ESTABLISHED, TIME_WAIT},
};

use super::*;
use crate::{
    model::{Connection, ConnectionView, Grouping},
    scan::{Snapshot, convert::SocketDefaults},
    verdict::Policy,
};

/// A connection as the scan's snapshot holds it (for /metrics and /alerts).
fn conn(cookie: u64, state: u8) -> Connection {
    let local = "127.0.0.1:9977".parse().unwrap();
    let remote = "[2001:db8::1]:443".parse().unwrap();
    Connection {
        pid: Some(7),
        comm: Some("curl".into()),
        idle: Some(Duration::from_secs(cookie * 10)),
        bytes_sent: 1,
        bytes_received: 2,
        unacked_bytes: Some(0),
        ..Connection::new(cookie, state, local, remote)
    }
}

const SEC: u64 = 1_000_000_000;

/// A kernel-table entry of `curl` (pid 7), [`::1`]:9977 → [`2001:db8::1`]:443, in `state` for
/// `state_secs` and idle for `idle_secs`, as of the test's monotonic clock.
fn entry(state: u8, state_secs: u64, idle_secs: u64) -> SockActivity {
    let now = clock::monotonic_now_ns();
    let mut e = SockActivity::zeroed();
    e.family = AF_INET6;
    e.saddr = Ipv6Addr::LOCALHOST.octets();
    e.daddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
    e.sport = 9977;
    e.dport = 443;
    e.state = state;
    e.tgid = 7;
    e.comm[..4].copy_from_slice(b"curl");
    e.state_since_ns = now - state_secs * SEC;
    e.last_send_ns = now - idle_secs * SEC;
    e.bytes_sent = 1;
    e.bytes_received = 2;
    e
}

fn state_with(allow_remote_connections: bool, table: Vec<(u64, SockActivity)>) -> HttpState {
    let store = Arc::new(SnapshotStore::new());
    let metrics = Arc::new(Metrics::new(Arc::clone(&store), "test"));
    HttpState {
        store,
        metrics,
        source: Arc::new(table),
        pipeline: Arc::new(Pipeline::without_proc(
            SocketDefaults::default(),
            Policy::default(),
        )),
        allow_remote_connections,
        connections_streams: Arc::new(Semaphore::new(MAX_CONNECTIONS_STREAMS)),
        stale_after: Duration::from_secs(10),
    }
}

/// The server as the agent runs it by default, plain HTTP.
fn test_options() -> server::Options {
    server::Options {
        limits: limits::Limits::default(),
        tls: None,
        auth: None,
        loopback_only: true,
        metrics: server_metrics::ServerMetrics::unregistered(),
    }
}

fn state(allow_remote_connections: bool) -> HttpState {
    state_with(allow_remote_connections, Vec::new())
}

#[test]
fn loopback_addresses() {
    assert!(is_loopback(Ipv4Addr::LOCALHOST.into()));
    assert!(is_loopback(Ipv4Addr::new(127, 3, 2, 1).into()));
    assert!(is_loopback(Ipv6Addr::LOCALHOST.into()));
    assert!(is_loopback(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into()));
    assert!(!is_loopback(Ipv4Addr::new(10, 0, 0, 1).into()));
    assert!(!is_loopback(
        Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into()
    ));
    assert!(!is_loopback("2001:db8::1".parse().unwrap()));
    assert!(!is_loopback(Ipv4Addr::UNSPECIFIED.into()));
}

async fn call_connections(state: HttpState, peer: &str) -> (StatusCode, String) {
    let peer = ConnectInfo(peer.parse().unwrap());
    let response = connections(State(state), peer, Query(FilterParams::default())).await;
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn connections_refuses_remote_peers_unless_allowed() {
    let (status, body) = call_connections(state(false), "10.1.2.3:5000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("--allow-remote-connections") && body.contains("10.1.2.3"),
        "{body}"
    );
    assert_eq!(body.trim_end().lines().count(), 1);

    let (status, _) = call_connections(state(false), "[::ffff:127.0.0.1]:5000").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call_connections(state(true), "10.1.2.3:5000").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
}

/// GET `path` on the test server; ureq is blocking, so it runs off the runtime threads.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent.get(&url).call().unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), content_type, body)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn serves_every_route_and_shuts_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let table = vec![
        (1, entry(ESTABLISHED, 100, 10)),
        (6, entry(CLOSE_WAIT, 100, 60)),
        (9, entry(TIME_WAIT, 100, 60)),
        (2, entry(CLOSE_WAIT, 100, 20)),
    ];
    let state = state_with(false, table);
    let store = Arc::clone(&state.store);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, test_options(), async move {
        let _ = stopped.await;
    }));

    assert_eq!(get(addr, "/healthz").await.0, 503);
    assert_eq!(get(addr, "/healthz").await.2, "starting");
    store.scan_succeeded(clock::monotonic_now_ns());
    store.publish(
        Snapshot::from_connections(
            [
                conn(1, ESTABLISHED),
                conn(6, CLOSE_WAIT),
                conn(2, CLOSE_WAIT),
            ],
            Grouping::default(),
        ),
        BTreeMap::default(),
    );
    assert_eq!(
        get(addr, "/healthz").await,
        (200, "text/plain; charset=utf-8".into(), "ok".into())
    );

    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/plain; version=0.0.4")
    );
    assert!(
        body.contains("tcp_liveness_connections{state=\"close_wait\"} 2\n"),
        "{body}"
    );

    let (status, content_type, body) = get(addr, "/connections").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let all: Vec<ConnectionView> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        all.iter().map(|c| c.cookie).collect::<Vec<_>>(),
        [1, 6, 2],
        "the live table, in table order, without TIME_WAIT"
    );
    assert_eq!(all[0].remote, "[2001:db8::1]:443");
    assert_eq!(all[0].comm.as_deref(), Some("curl"));
    // Judged at request time by the scan's pipeline: 100 s in CLOSE_WAIT is past the 60 s default.
    assert_eq!(all[1].suspect, ["close_wait_stuck"]);
    assert!(all[0].suspect.is_empty());
    assert!(
        all[1]
            .idle_seconds
            .is_some_and(|s| (60.0..70.0).contains(&s))
    );

    let (status, _, body) = get(addr, "/connections?state=CLOSE-WAIT&min_idle=30s").await;
    assert_eq!(status, 200);
    let filtered: Vec<ConnectionView> = serde_json::from_str(&body).unwrap();
    assert_eq!(filtered.iter().map(|c| c.cookie).collect::<Vec<_>>(), [6]);

    let (status, _, body) = get(addr, "/connections?min_idle=soon").await;
    assert_eq!(status, 400);
    assert!(
        body.starts_with("invalid query parameter min_idle="),
        "{body}"
    );
    assert_eq!(get(addr, "/nope").await.0, 404);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn alerts_are_grouped_and_loopback_only() {
    let state = state(false);
    let mut suspect = conn(3, CLOSE_WAIT);
    suspect.suspect = vec![crate::model::Reason::CloseWaitStuck];
    state.store.publish(
        Snapshot::from_connections([conn(1, ESTABLISHED), suspect], Grouping::default()),
        BTreeMap::default(),
    );
    let call = |peer: &str| {
        let peer = ConnectInfo(peer.parse().unwrap());
        alerts(State(state.clone()), peer)
    };
    let refused = call("10.1.2.3:5000").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body = to_bytes(refused.into_body(), usize::MAX).await.unwrap();
    assert!(String::from_utf8_lossy(&body).starts_with("/alerts is only served"));

    let ok = call("127.0.0.1:5000").await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body = to_bytes(ok.into_body(), usize::MAX).await.unwrap();
    let view: AlertsView = serde_json::from_slice(&body).unwrap();
    assert_eq!(view.alerts.len(), 1);
    assert_eq!(view.alerts[0].owner, "curl");
    assert_eq!(view.alerts[0].samples[0].cookie, 3);
}

#[tokio::test]
async fn connections_filters_the_live_table_like_json_filters() {
    let mut other_ns = entry(ESTABLISHED, 100, 100);
    other_ns.netns = 5;
    let table = vec![
        (1, entry(ESTABLISHED, 100, 10)),
        (2, other_ns),
        (3, entry(CLOSE_WAIT, 10, 10)),
    ];
    let state = state_with(false, table);
    let call = |query: &str| {
        let params = serde_json::from_value(serde_json::json!(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .collect::<std::collections::HashMap<_, _>>()
        ))
        .unwrap();
        let peer = ConnectInfo("127.0.0.1:1".parse().unwrap());
        let state = state.clone();
        async move {
            let response = connections(State(state), peer, Query(params)).await;
            let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let views: Vec<ConnectionView> = serde_json::from_slice(&body).unwrap();
            views.iter().map(|v| v.cookie).collect::<Vec<_>>()
        }
    };
    assert_eq!(call("").await, [1, 2, 3]);
    assert_eq!(call("netns=5").await, [2]);
    assert_eq!(call("state=established&min_idle=1m").await, [2]);
    assert_eq!(call("state=close_wait").await, [3]);
}

#[tokio::test]
async fn a_large_table_streams_in_pieces_and_arrives_whole() {
    // ~575 bytes per connection: 2 000 connections are about 18 chunks of CONNECTIONS_CHUNK.
    let table: Vec<(u64, SockActivity)> = (1..=2000)
        .map(|cookie| (cookie, entry(ESTABLISHED, 100, 10)))
        .collect();
    let peer = ConnectInfo("127.0.0.1:1".parse().unwrap());
    let response = connections(
        State(state_with(false, table)),
        peer,
        Query(FilterParams::default()),
    )
    .await;
    let mut body = response.into_body().into_data_stream();
    let (mut pieces, mut json) = (0, Vec::new());
    while let Some(piece) = futures_util::StreamExt::next(&mut body).await {
        pieces += 1;
        json.extend_from_slice(&piece.unwrap());
    }
    assert!(pieces > 2, "{pieces} pieces");
    let views: Vec<ConnectionView> = serde_json::from_slice(&json).unwrap();
    assert_eq!(views.len(), 2000);
    assert!(views.iter().map(|v| v.cookie).eq(1..=2000));
}

/// Answers past [`MAX_CONNECTIONS_STREAMS`] are refused while the others are still being read,
/// and a slot frees once its client has gone.
#[tokio::test]
async fn concurrent_connections_answers_are_capped() {
    // ~1.1 MB per answer: far more than the few chunks a producer may buffer, so an answer
    // whose body nobody reads holds its slot.
    let table: Vec<(u64, SockActivity)> = (1..=2000)
        .map(|cookie| (cookie, entry(ESTABLISHED, 100, 10)))
        .collect();
    let state = state_with(false, table);
    let call = || {
        let peer = ConnectInfo("127.0.0.1:1".parse().unwrap());
        connections(State(state.clone()), peer, Query(FilterParams::default()))
    };
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_STREAMS {
        let response = call().await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    let refused = call().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    let body = to_bytes(refused.into_body(), usize::MAX).await.unwrap();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "8 /connections answers are already in progress; try again later\n"
    );

    // One client goes: its producer notices at its next chunk and the slot frees.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = call().await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn healthz_fails_once_the_last_successful_scan_is_too_old() {
    let mut state = state(false);
    state.stale_after = Duration::from_secs(2);
    state.store.publish(Snapshot::default(), BTreeMap::new());
    let answer = |state: HttpState| async move {
        let response = healthz(State(state)).await;
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    assert_eq!(
        answer(state.clone()).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "stale: no scan has succeeded".into()
        )
    );
    state.store.scan_succeeded(clock::monotonic_now_ns());
    assert_eq!(answer(state.clone()).await, (StatusCode::OK, "ok".into()));
    state
        .store
        .scan_succeeded(clock::monotonic_now_ns() - 3 * SEC);
    let (status, body) = answer(state).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.starts_with("stale: the last successful scan was 3."),
        "{body}"
    );
}
