//! Paths whose middleboxes forget idle flows (`[[path]]`): a load balancer, NAT gateway or
//! conntrack table between this host and a range of peers drops a flow idle longer than its
//! timeout, and the next packet gets nothing or a reset. Built by `config`; read by the
//! `idle_beyond_path_timeout` rule, which finds a connection's path in O(paths).

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use crate::model::Connection;

/// An address range, IPv4 or IPv6 (`10.0.0.0/8`, `fd00::/8`). An IPv4 range also holds the
/// IPv4-mapped IPv6 addresses of a dual-stack socket (`::ffff:10.1.2.3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The first address, host bits cleared.
    network: IpAddr,
    /// Leading bits that must match, 0..=32 (IPv4) or 0..=128 (IPv6).
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or a bare address (one host).
    ///
    /// # Errors
    /// A message naming the problem: not an address, a length past the family's width, or
    /// host bits set (`10.0.0.1/8`, probably a typo of the range).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address or range"))?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            width
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?
        };
        let cidr = Self {
            network: address,
            prefix,
        };
        if mask(Self::bits(address), prefix, width) != Self::bits(address) {
            return Err(format!(
                "{text:?}: host bits are set (the range starts at {})",
                cidr.masked()
            ));
        }
        Ok(cidr)
    }

    /// Whether `address` is in the range.
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (_, address) => address,
        };
        let width = if address.is_ipv4() { 32 } else { 128 };
        self.network.is_ipv4() == address.is_ipv4()
            && mask(Self::bits(address), self.prefix, width) == Self::bits(self.network)
    }

    fn bits(address: IpAddr) -> u128 {
        match address {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    /// The range's first address, host bits cleared.
    fn masked(&self) -> IpAddr {
        let width = if self.network.is_ipv4() { 32 } else { 128 };
        let bits = mask(Self::bits(self.network), self.prefix, width);
        match self.network {
            IpAddr::V4(_) => IpAddr::V4(u32::try_from(bits).unwrap_or_default().into()),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        }
    }
}

/// `bits` (an address `width` bits wide, right-aligned) with all but the first `prefix` cleared.
fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    let host = u32::from(width - prefix);
    if host >= 128 {
        0
    } else {
        (bits >> host) << host
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The share of a path's idle timeout after which an idle connection is reported
/// (`path_timeout_share`), in thousandths: 800 is 0.8. Whole thousandths keep `Policy` `Eq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share(u16);

impl Share {
    /// The default share, 0.8: reported with a fifth of the timeout left to act.
    pub const DEFAULT: Share = Share(800);

    /// Parses a fraction above 0 and at most 1 (`0.8`), to the thousandth.
    ///
    /// # Errors
    /// A message naming the problem: not a number, or outside (0, 1].
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number (a share such as 0.8)"))?;
        let thousandths = (value * 1000.0).round();
        if !(1.0..=1000.0).contains(&thousandths) {
            return Err(format!("{text} must be above 0 and at most 1"));
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked to be 1..=1000 above"
        )]
        Ok(Self(thousandths as u16))
    }

    /// `timeout` scaled by the share, to the millisecond. In 64 bits (exact up to half a
    /// million years): the conntrack check runs it for every ESTABLISHED socket of a scan, and a
    /// 128-bit division is a library call.
    #[must_use]
    pub fn of(self, timeout: Duration) -> Duration {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(millis.saturating_mul(u64::from(self.0)) / 1000)
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{}.{:03}", self.0 / 1000, self.0 % 1000);
        f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// One `[[path]]`: connections to `remote` (and the ports given) cross a middlebox that forgets
/// a flow idle for `idle_timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTimeout {
    /// The label of `tcp_liveness_path_timeout_at_risk` and the name in the `why` ("aws-nlb").
    pub name: String,
    /// The peers behind the middlebox.
    pub remote: Cidr,
    /// Only connections with this local port, when set.
    pub local_port: Option<u16>,
    /// Only connections with this remote port, when set.
    pub remote_port: Option<u16>,
    /// Idle time after which the middlebox forgets the flow.
    pub idle_timeout: Duration,
    /// Idle time after which a connection is reported: `idle_timeout` times
    /// `path_timeout_share`, computed once when the policy is built.
    pub report_after: Duration,
}

impl PathTimeout {
    /// Whether `c` crosses this path.
    #[must_use]
    pub fn matches(&self, c: &Connection) -> bool {
        self.local_port.is_none_or(|p| c.local.port() == p)
            && self.remote_port.is_none_or(|p| c.remote.port() == p)
            && self.remote.contains(c.remote.ip())
    }
}

#[cfg(test)]
mod tests;
