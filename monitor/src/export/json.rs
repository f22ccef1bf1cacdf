//! `/connections`: one JSON object per connection, and the query filters.
//!
//! Unknown values are `null`, never 0: an idle time of 0 would claim "active right now" about a
//! socket whose history the agent simply never saw.

use std::time::Duration;

use monitor_common::tcp_state;
use serde::{Deserialize, Serialize};

use crate::table::Connection;

/// One connection as served by `/connections` (and read back by `tcp-liveness connections`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub cookie: u64,
    /// Lowercase kernel state name (`close_wait`).
    pub state: String,
    /// `ip:port`, IPv6 in brackets.
    pub local: String,
    pub remote: String,
    pub netns: Option<u32>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub state_age_seconds: Option<f64>,
    pub idle_seconds: Option<f64>,
    pub since_send_seconds: Option<f64>,
    pub since_recv_seconds: Option<f64>,
    pub since_peer_seconds: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub unacked_bytes: Option<u32>,
    pub srtt_ms: Option<f64>,
    pub retransmits: u32,
    pub seeded: bool,
    /// For sockets that predate the agent: in this state at least this long.
    #[serde(default)]
    pub state_age_at_least_seconds: Option<f64>,
    #[serde(default)]
    pub keepalive: Option<KeepaliveView>,
    #[serde(default)]
    pub user_timeout_seconds: Option<f64>,
    /// The application has closed the socket; the kernel finishes it alone.
    #[serde(default)]
    pub orphan: bool,
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Container id derived from the cgroup path, when it has one.
    #[serde(default)]
    pub container: Option<String>,
    /// For peer_unresponsive: seconds until the kernel gives up retransmitting.
    #[serde(default)]
    pub gives_up_in_seconds: Option<f64>,
    pub suspect: Vec<String>,
}

/// SO_KEEPALIVE and its effective timers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeepaliveView {
    pub enabled: bool,
    pub idle_seconds: Option<f64>,
    pub interval_seconds: Option<f64>,
    pub count: Option<u32>,
}

/// The container id in a cgroup path (docker-<id>.scope, cri-containerd-<id>.scope, /docker/<id>,
/// libpod-<id>...): the last 64-hex-digit run in the path.
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup
        .split(|c: char| !c.is_ascii_hexdigit())
        .rfind(|run| run.len() == 64)
        .map(str::to_owned)
}

/// Seconds with millisecond resolution: finer digits are noise next to the scan interval.
pub(crate) fn seconds(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_millis() as f64 / 1000.0)
}

/// Display name of a state; an unexpected number stays visible instead of failing the response.
pub fn state_label(state: u8) -> String {
    tcp_state::name(state).map_or_else(|| format!("state_{state}"), str::to_owned)
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            cookie: c.cookie,
            state: state_label(c.state),
            local: c.local.to_string(),
            remote: c.remote.to_string(),
            netns: c.netns,
            pid: c.pid,
            comm: c.comm.map(|comm| comm.to_string()),
            state_age_seconds: seconds(c.state_age),
            idle_seconds: seconds(c.idle),
            since_send_seconds: seconds(c.since_send),
            since_recv_seconds: seconds(c.since_recv),
            since_peer_seconds: seconds(c.since_peer),
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            unacked_bytes: c.unacked_bytes,
            srtt_ms: c.srtt.map(|d| d.as_micros() as f64 / 1000.0),
            retransmits: c.retransmits,
            seeded: c.seeded,
            state_age_at_least_seconds: seconds(c.state_age_at_least),
            keepalive: c.keepalive.map(|ka| KeepaliveView {
                enabled: ka.enabled,
                idle_seconds: seconds(ka.idle),
                interval_seconds: seconds(ka.interval),
                count: ka.count,
            }),
            user_timeout_seconds: seconds(c.user_timeout),
            orphan: c.orphan,
            cgroup: c.cgroup.as_deref().map(str::to_owned),
            container: c.cgroup.as_deref().and_then(container_id),
            gives_up_in_seconds: seconds(c.gives_up_in),
            suspect: c.suspect.iter().map(|r| r.as_str().to_owned()).collect(),
        }
    }
}

/// The raw `/connections` query string parameters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FilterParams {
    pub state: Option<String>,
    pub min_idle: Option<String>,
    /// Network namespace inode (one pod or container's connections).
    pub netns: Option<String>,
}

/// A query parameter that does not parse; the message is the whole 400 response body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error(
        "invalid query parameter state={0:?}: not a TCP state (try established, close_wait, syn_sent, listen)"
    )]
    State(String),
    #[error("invalid query parameter min_idle={value:?}: {reason} (try 30s, 5m, 2h)")]
    MinIdle { value: String, reason: String },
    #[error(
        "invalid query parameter netns={0:?}: expected a namespace inode number (stat -L -c %i /proc/PID/ns/net)"
    )]
    Netns(String),
}

/// Which connections `/connections` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    pub state: Option<u8>,
    /// Only connections idle at least this long; connections with unknown idle time never match.
    pub min_idle: Option<Duration>,
    pub netns: Option<u32>,
}

/// syn_recv is two kernel states (3 and request sockets, 12); both compare as one.
fn same_state(a: u8, b: u8) -> bool {
    let norm = |s| {
        if s == tcp_state::NEW_SYN_RECV {
            tcp_state::SYN_RECV
        } else {
            s
        }
    };
    norm(a) == norm(b)
}

impl ConnectionFilter {
    pub fn from_params(params: &FilterParams) -> Result<Self, FilterError> {
        let state = params
            .state
            .as_deref()
            .map(|s| tcp_state::parse(s).ok_or_else(|| FilterError::State(s.to_owned())))
            .transpose()?;
        let min_idle = params
            .min_idle
            .as_deref()
            .map(|v| {
                humantime::parse_duration(v).map_err(|e| FilterError::MinIdle {
                    value: v.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let netns = params
            .netns
            .as_deref()
            .map(|v| v.parse().map_err(|_| FilterError::Netns(v.to_owned())))
            .transpose()?;
        Ok(Self {
            state,
            min_idle,
            netns,
        })
    }

    pub fn matches(&self, c: &Connection) -> bool {
        self.netns.is_none_or(|ns| c.netns == Some(ns))
            && self.state.is_none_or(|s| same_state(s, c.state))
            && self
                .min_idle
                .is_none_or(|min| c.idle.is_some_and(|idle| idle >= min))
    }
}

/// The `/connections` answer, built one connection at a time: a JSON array of the
/// [`ConnectionView`]s of the matching connections, in the order they are pushed. The same bytes
/// as serializing a `Vec<ConnectionView>`, without holding every view (or connection) at once.
#[derive(Debug)]
pub struct ViewsWriter {
    filter: ConnectionFilter,
    json: Vec<u8>,
    written_any: bool,
}

impl ViewsWriter {
    pub fn new(filter: ConnectionFilter) -> Self {
        Self {
            filter,
            json: b"[".to_vec(),
            written_any: false,
        }
    }

    /// Appends `c` if it matches the filter.
    pub fn push(&mut self, c: &Connection) {
        if !self.filter.matches(c) {
            return;
        }
        if self.written_any {
            self.json.push(b',');
        }
        self.written_any = true;
        // Writing plain data (strings, numbers) into a Vec cannot fail.
        serde_json::to_writer(&mut self.json, &ConnectionView::from(c))
            .expect("serializing a connection view");
    }

    /// What is written so far, once it reaches `at_least` bytes: a streamed response sends the
    /// body in pieces instead of holding all of it (~575 bytes per connection).
    pub fn take_at_least(&mut self, at_least: usize) -> Option<Vec<u8>> {
        (self.json.len() >= at_least).then(|| std::mem::take(&mut self.json))
    }

    /// The rest of the body.
    pub fn finish(mut self) -> Vec<u8> {
        self.json.push(b']');
        self.json
    }
}

#[cfg(test)]
mod tests;
