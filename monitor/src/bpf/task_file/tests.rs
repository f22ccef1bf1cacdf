use std::time::Duration;

use monitor_common::{
    holders::{HS_KEEPOPEN, HS_USEC_TS, HeldSocket},
    tcp_state,
};

use super::{
    RECORD_LEN, decode_records,
    holders::{
        Holder, by_socket, keepalive_on, since_last_ack, since_last_recv, since_last_send,
        since_retrans_start, unacked_bytes,
    },
};

fn record(cookie: u64, tgid: u32, fd: u32) -> HeldSocket {
    let mut s = HeldSocket::zeroed();
    s.cookie = cookie;
    s.tgid = tgid;
    s.fd = fd;
    s.state = tcp_state::ESTABLISHED;
    s
}

/// The records as the iterator writes them, back to back.
fn bytes_of(records: &[HeldSocket]) -> Vec<u8> {
    assert_eq!(size_of_val(records), records.len() * RECORD_LEN);
    // SAFETY: repr(C) records without implicit padding, viewed as their bytes.
    unsafe { std::slice::from_raw_parts(records.as_ptr().cast::<u8>(), size_of_val(records)) }
        .to_vec()
}

#[test]
fn records_decode_in_order_from_unaligned_bytes() {
    let mut last = record(u64::MAX, u32::MAX, 7);
    last.keepalive_probes = 9;
    last.pending_timer = 1;
    let records = [record(1, 100, 3), record(0xdead_beef, 200, 4), last];
    let mut bytes = vec![0u8]; // shifted by one: decoding must not need alignment
    bytes.extend(bytes_of(&records));
    assert_eq!(decode_records(&bytes[1..]), Ok(records.to_vec()));
}

#[test]
fn a_partial_record_is_an_error() {
    let mut bytes = bytes_of(&[record(1, 100, 3)]);
    bytes.extend_from_slice(&[0; 10]);
    assert_eq!(decode_records(&bytes), Err(10));
    assert_eq!(decode_records(&[]), Ok(Vec::new()));
}

#[test]
fn a_socket_held_by_several_processes_is_one_entry_with_every_holder() {
    let mut older = record(5, 300, 4);
    older.now_jiffies = u32::MAX - 1; // the clock wraps between the two visits
    older.lsndtime = 1;
    let mut newer = record(5, 200, 9);
    newer.now_jiffies = 2;
    newer.lsndtime = 2;
    let records = [older, record(9, 100, 3), newer, record(5, 200, 6)];
    let sockets = by_socket(&records);
    assert_eq!(sockets.iter().map(|s| s.cookie).collect::<Vec<_>>(), [5, 9]);
    let shared = &sockets[0];
    assert_eq!(
        shared.holders,
        [
            Holder { tgid: 200, fd: 6 },
            Holder { tgid: 200, fd: 9 },
            Holder { tgid: 300, fd: 4 },
        ]
    );
    assert_eq!(
        shared.pids(),
        [200, 300],
        "one pid per process, dup'ed fds once"
    );
    assert_eq!(shared.kernel.lsndtime, 2, "the latest visit's values");
    assert_eq!(sockets[1].pids(), [100]);
    assert!(by_socket(&[]).is_empty());
}

#[test]
fn ages_count_like_tcp_get_info() {
    let mut s = record(1, 1, 1);
    s.now_jiffies = 3; // wrapped just after the stamps
    s.lsndtime = u32::MAX - 246; // 250 ticks ago
    s.lrcvtime = u32::MAX - 496;
    s.rcv_tstamp = 3;
    assert_eq!(since_last_send(&s, 250), Some(Duration::from_secs(1)));
    assert_eq!(since_last_recv(&s, 250), Some(Duration::from_secs(2)));
    assert_eq!(since_last_ack(&s, 250), Some(Duration::ZERO));
    assert_eq!(since_last_send(&s, 0), None, "unknown HZ");
}

#[test]
fn retransmission_start_in_the_sockets_own_clock() {
    let mut s = record(1, 1, 1);
    s.stamp_now = 10_000;
    assert_eq!(since_retrans_start(&s), None, "nothing retransmitted");
    s.retrans_stamp = 8_500;
    assert_eq!(since_retrans_start(&s), Some(Duration::from_millis(1_500)));
    s.flags |= HS_USEC_TS;
    assert_eq!(since_retrans_start(&s), Some(Duration::from_micros(1_500)));
    s.stamp_now = 5;
    s.retrans_stamp = u32::MAX - 4;
    assert_eq!(since_retrans_start(&s), Some(Duration::from_micros(10)));
}

#[test]
fn unacked_bytes_and_keepalive() {
    let mut s = record(1, 1, 1);
    s.snd_una = u32::MAX - 99;
    s.snd_nxt = 100;
    assert_eq!(unacked_bytes(&s), 200);
    assert!(!keepalive_on(&s));
    s.flags |= HS_KEEPOPEN;
    assert!(keepalive_on(&s));
}
