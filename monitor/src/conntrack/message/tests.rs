use super::*;

fn tuple(src: &str, dst: &str) -> Tuple {
    Tuple {
        src: src.parse().expect("address"),
        dst: dst.parse().expect("address"),
    }
}

/// A kernel answer: netlink header of `kind`, then `body`.
fn message(kind: u16, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(NLMSG_HEADER + body.len()).expect("small");
    let mut out = len.to_ne_bytes().to_vec();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(body);
    out
}

#[test]
fn an_ipv4_request_names_the_tuple_by_addresses_ports_and_tcp() {
    let bytes = request(
        tuple("10.0.0.1:5000", "10.0.0.2:80"),
        Direction::Original,
        9,
    );
    assert_eq!(bytes.len(), 72, "headers 20, tuple 52");
    assert_eq!(u32_at(&bytes, 0), Some(72));
    assert_eq!(u16_at(&bytes, 4), Some(CT_GET));
    assert_eq!(
        u16_at(&bytes, 6),
        Some(NLM_F_REQUEST),
        "a GET, never a dump"
    );
    assert_eq!(u32_at(&bytes, 8), Some(9));
    assert_eq!(bytes[16], 2, "AF_INET");
    assert_eq!(u16_at(&bytes, 22), Some(CTA_TUPLE_ORIG | NLA_F_NESTED));
    assert_eq!(&bytes[32..36], &[10, 0, 0, 1], "source address");
    assert_eq!(&bytes[40..44], &[10, 0, 0, 2], "destination address");
    assert_eq!(bytes[52], 6, "IPPROTO_TCP");
    assert_eq!(&bytes[60..62], &5000u16.to_be_bytes());
    assert_eq!(&bytes[68..70], &80u16.to_be_bytes());
}

#[test]
fn the_reply_tuple_and_ipv6_and_mapped_addresses() {
    let v6 = request(tuple("[fd00::1]:5000", "[fd00::2]:80"), Direction::Reply, 1);
    assert_eq!(v6[16], 10, "AF_INET6");
    assert_eq!(u16_at(&v6, 22), Some(CTA_TUPLE_REPLY | NLA_F_NESTED));
    assert_eq!(u16_at(&v6, 30), Some(CTA_IP_V6_SRC));
    let mapped = request(
        tuple("[::ffff:10.0.0.1]:5000", "[::ffff:10.0.0.2]:80"),
        Direction::Original,
        1,
    );
    assert_eq!(
        mapped,
        request(
            tuple("10.0.0.1:5000", "10.0.0.2:80"),
            Direction::Original,
            1
        ),
        "a dual-stack socket's IPv4 flow"
    );
    assert_eq!(
        tuple("10.0.0.1:5000", "10.0.0.2:80").reversed(),
        tuple("10.0.0.2:80", "10.0.0.1:5000")
    );
}

#[test]
fn the_answer_gives_the_entrys_seconds_left() {
    let tuple_attr = attribute(CTA_TUPLE_ORIG | NLA_F_NESTED, &[0; 12]);
    let timeout = attribute(CTA_TIMEOUT, &25u32.to_be_bytes());
    let body = [vec![2, 0, 0, 0], tuple_attr.clone(), timeout].concat();
    assert_eq!(answer(&message(CT_NEW, &body)), Answer::Entry(Some(25)));
    let without = [vec![2, 0, 0, 0], tuple_attr].concat();
    assert_eq!(answer(&message(CT_NEW, &without)), Answer::Entry(None));
}

#[test]
fn errors_and_garbage() {
    let enoent = (-libc::ENOENT).to_ne_bytes();
    assert_eq!(
        answer(&message(NLMSG_ERROR, &enoent)),
        Answer::Error(libc::ENOENT)
    );
    assert_eq!(answer(&[1, 2, 3]), Answer::Malformed);
    assert_eq!(answer(&message(77, &[])), Answer::Malformed);
    let bad_attr = [vec![2, 0, 0, 0], vec![2, 0, 7, 0]].concat();
    assert_eq!(answer(&message(CT_NEW, &bad_attr)), Answer::Malformed);
}
