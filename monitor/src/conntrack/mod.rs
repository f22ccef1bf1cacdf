//! The host's own connection tracking, asked about one flow: ctnetlink (`NETLINK_NETFILTER`,
//! subsystem `NFNL_SUBSYS_CTNETLINK`) answers an exact `IPCTNL_MSG_CT_GET` by tuple with the
//! flow's entry, whose `CTA_TIMEOUT` is the seconds left before conntrack forgets it.
//!
//! A netlink socket answers for the network namespace it was made in, so one is opened per
//! namespace on first use (from a thread inside it) and kept. Never a dump: one request per
//! candidate flow. `message.rs` builds the request and reads the answer (pure); `query.rs` is
//! the I/O.

mod message;
mod query;

pub use message::Tuple;
pub use query::{ConntrackError, ConntrackQueries};
