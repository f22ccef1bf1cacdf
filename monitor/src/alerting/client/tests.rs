use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    sync::mpsc,
};

use serde_json::Value;

use super::*;
use crate::model::Reason;

/// A fake Alertmanager: answers each POST with the next status of `statuses` and hands the
/// (path, JSON body) over the channel.
fn fake_alertmanager(statuses: Vec<u16>) -> (String, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for status in statuses {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: 7\r\nConnection: close\r\n\r\nnope!\r\n"
            );
            (&stream).write_all(reply.as_bytes()).unwrap();
            let path = request_line.split(' ').nth(1).unwrap().to_owned();
            let _ = tx.send((path, serde_json::from_slice(&body).unwrap()));
        }
    });
    (base, rx)
}

fn group(owner: &str) -> AlertGroup {
    AlertGroup::example(Reason::CloseWaitStuck, owner, 6379, 2, 61.0)
}

fn owners(body: &Value) -> Vec<&str> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["owner"].as_str().unwrap())
        .collect()
}

#[test]
fn posts_firing_then_resolved_and_retries_a_rejected_resolution() {
    let (base, posts) = fake_alertmanager(vec![200, 400, 200]);
    let http = super::super::HttpConfig::default().load().unwrap();
    let counters = PushCounters::new();
    let client = AlertmanagerClient::start(
        &format!("{base}/"),
        &http,
        Duration::from_secs(20),
        counters.clone(),
    )
    .unwrap();
    let recv = || posts.recv_timeout(Duration::from_secs(10)).unwrap();

    client.push(vec![group("redis-server")], Vec::new());
    let (path, body) = recv();
    assert_eq!(path, "/api/v2/alerts");
    assert_eq!(owners(&body), ["redis-server"]);
    let alert = &body[0];
    assert_eq!(alert["labels"]["alertname"], "TcpLivenessCloseWaitStuck");
    assert!(
        alert["startsAt"].as_str() < alert["endsAt"].as_str(),
        "{alert}"
    );

    client.push(Vec::new(), Vec::new());
    let (_, rejected) = recv();
    assert_eq!(owners(&rejected), ["redis-server"]);
    assert_eq!(rejected[0]["startsAt"], alert["startsAt"]);
    assert!(rejected[0]["endsAt"].as_str() < alert["endsAt"].as_str());

    // Rejected (400), so the resolution is sent again with the next scan.
    client.push(Vec::new(), Vec::new());
    let (_, retried) = recv();
    assert_eq!(owners(&retried), ["redis-server"]);
    // The counters are updated right after each answer: wait for the third.
    harness_free_wait(|| counters.pushes.get() == 3);
    assert_eq!(counters.failures.get(), 1, "the 400");
}

/// Polls `done` for up to 10 s (the sender thread counts right after the reply is written).
fn harness_free_wait(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
