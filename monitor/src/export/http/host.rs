//! The `Host` check of loopback-only endpoints, against DNS rebinding: a web page on any site
//! can make a browser on this host resolve the site's name to 127.0.0.1 and read the answer as
//! the site's own. Such a request comes from loopback but names a foreign host.

use std::net::IpAddr;

use super::is_loopback;

/// The paths served to loopback clients only unless `--allow-remote-connections`: they show
/// addresses and processes of every connection on the host.
pub(crate) const LOOPBACK_ONLY_PATHS: [&str; 2] = ["/connections", "/alerts"];

/// Whether `host` (a `Host` header or a request URI's authority: name or address, port
/// optional) names this host's loopback: `localhost` or a name under it (RFC 6761), or a
/// loopback address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = without_port(host.trim());
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name);
    literal.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// `name:port` → `name`, `[v6]:port` → `[v6]`; a bare IPv6 address stays whole.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_pass() {
        for host in [
            "localhost",
            "LOCALHOST:9977",
            "localhost.",
            "agent.localhost:9977",
            "127.0.0.1",
            "127.0.0.1:9977",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9977",
            "::1",
            "[::ffff:127.0.0.1]:9977",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn foreign_names_and_addresses_are_refused() {
        for host in [
            "attacker.example",
            "attacker.example:9977",
            "localhost.attacker.example",
            "notlocalhost",
            "10.0.0.1:9977",
            "[2001:db8::1]:9977",
            "0.0.0.0:9977",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
