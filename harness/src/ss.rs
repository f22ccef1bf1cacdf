//! The kernel's own view of TCP sockets, `ss -tanieO` (`sock_diag` with `tcp_info`), parsed into
//! the fields the tests compare the agent against.

use std::{
    collections::{BTreeMap, HashMap},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// Whether an age the agent reports (`ours`, seconds) agrees with the kernel's (`kernel`, seconds,
/// from `tcp_info`): within max(1 s, 2 %), the tolerance the issues set for these comparisons.
#[must_use]
pub fn close_to(ours: f64, kernel: f64) -> bool {
    (ours - kernel).abs() <= f64::max(1.0, kernel * 0.02)
}

/// One socket as `ss` prints it.
#[derive(Debug, Clone)]
pub struct SsSocket {
    /// The agent's lowercase state name (`established`, `close_wait`, …).
    pub state: String,
    /// `ADDR:PORT` as printed (IPv6 in brackets).
    pub local: String,
    /// The peer's `ADDR:PORT` (`0.0.0.0:*` for a listener).
    pub remote: String,
    /// `Recv-Q`: bytes received and not read by the application (for a listener, connections
    /// waiting in its accept queue).
    pub recv_q: u32,
    /// The socket cookie (`sk:` in hex), what the agent reports as `cookie`.
    pub cookie: Option<u64>,
    /// Every `key:value` field of the extended and info parts (`ino`, `lastsnd`, `lastrcv`,
    /// `lastack`, `unacked`, `retrans`, …), values as printed.
    pub fields: HashMap<String, String>,
}

impl SsSocket {
    /// A millisecond field (`lastsnd`, `lastrcv`, `lastack`) in seconds; None when absent.
    #[must_use]
    pub fn ms(&self, key: &str) -> Option<f64> {
        self.fields
            .get(key)?
            .parse::<f64>()
            .ok()
            .map(|ms| ms / 1000.0)
    }

    /// Total retransmits over the socket's life: `retrans:current/total`; 0 when absent.
    #[must_use]
    pub fn total_retrans(&self) -> u64 {
        self.fields
            .get("retrans")
            .and_then(|v| v.split('/').nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The processes holding the socket, from `ss -p`'s `users:(("comm",pid=N,fd=M),…)`: pid →
    /// name, ascending by pid, each pid once (a process may hold several descriptors); empty
    /// without `-p` or when no process holds it.
    ///
    /// # Panics
    /// When a `pid=` is not a number.
    #[must_use]
    pub fn holders(&self) -> BTreeMap<u32, String> {
        let users = self.fields.get("users").map_or("", String::as_str);
        users
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split("),(")
            .filter(|user| !user.is_empty())
            .map(|user| {
                let comm = user.split('"').nth(1).unwrap_or_default().to_owned();
                let pid = user
                    .split("pid=")
                    .nth(1)
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or_else(|| panic!("pid=N in {user:?}"));
                (pid, comm)
            })
            .collect()
    }

    /// The socket's inode (`ino:`), what `sock_diag` reports as `idiag_inode`.
    #[must_use]
    pub fn inode(&self) -> Option<u32> {
        self.fields.get("ino")?.parse().ok()
    }
}

fn state_name(ss: &str) -> String {
    match ss {
        "ESTAB" => "established",
        "SYN-SENT" => "syn_sent",
        "SYN-RECV" => "syn_recv",
        "FIN-WAIT-1" => "fin_wait1",
        "FIN-WAIT-2" => "fin_wait2",
        "TIME-WAIT" => "time_wait",
        "CLOSE-WAIT" => "close_wait",
        "LAST-ACK" => "last_ack",
        "LISTEN" => "listen",
        "CLOSING" => "closing",
        other => other,
    }
    .to_string()
}

/// Parses `ss -tanieO` output: one socket per line after the header.
#[must_use]
pub fn parse(output: &str) -> Vec<SsSocket> {
    output
        .lines()
        .skip(1)
        .filter_map(|line| {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            if tokens.len() < 5 {
                return None;
            }
            let mut fields = HashMap::new();
            for token in &tokens[5..] {
                if let Some((k, v)) = token.split_once(':') {
                    fields.insert(k.to_string(), v.to_string());
                }
            }
            let cookie = fields
                .get("sk")
                .and_then(|v| u64::from_str_radix(v, 16).ok());
            Some(SsSocket {
                state: state_name(tokens[0]),
                local: tokens[3].to_string(),
                remote: tokens[4].to_string(),
                recv_q: tokens[1].parse().unwrap_or(0),
                cookie,
                fields,
            })
        })
        .collect()
}

/// TCP sockets of namespace `ns`, all states, with `tcp_info`.
///
/// # Errors
/// When `ss` cannot run or does not exit 0.
pub fn sockets(ns: &Netns) -> anyhow::Result<Vec<SsSocket>> {
    run(ns.command("ss").arg("-tanieO"))
}

/// TCP sockets of the caller's own namespace, all states, with `tcp_info`.
///
/// # Errors
/// When `ss` cannot run or does not exit 0.
pub fn sockets_here() -> anyhow::Result<Vec<SsSocket>> {
    run(Command::new("ss").arg("-tanieO"))
}

fn run(cmd: &mut Command) -> anyhow::Result<Vec<SsSocket>> {
    let out = cmd.output().context("running ss")?;
    if !out.status.success() {
        bail!("ss failed ({})", out.status);
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// How many sockets are in each state (keys as in [`SsSocket::state`]).
#[must_use]
pub fn state_counts(sockets: &[SsSocket]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in sockets {
        *counts.entry(s.state.clone()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ss_oneline_output() {
        let out = "State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n\
ESTAB 0 0 10.9.0.2:40000 10.9.0.1:7000 ino:123 sk:1f cgroup:/ <-> ts sack cubic lastsnd:1500 lastrcv:1400 lastack:1400 unacked:2 retrans:1/4\n";
        let s = &parse(out)[0];
        assert_eq!(s.state, "established");
        assert_eq!(s.remote, "10.9.0.1:7000");
        assert_eq!(s.recv_q, 0);
        assert_eq!(s.cookie, Some(0x1f));
        assert_eq!(s.inode(), Some(123));
        assert_eq!(s.ms("lastsnd"), Some(1.5));
        assert_eq!(s.total_retrans(), 4);
    }
}
