//! Kernel TCP state numbers (`include/net/tcp_states.h`) and the names the agent exports.
//! `TCP_BOUND_INACTIVE` (13, Linux 6.8+) is left out: no socket enters it, only `sock_diag` uses it
//! to report bound sockets, and the agent never asks for those.

pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const SYN_RECV: u8 = 3;
pub const FIN_WAIT1: u8 = 4;
pub const FIN_WAIT2: u8 = 5;
pub const TIME_WAIT: u8 = 6;
pub const CLOSE: u8 = 7;
pub const CLOSE_WAIT: u8 = 8;
pub const LAST_ACK: u8 = 9;
pub const LISTEN: u8 = 10;
pub const CLOSING: u8 = 11;
pub const NEW_SYN_RECV: u8 = 12;

/// Lowercase kernel name of a state, as used in metric labels and JSON.
#[must_use]
pub const fn name(state: u8) -> Option<&'static str> {
    Some(match state {
        ESTABLISHED => "established",
        SYN_SENT => "syn_sent",
        SYN_RECV | NEW_SYN_RECV => "syn_recv",
        FIN_WAIT1 => "fin_wait1",
        FIN_WAIT2 => "fin_wait2",
        TIME_WAIT => "time_wait",
        CLOSE => "close",
        CLOSE_WAIT => "close_wait",
        LAST_ACK => "last_ack",
        LISTEN => "listen",
        CLOSING => "closing",
        _ => return None,
    })
}

/// The states a live socket can be in that the agent reports (`tcp_liveness_connections{state}`).
pub const REPORTED: [u8; 9] = [
    ESTABLISHED,
    SYN_SENT,
    SYN_RECV,
    FIN_WAIT1,
    FIN_WAIT2,
    CLOSE_WAIT,
    LAST_ACK,
    CLOSING,
    LISTEN,
];

/// Parses a lowercase state name (also accepts `ss`-style `close-wait` and upper case).
#[must_use]
pub fn parse(name: &str) -> Option<u8> {
    let mut buf = [0u8; 16];
    let bytes = name.as_bytes();
    if bytes.len() > buf.len() {
        return None;
    }
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = match src {
            b'-' => b'_',
            c => c.to_ascii_lowercase(),
        };
    }
    let normalized = &buf[..bytes.len()];
    (1..=12u8).find(|&s| name_bytes(s) == Some(normalized))
}

fn name_bytes(state: u8) -> Option<&'static [u8]> {
    match name(state) {
        Some(n) => Some(n.as_bytes()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_our_names_and_ss_spellings() {
        assert_eq!(parse("close_wait"), Some(CLOSE_WAIT));
        assert_eq!(parse("CLOSE-WAIT"), Some(CLOSE_WAIT));
        assert_eq!(parse("syn_recv"), Some(SYN_RECV));
        assert_eq!(parse("estab"), None);
        assert_eq!(parse("a-very-long-name-indeed"), None);
    }

    #[test]
    fn every_reported_state_has_a_name_that_parses_back() {
        for state in REPORTED {
            assert_eq!(parse(name(state).unwrap()), Some(state));
        }
    }
}
