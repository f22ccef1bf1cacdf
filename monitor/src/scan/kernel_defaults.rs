//! The defaults a socket inherits, read from the kernel: the tick rate (`CONFIG_HZ`, once at
//! start-up, from the coarse clock's resolution: no kernel config file needed) and the TCP
//! and conntrack sysctls of a network namespace (read from a thread inside it: each namespace has its own
//! `/proc/sys/net`).

use std::{path::Path, time::Duration};

use super::convert::SocketDefaults;
use crate::bpf::kernel_state::kernel_hz;

/// The defaults of the calling thread's network namespace (the agent's own at start-up),
/// with `CONFIG_HZ`. Unreadable values keep the kernel's built-in defaults.
pub(crate) fn load() -> SocketDefaults {
    namespace_sysctls(kernel_hz())
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
        conntrack_established: conntrack_established(),
    }
}

/// `net.netfilter.nf_conntrack_tcp_timeout_established` in the calling thread's network
/// namespace; None when the file is absent (no conntrack) or unreadable.
pub(crate) fn conntrack_established() -> Option<Duration> {
    let path = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established";
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok().map(Duration::from_secs)
}

/// net.ipv4.`name` in the calling thread's network namespace.
fn sysctl(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(Path::new("/proc/sys/net/ipv4").join(name)).ok()?;
    text.trim().parse().ok()
}
