//! Which connections `tcp-liveness destroy` selects: by socket cookie and/or by the addresses of
//! either end, as `ss -K` filters them (`dst 10.0.0.2:6379`, `src :8080`). Pure.

use std::net::{IpAddr, SocketAddr};

/// One end's address filter: an address, a port, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// None: any address.
    pub ip: Option<IpAddr>,
    /// None: any port.
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses `ADDR`, `ADDR:PORT`, `[V6ADDR]:PORT`, `:PORT` or `*:PORT`.
    ///
    /// # Errors
    /// One line naming what is wrong (clap prints it with the flag and exits 2).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not an address: expected ADDR, ADDR:PORT, [IPV6]:PORT or :PORT \
                 (as 10.0.0.2:6379, [2001:db8::1]:443, :8080)"
            )
        };
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self {
                ip: Some(ip),
                port: None,
            });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self {
                ip: Some(addr.ip()),
                port: Some(addr.port()),
            });
        }
        let port = text
            .strip_prefix('*')
            .unwrap_or(text)
            .strip_prefix(':')
            .ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(Self {
            ip: None,
            port: Some(port),
        })
    }

    /// Whether `addr` is this end (an IPv4 address also matches its IPv4-mapped IPv6 form, as
    /// a dual-stack socket shows it).
    #[must_use]
    pub fn matches(&self, addr: SocketAddr) -> bool {
        let ip_matches = self
            .ip
            .is_none_or(|ip| ip == addr.ip() || Some(ip) == mapped_v4(addr.ip()).map(IpAddr::V4));
        ip_matches && self.port.is_none_or(|port| port == addr.port())
    }
}

fn mapped_v4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    }
}

/// What selects a connection: every filter given must match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Selector {
    pub(super) cookie: Option<u64>,
    /// The local end (`ss` `src`).
    pub(super) src: Option<Endpoint>,
    /// The remote end (`ss` `dst`).
    pub(super) dst: Option<Endpoint>,
}

impl Selector {
    /// Whether the socket `cookie` from `local` to `remote` is selected.
    #[must_use]
    pub(super) fn matches(&self, cookie: u64, local: SocketAddr, remote: SocketAddr) -> bool {
        self.cookie.is_none_or(|c| c == cookie)
            && self.src.is_none_or(|e| e.matches(local))
            && self.dst.is_none_or(|e| e.matches(remote))
    }
}

impl std::fmt::Display for Selector {
    /// `cookie 7, dst 10.0.0.2:6379`, as the "not found" line names the filters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(cookie) = self.cookie {
            parts.push(format!("cookie {cookie}"));
        }
        for (name, end) in [("src", self.src), ("dst", self.dst)] {
            if let Some(end) = end {
                let ip = end.ip.map_or("*".to_owned(), |ip| match ip {
                    IpAddr::V6(v6) => format!("[{v6}]"),
                    IpAddr::V4(v4) => v4.to_string(),
                });
                let port = end.port.map_or(String::new(), |p| format!(":{p}"));
                parts.push(format!("{name} {ip}{port}"));
            }
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_forms_ss_takes() {
        let end = |t: &str| Endpoint::parse(t).unwrap();
        assert_eq!(end("10.0.0.2").ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(end("10.0.0.2").port, None);
        assert_eq!(end("10.0.0.2:6379").port, Some(6379));
        assert_eq!(end("[2001:db8::1]:443").port, Some(443));
        assert_eq!(end("2001:db8::1").port, None);
        assert_eq!(
            end(":8080"),
            Endpoint {
                ip: None,
                port: Some(8080)
            }
        );
        assert_eq!(end("*:8080"), end(":8080"));
        for bad in ["", "host:80", ":http", "10.0.0.2:99999", "10.0.0.2:"] {
            let error = Endpoint::parse(bad).unwrap_err();
            assert!(error.contains("is not an address"), "{bad}: {error}");
        }
    }

    #[test]
    fn every_filter_given_must_match() {
        let (local, remote) = (addr("10.0.0.1:40000"), addr("10.0.0.2:6379"));
        let dst = Some(Endpoint::parse("10.0.0.2:6379").unwrap());
        let by_dst = Selector {
            dst,
            ..Selector::default()
        };
        assert!(by_dst.matches(7, local, remote));
        assert!(!by_dst.matches(7, remote, local), "the remote end only");
        let both = Selector {
            cookie: Some(8),
            ..by_dst
        };
        assert!(!both.matches(7, local, remote));
        assert!(both.matches(8, local, remote));
        let src = Some(Endpoint::parse(":40000").unwrap());
        assert!(
            Selector {
                src,
                ..Selector::default()
            }
            .matches(1, local, remote)
        );
        // A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d.
        assert!(by_dst.matches(7, local, addr("[::ffff:10.0.0.2]:6379")));
        assert_eq!(both.to_string(), "cookie 8, dst 10.0.0.2:6379");
    }
}
