//! Parsers for single values. Each takes a [`Raw`] (flag text or TOML value) so a flag and the
//! file go through the same checks and produce the same message; the caller adds the key.

use std::{net::SocketAddr, time::Duration};

use super::LogFormat;
use crate::model::GroupBy;

/// A value as given: text (a flag, or a built-in default) or a value from the TOML file.
#[derive(Clone, Copy, Debug)]
pub(super) enum Raw<'a> {
    Text(&'a str),
    Toml(&'a toml::Value),
}

/// "integer 5", "string \"x\"", or just "table" (tables and arrays would not fit one line).
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) | toml::Value::Array(_) => value.type_str().to_string(),
        scalar => format!("{} {scalar}", scalar.type_str()),
    }
}

pub(super) fn string(raw: Raw<'_>) -> Result<&str, String> {
    match raw {
        Raw::Text(text) => Ok(text),
        Raw::Toml(toml::Value::String(text)) => Ok(text),
        Raw::Toml(other) => Err(format!("expected a string, got {}", describe(other))),
    }
}

fn integer(raw: Raw<'_>) -> Result<i64, String> {
    match raw {
        Raw::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("not a number: {text:?}")),
        Raw::Toml(toml::Value::Integer(n)) => Ok(*n),
        Raw::Toml(other) => Err(format!("expected an integer, got {}", describe(other))),
    }
}

pub(super) fn integer_between(raw: Raw<'_>, min: i64, max: i64) -> Result<i64, String> {
    let n = integer(raw)?;
    if !(min..=max).contains(&n) {
        return Err(format!(
            "{n} is out of range: must be between {min} and {max}"
        ));
    }
    Ok(n)
}

pub(super) fn boolean(raw: Raw<'_>) -> Result<bool, String> {
    match raw {
        Raw::Text("true") | Raw::Toml(toml::Value::Boolean(true)) => Ok(true),
        Raw::Text("false") | Raw::Toml(toml::Value::Boolean(false)) => Ok(false),
        Raw::Text(text) => Err(format!("expected true or false, got {text:?}")),
        Raw::Toml(other) => Err(format!("expected true or false, got {}", describe(other))),
    }
}

pub(super) fn duration_between(
    raw: Raw<'_>,
    min: Duration,
    max: Duration,
    range: &str,
) -> Result<Duration, String> {
    let text = match raw {
        Raw::Text(text) => text,
        Raw::Toml(toml::Value::String(text)) => text,
        // A bare TOML number has no unit; say what is expected rather than guess seconds.
        Raw::Toml(other) => {
            return Err(format!(
                "expected a duration string such as \"30s\", got {}",
                describe(other)
            ));
        }
    };
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "negative duration {text:?}: must be between {range}"
        ));
    }
    let d = humantime::parse_duration(text)
        .map_err(|_| format!("invalid duration {text:?} (examples: 30s, 15m)"))?;
    if d < min || d > max {
        return Err(format!("{text:?} is out of range: must be between {range}"));
    }
    Ok(d)
}

/// How often the kernel table is read: often enough to be useful, rarely enough to be cheap.
pub(super) fn scan_interval(raw: Raw<'_>) -> Result<Duration, String> {
    duration_between(
        raw,
        Duration::from_millis(100),
        Duration::from_hours(1),
        "100ms and 1h",
    )
}

/// A verdict threshold: below 100 ms is noise (scans are slower), above 30 days never fires.
pub(super) fn threshold(raw: Raw<'_>) -> Result<Duration, String> {
    const THIRTY_DAYS: Duration = Duration::from_hours(720);
    duration_between(
        raw,
        Duration::from_millis(100),
        THIRTY_DAYS,
        "100ms and 30 days",
    )
}

pub(super) fn listen(raw: Raw<'_>) -> Result<SocketAddr, String> {
    let text = string(raw)?;
    text.parse()
        .map_err(|_| format!("invalid address {text:?} (expected IP:PORT, e.g. 0.0.0.0:9977)"))
}

/// Kernel map entries; the map is preallocated, so the ceiling bounds kernel memory (~200 B each).
pub(super) fn table_capacity(raw: Raw<'_>) -> Result<u32, String> {
    u32_between(raw, 1024, 16_777_216)
}

/// An integer between `min` and `max` (both within `u32`).
pub(super) fn u32_between(raw: Raw<'_>, min: u32, max: u32) -> Result<u32, String> {
    let n = integer_between(raw, min.into(), max.into())?;
    Ok(u32::try_from(n).expect("range checked"))
}

/// `[probe] after`: a threshold, or empty for each connection's own `idle_after`.
pub(super) fn probe_after(raw: Raw<'_>) -> Result<Option<Duration>, String> {
    match raw {
        Raw::Text("") => Ok(None),
        raw => threshold(raw).map(Some),
    }
}

/// `[probe] interval`, between probes: whole seconds (`TCP_KEEPIDLE`/`TCP_KEEPINTVL` take
/// seconds), 1 s to 1 h.
pub(super) fn probe_interval(raw: Raw<'_>) -> Result<Duration, String> {
    whole_seconds(raw, Duration::from_hours(1), "1s and 1h", |d| {
        format!("{d} is not a whole number of seconds (the kernel's keepalive timers take seconds)")
    })
}

/// Whole seconds from 1 s to `max` (`range` says both), as the kernel's keepalive timers take
/// them; `not_whole` words the error for a duration (written back as text) with a fraction.
pub(super) fn whole_seconds(
    raw: Raw<'_>,
    max: Duration,
    range: &str,
    not_whole: impl Fn(String) -> String,
) -> Result<Duration, String> {
    let d = duration_between(raw, Duration::from_secs(1), max, range)?;
    if d.subsec_nanos() != 0 {
        return Err(not_whole(humantime::format_duration(d).to_string()));
    }
    Ok(d)
}

/// A count of things emitted per scan (metric series, log lines); bounded to keep output sane.
pub(super) fn count(raw: Raw<'_>, max: i64) -> Result<usize, String> {
    let n = integer_between(raw, 0, max)?;
    Ok(usize::try_from(n).expect("range checked"))
}

/// Alert groups per scan: at least one per reason, so the folded `other` groups always fit.
pub(super) fn max_alert_groups(raw: Raw<'_>) -> Result<usize, String> {
    let n = integer_between(raw, 10, 10_000)?;
    Ok(usize::try_from(n).expect("range checked"))
}

pub(super) fn log_format(raw: Raw<'_>) -> Result<LogFormat, String> {
    let text = string(raw)?;
    [LogFormat::Text, LogFormat::Json]
        .into_iter()
        .find(|f| f.as_str() == text)
        .ok_or_else(|| format!("expected \"text\" or \"json\", got {text:?}"))
}

pub(super) fn group_by(raw: Raw<'_>) -> Result<GroupBy, String> {
    let text = string(raw)?;
    GroupBy::ALL
        .into_iter()
        .find(|g| g.as_str() == text)
        .ok_or_else(|| format!("expected \"process\", \"cgroup\" or \"pod\", got {text:?}"))
}

/// An http(s) URL with a host; empty means "no Alertmanager", so a flag can turn off the file's.
pub(super) fn alertmanager_url(raw: Raw<'_>) -> Result<Option<String>, String> {
    let text = string(raw)?;
    if text.is_empty() {
        return Ok(None);
    }
    let invalid =
        || format!("invalid URL {text:?} (expected http://HOST:PORT or https://HOST:PORT)");
    let uri: ureq::http::Uri = text.parse().map_err(|_| invalid())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("URL {text:?} must start with http:// or https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(Some(text.to_string()))
}

/// A file path; empty means none (so a flag can unset the file's).
pub(super) fn optional_path(raw: Raw<'_>) -> Result<Option<std::path::PathBuf>, String> {
    Ok(optional_text(raw)?.map(std::path::PathBuf::from))
}

/// An absolute directory path (relative to what would depend on where the agent was started).
pub(super) fn directory(raw: Raw<'_>) -> Result<std::path::PathBuf, String> {
    absolute_path(raw, "directory")
}

/// A unix socket's path: absolute (the agent's working directory is nobody's business).
pub(super) fn socket_path(raw: Raw<'_>) -> Result<std::path::PathBuf, String> {
    absolute_path(raw, "socket")
}

/// A CRI runtime's endpoint as crictl takes it: its unix socket's absolute path, bare or as
/// `unix:///path`; empty means none (so a flag can unset the file's). Other schemes (`tcp://`,
/// `npipe://`) are not unix sockets on this host.
pub(super) fn runtime_endpoint(raw: Raw<'_>) -> Result<Option<std::path::PathBuf>, String> {
    let Some(text) = optional_text(raw)? else {
        return Ok(None);
    };
    let path = std::path::Path::new(text.strip_prefix("unix://").unwrap_or(&text));
    if !path.is_absolute() {
        return Err(format!(
            "expected a CRI runtime's unix socket (an absolute path or unix:///path), got {text:?}"
        ));
    }
    Ok(Some(path.to_path_buf()))
}

/// An absolute path to a `what` ("expected an absolute {what} path" otherwise).
fn absolute_path(raw: Raw<'_>, what: &str) -> Result<std::path::PathBuf, String> {
    let text = string(raw)?;
    let path = std::path::Path::new(text);
    if !path.is_absolute() {
        return Err(format!("expected an absolute {what} path, got {text:?}"));
    }
    Ok(path.to_path_buf())
}

/// A name of at most `max` characters, each one `allowed` takes ("expected {what}" otherwise).
fn name(raw: Raw<'_>, max: usize, allowed: fn(char) -> bool, what: &str) -> Result<String, String> {
    let text = string(raw)?;
    if !(1..=max).contains(&text.len()) || !text.chars().all(allowed) {
        return Err(format!("expected {what}, got {text:?}"));
    }
    Ok(text.to_owned())
}

/// A containerd namespace name: what containerd accepts (letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit), so a typo fails at start, not at every lookup.
pub(super) fn containerd_namespace(raw: Raw<'_>) -> Result<String, String> {
    let what = "a containerd namespace (letters, digits, '.', '_', '-')";
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let text = name(raw, 76, allowed, what)?;
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("expected {what}, got {text:?}"));
    }
    Ok(text)
}

/// A Kubernetes namespace name: a DNS label (lowercase letters, digits, `-` inside; at most 63).
pub(super) fn pod_namespace(raw: Raw<'_>) -> Result<String, String> {
    let what = "a Kubernetes namespace (a DNS label: a-z, 0-9, '-')";
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let text = name(raw, 63, allowed, what)?;
    if text.starts_with('-') || text.ends_with('-') {
        return Err(format!("expected {what}, got {text:?}"));
    }
    Ok(text)
}

/// The start of a pod name: not empty (that would match every pod), and only what a pod name
/// may hold (lowercase letters, digits, `-`, `.`; at most 253).
pub(super) fn pod_name_prefix(raw: Raw<'_>) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.');
    name(
        raw,
        253,
        allowed,
        "the start of a pod name (a-z, 0-9, '-', '.')",
    )
}

/// Text; empty means none.
pub(super) fn optional_text(raw: Raw<'_>) -> Result<Option<String>, String> {
    let text = string(raw)?;
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// Port 0 never appears on an established connection, so it can only be a mistake.
pub(super) fn port(raw: Raw<'_>) -> Result<u16, String> {
    let n = integer_between(raw, 1, 65535)?;
    Ok(u16::try_from(n).expect("range checked"))
}

/// A process name as the kernel keeps it (comm): at most 15 bytes, so a longer one never matches.
pub(super) fn process(raw: Raw<'_>) -> Result<String, String> {
    let name = string(raw)?;
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 15 {
        let cut = (0..=15)
            .rev()
            .find(|&i| name.is_char_boundary(i))
            .unwrap_or(0);
        return Err(format!(
            "{name:?} is longer than the kernel's 15-byte process name (comm) and would never match; write {:?}",
            &name[..cut]
        ));
    }
    Ok(name.to_string())
}

/// HTTP connections open at once: each costs a descriptor and up to tens of KB (TLS).
pub(super) fn max_connections(raw: Raw<'_>) -> Result<usize, String> {
    let n = integer_between(raw, 1, 65_536)?;
    Ok(usize::try_from(n).expect("range checked"))
}

/// A cgroup v2 path as `/proc/PID/cgroup` writes it: absolute, no `.` or `..` components; a
/// trailing `/` is dropped. Whether it exists is checked when the config is loaded.
pub(super) fn cgroup(raw: Raw<'_>) -> Result<String, String> {
    let path = string(raw)?;
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is not a cgroup v2 path (absolute, as in /proc/PID/cgroup: \"/system.slice/x.service\")"
        ));
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err(format!("{path:?} has a . or .. component"));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}
