//! Wire-format fixtures: netlink datagrams laid out by hand the way the kernel writes them.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_SHUTDOWN: u16 = 8;
const INET_DIAG_CGROUP_ID: u16 = 21;

/// Appends one netlink message (`nlmsghdr` + payload, padded to 4 bytes).
fn push_message(out: &mut Vec<u8>, kind: u16, flags: u16, payload: &[u8]) {
    let len = u32::try_from(16 + payload.len()).expect("small fixture");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&4242u32.to_ne_bytes()); // port id
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn push_nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).expect("small attribute");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

struct Msg {
    family: u8,
    state: u8,
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
    cookie: u64,
    inode: u32,
}

/// `struct inet_diag_msg` followed by attributes.
fn inet_diag_msg(m: &Msg, tcp_info: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![m.family, m.state, 0, 0];
    out.extend_from_slice(&m.sport.to_be_bytes());
    out.extend_from_slice(&m.dport.to_be_bytes());
    out.extend_from_slice(&m.src);
    out.extend_from_slice(&m.dst);
    out.extend_from_slice(&0u32.to_ne_bytes()); // interface
    // sock_diag_save_cookie: cookie[0] = low half, cookie[1] = high half.
    let half = |bits: u64| u32::try_from(bits & 0xffff_ffff).unwrap().to_ne_bytes();
    out.extend_from_slice(&half(m.cookie));
    out.extend_from_slice(&half(m.cookie >> 32));
    for field in [0u32, 0, 0, 1000, m.inode] {
        // expires, rqueue, wqueue, uid, inode
        out.extend_from_slice(&field.to_ne_bytes());
    }
    assert_eq!(out.len(), 72, "sizeof(struct inet_diag_msg)");
    // Attributes the kernel adds unasked come before and after INFO.
    push_nla(&mut out, INET_DIAG_SHUTDOWN, &[0]);
    if let Some(info) = tcp_info {
        push_nla(&mut out, INET_DIAG_INFO, info);
    }
    push_nla(&mut out, INET_DIAG_CGROUP_ID, &77u64.to_ne_bytes());
    out
}

fn v4(ip: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&ip);
    out
}

fn tcp_info_bytes(len: usize, last_data_sent_ms: u32) -> Vec<u8> {
    let mut info = vec![0u8; len];
    info[44..48].copy_from_slice(&last_data_sent_ms.to_ne_bytes());
    info
}

#[test]
fn parses_a_multipart_batch() {
    let established = Msg {
        family: AF_INET,
        state: 1,
        sport: 40_000,
        dport: 6379,
        src: v4([127, 0, 0, 1]),
        dst: v4([127, 0, 0, 2]),
        cookie: 0x1234_5678_9abc_def0,
        inode: 99_001,
    };
    let mapped: Ipv6Addr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped();
    let time_wait = Msg {
        family: AF_INET6,
        state: 6,
        sport: 443,
        dport: 50_000,
        src: Ipv6Addr::LOCALHOST.octets(),
        dst: mapped.octets(),
        cookie: 7,
        inode: 0,
    };
    let mut batch = Vec::new();
    let info = tcp_info_bytes(280, 1_500);
    push_message(&mut batch, 20, 2, &inet_diag_msg(&established, Some(&info)));
    push_message(&mut batch, 20, 2, &inet_diag_msg(&time_wait, None));

    let mut out = Vec::new();
    assert_eq!(
        parse_batch(&batch, 4_026_531_840, &mut out).ok(),
        Some(Batch::More)
    );
    assert_eq!(out.len(), 2);

    let first = &out[0];
    assert_eq!(first.netns, 4_026_531_840);
    assert_eq!(first.cookie, 0x1234_5678_9abc_def0);
    assert_eq!(first.family, 2);
    assert_eq!(first.state, 1);
    assert_eq!(first.local, "127.0.0.1:40000".parse().expect("addr"));
    assert_eq!(first.remote, "127.0.0.2:6379".parse().expect("addr"));
    assert_eq!(first.inode, 99_001);
    let summary = first.tcp_info.expect("INFO attribute parsed");
    assert_eq!(summary.last_data_sent_ms, 1_500);

    let second = &out[1];
    assert_eq!(second.family, 10);
    assert_eq!(second.inode, 0);
    assert_eq!(second.tcp_info, None);
    assert_eq!(second.local, "[::1]:443".parse().expect("addr"));
    assert_eq!(
        second.remote,
        SocketAddr::new(mapped.into(), 50_000),
        "v4-mapped stays V6"
    );
}

#[test]
fn done_ends_the_dump() {
    let mut batch = Vec::new();
    push_message(&mut batch, NLMSG_DONE, 2, &0i32.to_ne_bytes());
    let mut out = Vec::new();
    assert_eq!(parse_batch(&batch, 1, &mut out).ok(), Some(Batch::Done));
    assert!(out.is_empty());
}

#[test]
fn errors_are_reported() {
    let mut batch = Vec::new();
    let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; 16]); // the offending request's header
    push_message(&mut batch, NLMSG_ERROR, 0, &payload);
    let err = parse_batch(&batch, 1, &mut Vec::new()).expect_err("NLMSG_ERROR");
    assert!(
        matches!(&err, SockDiagError::Kernel(e) if e.raw_os_error() == Some(libc::EPERM)),
        "{err}"
    );

    let mut failed_dump = Vec::new();
    push_message(
        &mut failed_dump,
        NLMSG_DONE,
        2,
        &(-libc::EINTR).to_ne_bytes(),
    );
    assert!(matches!(
        parse_batch(&failed_dump, 1, &mut Vec::new()),
        Err(SockDiagError::Kernel(_))
    ));
}

#[test]
fn truncated_datagram_is_a_decode_error() {
    let mut batch = Vec::new();
    push_message(&mut batch, NLMSG_DONE, 2, &0i32.to_ne_bytes());
    batch.truncate(10);
    assert!(matches!(
        parse_batch(&batch, 1, &mut Vec::new()),
        Err(SockDiagError::Decode(_))
    ));
}

#[test]
fn request_asks_for_info_and_keeps_every_state_bit() {
    let mask = (1 << 10) | (1 << 12); // LISTEN | NEW_SYN_RECV
    let bytes = request(AF_INET6, mask);
    // nlmsghdr (16) + inet_diag_req_v2 (56).
    assert_eq!(bytes.len(), 72);
    assert_eq!(
        u16::from_ne_bytes([bytes[4], bytes[5]]),
        20,
        "SOCK_DIAG_BY_FAMILY"
    );
    assert_eq!(bytes[16], AF_INET6);
    assert_eq!(bytes[17], IPPROTO_TCP);
    assert_eq!(bytes[18], 1 << (INET_DIAG_INFO - 1), "idiag_ext = INFO");
    let states = u32::from_ne_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert_eq!(states, mask);
}

#[test]
fn cookie_halves() {
    let mut raw = [0u8; 8];
    raw[..4].copy_from_slice(&0xdead_beefu32.to_ne_bytes());
    raw[4..].copy_from_slice(&0x0000_0001u32.to_ne_bytes());
    assert_eq!(cookie(raw), 0x1_dead_beef);
}
