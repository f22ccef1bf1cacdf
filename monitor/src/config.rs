//! Agent settings from flags, validated into one [`RunConfig`].

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};
use monitor_common::DEFAULT_TABLE_CAPACITY;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct RunConfig {
    /// Address for /metrics, /connections and /healthz.
    #[arg(long, default_value = "0.0.0.0:9977", env = "TCP_LIVENESS_LISTEN")]
    pub listen: SocketAddr,

    /// How often the kernel table is read into the snapshot served over HTTP.
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub scan_interval: Duration,

    /// Maximum number of sockets tracked in the kernel; inserts beyond it are counted
    /// (tcp_liveness_table_insert_failures_total). About 200 bytes of kernel memory per socket.
    #[arg(long, default_value_t = DEFAULT_TABLE_CAPACITY, value_parser = parse_capacity)]
    pub table_capacity: u32,

    /// Serve /connections (addresses, processes) to non-loopback clients too.
    #[arg(long)]
    pub allow_remote_connections: bool,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Durations like "5s", "250ms", "1m"; between 100 ms and 1 h.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 5s, 500ms, 1m)"))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("must be between 100ms and 1h".into());
    }
    Ok(d)
}

pub fn parse_capacity(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))?;
    if !(1024..=16_777_216).contains(&n) {
        return Err("must be between 1024 and 16777216 sockets".into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("10ms").unwrap_err().contains("between"));
        assert!(parse_interval("2h").is_err());
    }

    #[test]
    fn capacities() {
        assert_eq!(parse_capacity("65536"), Ok(65536));
        assert!(parse_capacity("12").unwrap_err().contains("between"));
        assert!(parse_capacity("lots").unwrap_err().contains("not a number"));
    }
}
