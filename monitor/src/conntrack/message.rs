//! The ctnetlink GET of one TCP flow and its answer, as bytes: the netlink header, the
//! `nfgenmsg` header and the nested tuple attributes (addresses and ports in network byte
//! order, attribute headers in host order). Pure.

use std::net::{IpAddr, SocketAddr};

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET`.
const CT_GET: u16 = (1 << 8) | 1;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW`: the type of the kernel's answer.
const CT_NEW: u16 = 1 << 8;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLMSG_HEADER: usize = 16;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const NFGENMSG: usize = 4;

/// Top-level attributes (`enum ctattr_type`).
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TIMEOUT: u16 = 7;
/// In a tuple (`ctattr_tuple`, `ctattr_ip`, `ctattr_l4proto`).
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// A TCP flow as conntrack keys it: from `src` to `dst`. An IPv4-mapped IPv6 address (a
/// dual-stack socket) is its IPv4 address: conntrack tracks the IPv4 flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl Tuple {
    /// The same flow seen from the other end.
    #[must_use]
    pub fn reversed(self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
        }
    }
}

/// Which of the entry's two tuples the request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Original,
    Reply,
}

/// The GET request for `tuple` as the entry's `direction` tuple, sequence number `seq`.
pub(super) fn request(tuple: Tuple, direction: Direction, seq: u32) -> Vec<u8> {
    let (family, src, dst) = addresses(tuple);
    let (ip_src, ip_dst) = if family == AF_INET {
        (CTA_IP_V4_SRC, CTA_IP_V4_SRC + 1)
    } else {
        (CTA_IP_V6_SRC, CTA_IP_V6_SRC + 1)
    };
    let ip = [attribute(ip_src, &src), attribute(ip_dst, &dst)].concat();
    let proto = [
        attribute(CTA_PROTO_NUM, &[IPPROTO_TCP]),
        attribute(CTA_PROTO_SRC_PORT, &tuple.src.port().to_be_bytes()),
        attribute(CTA_PROTO_DST_PORT, &tuple.dst.port().to_be_bytes()),
    ]
    .concat();
    let inner = [
        attribute(CTA_TUPLE_IP | NLA_F_NESTED, &ip),
        attribute(CTA_TUPLE_PROTO | NLA_F_NESTED, &proto),
    ]
    .concat();
    let kind = match direction {
        Direction::Original => CTA_TUPLE_ORIG,
        Direction::Reply => CTA_TUPLE_REPLY,
    };
    let body = attribute(kind | NLA_F_NESTED, &inner);
    let len = NLMSG_HEADER + NFGENMSG + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&CT_GET.to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0 (NFNETLINK_V0), resource id 0.
    out.extend_from_slice(&[family, 0, 0, 0]);
    out.extend_from_slice(&body);
    out
}

/// What the kernel answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The entry, with the seconds it has left (`CTA_TIMEOUT`; None when the entry has none).
    Entry(Option<u32>),
    /// A netlink error, as a positive errno (`ENOENT`: no such entry).
    Error(i32),
    /// Not a ctnetlink answer, or too short to read.
    Malformed,
}

/// Reads the first message of `buf`.
pub(super) fn answer(buf: &[u8]) -> Answer {
    let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) else {
        return Answer::Malformed;
    };
    let end = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
    match kind {
        NLMSG_ERROR => match buf.get(NLMSG_HEADER..NLMSG_HEADER + 4) {
            Some(code) => {
                let code = i32::from_ne_bytes(code.try_into().unwrap_or_default());
                Answer::Error(code.saturating_neg())
            }
            None => Answer::Malformed,
        },
        CT_NEW => {
            let mut at = NLMSG_HEADER + NFGENMSG;
            while let (Some(attr_len), Some(attr_kind)) = (u16_at(buf, at), u16_at(buf, at + 2)) {
                let attr_len = usize::from(attr_len);
                if attr_len < 4 || at + attr_len > end {
                    return Answer::Malformed;
                }
                if attr_kind & !NLA_F_NESTED == CTA_TIMEOUT && attr_len >= 8 {
                    let secs = buf[at + 4..at + 8].try_into().map(u32::from_be_bytes);
                    return Answer::Entry(secs.ok());
                }
                at += align(attr_len);
            }
            Answer::Entry(None)
        }
        _ => Answer::Malformed,
    }
}

/// The family and both addresses in network byte order; IPv4-mapped IPv6 as IPv4.
fn addresses(tuple: Tuple) -> (u8, Vec<u8>, Vec<u8>) {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let (src, dst) = (plain(tuple.src.ip()), plain(tuple.dst.ip()));
    let family = if src.is_ipv4() && dst.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    };
    (family, octets(src), octets(dst))
}

/// One attribute: length and type in host order, `payload`, padding to 4 bytes.
fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(align(len));
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align(len), 0);
    out
}

fn align(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
