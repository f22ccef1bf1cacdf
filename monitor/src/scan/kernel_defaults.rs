//! Reads the host's keepalive defaults and the kernel tick rate (`CONFIG_HZ`) once at start-up.

use std::{io::Read as _, path::Path, time::Duration};

use super::convert::SocketDefaults;

pub(crate) fn load() -> SocketDefaults {
    let fallback = SocketDefaults::default();
    let secs = |name: &str, default: Duration| sysctl(name).map_or(default, Duration::from_secs);
    SocketDefaults {
        hz: config_hz(),
        keepalive_time: secs("tcp_keepalive_time", fallback.keepalive_time),
        keepalive_intvl: secs("tcp_keepalive_intvl", fallback.keepalive_intvl),
        keepalive_probes: sysctl("tcp_keepalive_probes")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(fallback.keepalive_probes),
    }
}

/// net.ipv4.`name` in the agent's network namespace.
pub(crate) fn sysctl(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(Path::new("/proc/sys/net/ipv4").join(name)).ok()?;
    text.trim().parse().ok()
}

/// `CONFIG_HZ` from /proc/config.gz or /boot/config-<release>. Socket keepalive timers are kept in
/// jiffies; without HZ the agent reports custom timers as unknown rather than guess.
fn config_hz() -> Option<u32> {
    let mut text = String::new();
    if let Ok(file) = std::fs::File::open("/proc/config.gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .ok()?;
    } else {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        text = std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()?;
    }
    parse_hz(&text)
}

fn parse_hz(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_config_hz() {
        let config = "# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n";
        assert_eq!(parse_hz(config), Some(250));
        assert_eq!(parse_hz("CONFIG_HZ_1000=y\n"), None);
    }
}
