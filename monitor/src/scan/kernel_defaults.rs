//! The defaults a socket inherits, read from the kernel: the tick rate (`CONFIG_HZ`, once at
//! start-up) and the TCP sysctls of a network namespace (read from a thread inside it: each
//! namespace has its own `/proc/sys/net`).

use std::{io::Read as _, path::Path, time::Duration};

use super::convert::SocketDefaults;

/// The defaults of the calling thread's network namespace (the agent's own at start-up),
/// with `CONFIG_HZ`. Unreadable values keep the kernel's built-in defaults.
pub(crate) fn load() -> SocketDefaults {
    namespace_sysctls(config_hz())
}

/// The TCP sysctls of the calling thread's network namespace, with `hz` as the tick rate.
pub(crate) fn namespace_sysctls(hz: Option<u32>) -> SocketDefaults {
    let fallback = SocketDefaults::default();
    let secs = |name: &str, default: Duration| sysctl(name).map_or(default, Duration::from_secs);
    let count = |name: &str, default: u32| {
        sysctl(name)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    };
    SocketDefaults {
        hz,
        keepalive_time: secs("tcp_keepalive_time", fallback.keepalive_time),
        keepalive_intvl: secs("tcp_keepalive_intvl", fallback.keepalive_intvl),
        keepalive_probes: count("tcp_keepalive_probes", fallback.keepalive_probes),
        tcp_retries2: count("tcp_retries2", fallback.tcp_retries2),
    }
}

/// net.ipv4.`name` in the calling thread's network namespace.
fn sysctl(name: &str) -> Option<u64> {
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
