//! `/connections`: the query filters, and the answer written one [`ConnectionView`] at a time.

use std::{sync::Arc, time::Duration};

use monitor_common::tcp_state;
use serde::Deserialize;

use crate::{
    model::{Connection, ConnectionView, labels::fold_syn_recv},
    verdict::{self, Policy},
};

/// The raw `/connections` query string parameters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FilterParams {
    pub state: Option<String>,
    pub min_idle: Option<String>,
    /// Network namespace inode (one pod or container's connections).
    pub netns: Option<String>,
    /// `true`: only connections with at least one suspect reason.
    pub suspect: Option<String>,
    /// Owning process id: the connection's owner or any of its holders.
    pub pid: Option<String>,
    /// Local or remote port.
    pub port: Option<String>,
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
    #[error("invalid query parameter suspect={0:?}: expected true or false")]
    Suspect(String),
    #[error("invalid query parameter pid={0:?}: expected a process id")]
    Pid(String),
    #[error("invalid query parameter port={0:?}: expected a port number (1-65535)")]
    Port(String),
}

/// Which connections `/connections` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    pub state: Option<u8>,
    /// Only connections idle at least this long; connections with unknown idle time never match.
    pub min_idle: Option<Duration>,
    pub netns: Option<u32>,
    /// Only connections with at least one suspect reason.
    pub suspect: bool,
    /// Only connections this process owns or holds.
    pub pid: Option<u32>,
    /// Only connections with this local or remote port.
    pub port: Option<u16>,
}

/// `syn_recv` is two kernel states (3 and request sockets, 12); both compare as one.
fn same_state(a: u8, b: u8) -> bool {
    fold_syn_recv(a) == fold_syn_recv(b)
}

impl ConnectionFilter {
    /// The filter the query string asks for.
    ///
    /// # Errors
    /// A parameter that does not parse ([`FilterError`] names it; it is the 400 answer's body).
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
        let suspect = match params.suspect.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(FilterError::Suspect(other.to_owned())),
        };
        let pid = params
            .pid
            .as_deref()
            .map(|v| v.parse().map_err(|_| FilterError::Pid(v.to_owned())))
            .transpose()?;
        let port = params
            .port
            .as_deref()
            .map(|v| match v.parse() {
                Ok(port) if port != 0 => Ok(port),
                _ => Err(FilterError::Port(v.to_owned())),
            })
            .transpose()?;
        Ok(Self {
            state,
            min_idle,
            netns,
            suspect,
            pid,
            port,
        })
    }

    #[must_use]
    pub fn matches(&self, c: &Connection) -> bool {
        self.netns.is_none_or(|ns| c.netns == Some(ns))
            && self.state.is_none_or(|s| same_state(s, c.state))
            && self
                .min_idle
                .is_none_or(|min| c.idle.is_some_and(|idle| idle >= min))
            && (!self.suspect || !c.suspect.is_empty())
            && self.pid.is_none_or(|pid| {
                c.pid == Some(pid)
                    || c.holders
                        .as_slice()
                        .is_some_and(|holders| holders.iter().any(|h| h.pid == pid))
            })
            && self
                .port
                .is_none_or(|port| c.local.port() == port || c.remote.port() == port)
    }
}

/// The `/connections` answer, built one connection at a time: a JSON array of the
/// [`ConnectionView`]s of the matching connections, in the order they are pushed. The same bytes
/// as serializing a `Vec<ConnectionView>`, without holding every view (or connection) at once.
#[derive(Debug)]
pub struct ViewsWriter {
    filter: ConnectionFilter,
    /// What the suspects' `why` quotes.
    policy: Arc<Policy>,
    json: Vec<u8>,
    written_any: bool,
}

impl ViewsWriter {
    /// A writer whose suspects' `why` quote the default thresholds ([`with_policy`](Self::with_policy)
    /// sets the agent's).
    #[must_use]
    pub fn new(filter: ConnectionFilter) -> Self {
        Self {
            filter,
            policy: Arc::default(),
            json: b"[".to_vec(),
            written_any: false,
        }
    }

    /// The suspects' `why` quote `policy`'s thresholds (the agent's, overrides included).
    #[must_use]
    pub fn with_policy(self, policy: Arc<Policy>) -> Self {
        Self { policy, ..self }
    }

    /// Appends `c` if it matches the filter.
    ///
    /// # Panics
    /// Never: a view is plain data (strings and numbers) written into a `Vec`, which cannot fail.
    pub fn push(&mut self, c: &Connection) {
        if !self.filter.matches(c) {
            return;
        }
        if self.written_any {
            self.json.push(b',');
        }
        self.written_any = true;
        // Writing plain data (strings, numbers) into a Vec cannot fail.
        let view = ConnectionView::from(c).explained(verdict::explain(c, &self.policy));
        serde_json::to_writer(&mut self.json, &view).expect("serializing a connection view");
    }

    /// What is written so far, once it reaches `at_least` bytes: a streamed response sends the
    /// body in pieces instead of holding all of it (~575 bytes per connection).
    pub fn take_at_least(&mut self, at_least: usize) -> Option<Vec<u8>> {
        (self.json.len() >= at_least).then(|| std::mem::take(&mut self.json))
    }

    /// The rest of the body.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        self.json.push(b']');
        self.json
    }
}

#[cfg(test)]
mod tests;
