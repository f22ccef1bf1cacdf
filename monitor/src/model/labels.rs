//! The words the agent labels things with, defined once: metrics, alerts, `/connections` and the
//! CLI all spell a state, a port and an unknown owner the same way.

use std::borrow::Cow;

use monitor_common::tcp_state;

/// Port label of a connection the host opened (its local port is ephemeral).
pub(crate) const OUTBOUND: &str = "outbound";
/// Owner label when neither the process name nor the cgroup is known.
pub(crate) const UNKNOWN: &str = "unknown";
/// Owner (and port) label for the owners cut from a top-N list.
pub(crate) const OTHER: &str = "other";

/// `syn_recv` is two kernel states: `TCP_SYN_RECV` (3) and request sockets, `TCP_NEW_SYN_RECV`
/// (12). Every report folds the second into the first.
pub(crate) fn fold_syn_recv(state: u8) -> u8 {
    if state == tcp_state::NEW_SYN_RECV {
        tcp_state::SYN_RECV
    } else {
        state
    }
}

/// The reported state a kernel state counts as ([`fold_syn_recv`]); None for states outside
/// [`tcp_state::REPORTED`] (`time_wait`, close), which are never reported.
pub(crate) fn reported_state(state: u8) -> Option<u8> {
    let state = fold_syn_recv(state);
    tcp_state::REPORTED.contains(&state).then_some(state)
}

/// Display name of a state (`close_wait`), the one spelling of every output (metrics, alerts,
/// `/connections`, logs); an unexpected number stays visible (`state_42`) instead of failing
/// the response.
pub(crate) fn state_label(state: u8) -> Cow<'static, str> {
    tcp_state::name(state).map_or_else(|| Cow::Owned(format!("state_{state}")), Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_sockets_report_as_syn_recv() {
        assert_eq!(
            reported_state(tcp_state::NEW_SYN_RECV),
            Some(tcp_state::SYN_RECV)
        );
        assert_eq!(reported_state(tcp_state::TIME_WAIT), None);
        assert_eq!(state_label(tcp_state::CLOSE_WAIT), "close_wait");
        assert_eq!(state_label(42), "state_42");
    }
}
