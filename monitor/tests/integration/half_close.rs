//! Half-close is part of TCP, not a leak: a server streaming its response after the client's FIN
//! (`CLOSE_WAIT`) and the client reading it after its `shutdown(SHUT_WR)` (`FIN_WAIT2`) are
//! stuck only once the data stops, whatever the time in the state.

use std::time::{Duration, Instant};

use harness::{agent::SCANS_TO_SHOW, privilege::Need, ss::SsSocket};
use serde_json::Value;

use crate::{
    common::scenario,
    verdicts::{has_reason, owned, wait_for_held_verdict, wait_for_verdict},
};

/// `--close-wait-after` and `--fin-wait2-after`; the server streams for three times as long.
const THRESHOLD: Duration = Duration::from_secs(2);
const STREAM: Duration = Duration::from_secs(6);

fn stuck(c: &Value) -> bool {
    has_reason(c, "close_wait_stuck") || has_reason(c, "fin_wait2_stuck")
}

/// The server's socket in `CLOSE_WAIT` as the kernel shows it (`ss -tanieO`).
fn kernel_close_wait(net: &harness::netns::NetPair) -> Option<SsSocket> {
    let sockets = harness::ss::sockets(&net.server).expect("ss");
    sockets.into_iter().find(|s| s.state == "close_wait")
}

fn bytes_acked(s: &SsSocket) -> u64 {
    s.fields
        .get("bytes_acked")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The client sends its request and shuts its side; the server reads it to the FIN and streams
/// the response for 6 s, then stops without closing. Every scan of the stream: neither side
/// flagged, while the kernel shows the `CLOSE_WAIT` socket sending (`lastsnd` within the
/// threshold, `bytes_acked` growing). After the stream: the server's `CLOSE_WAIT` is
/// `close_wait_stuck` once quiet for the threshold, and the client's `FIN_WAIT2`
/// `fin_wait2_stuck`.
#[test]
fn half_close_is_not_stuck_while_data_moves() {
    let Some(sc) = scenario("half_close_streaming", Need::RootAndKernelBtf) else {
        return;
    };
    let net = sc.net();
    let agent = sc
        .launch()
        .args(&["--close-wait-after", "2s", "--fin-wait2-after", "2s"])
        .start()
        .expect("agent");
    let stream_seconds = STREAM.as_secs().to_string();
    let server = sc.server(&["slow-stream", &stream_seconds]);
    let client = sc.client(&["half-close-read"]);
    let (si, ci) = (net.server.inode(), net.client.inode());
    let deadline = Instant::now() + STREAM + agent.scans(SCANS_TO_SHOW);
    let mut half_closed_since = None;
    let mut acked = Vec::new();
    // One look per scan until the server says the stream ended.
    let ended = loop {
        assert!(Instant::now() < deadline, "the stream never ended");
        if let Some(line) = server.next_line(agent.scan_interval()) {
            assert_eq!(line, "streamed");
            break Instant::now();
        }
        let conns = [agent.connections_in(si), agent.connections_in(ci)].concat();
        if let Some(c) = conns.iter().find(|c| stuck(c)) {
            panic!("flagged while the half-close moves data: {c}");
        }
        let server_side = conns.iter().any(|c| c["state"] == "close_wait");
        let client_side = conns.iter().any(|c| c["state"] == "fin_wait2");
        if let Some(kernel) = kernel_close_wait(net) {
            // `ss` prints `lastsnd` only when it is not 0: absent means sent this millisecond.
            let lastsnd = kernel.ms("lastsnd").unwrap_or(0.0);
            assert!(lastsnd < THRESHOLD.as_secs_f64(), "the kernel: {kernel:?}");
            acked.push(bytes_acked(&kernel));
        }
        if server_side && client_side {
            half_closed_since.get_or_insert_with(Instant::now);
        }
    };
    let half_closed_since = half_closed_since.expect("both half-closed sockets in /connections");
    let observed = ended - half_closed_since;
    assert!(
        observed > THRESHOLD + agent.scans(2),
        "half-closed and streaming for longer than the thresholds: {observed:?}"
    );
    assert!(
        acked.first() < acked.last(),
        "the kernel's bytes acked grow in CLOSE_WAIT: {acked:?}"
    );
    eprintln!(
        "streamed in CLOSE_WAIT/FIN_WAIT2 for {observed:?} unflagged; bytes_acked {:?} → {:?}",
        acked.first(),
        acked.last()
    );

    // The data stopped; the server never closes: a leak now.
    let age = ("state_age_seconds", THRESHOLD);
    // An accepted socket: its owner is named by a pass over the held sockets.
    let (cw, flagged) = wait_for_held_verdict(&agent, si, "close_wait_stuck", age, owned);
    assert_eq!(cw["pid"].as_u64(), Some(u64::from(server.pid())), "{cw}");
    assert!(
        flagged - ended >= THRESHOLD.saturating_sub(Duration::from_millis(100)),
        "flagged for the silence after the stream, not before: {:?}",
        flagged - ended
    );
    let kernel = kernel_close_wait(net).expect("the CLOSE_WAIT socket");
    let lastsnd = kernel.ms("lastsnd").expect("tcp_info lastsnd");
    assert!(lastsnd > THRESHOLD.as_secs_f64(), "the kernel: {kernel:?}");
    let (fw, _) = wait_for_verdict(&agent, ci, "fin_wait2_stuck", age);
    assert_eq!(fw["pid"].as_u64(), Some(u64::from(client.pid())), "{fw}");
    eprintln!(
        "close_wait_stuck {:?} after the stream ended",
        flagged - ended
    );
}
