//! What every module shares: the agent's binary, and the scenario constructors bound to it.
//!
//! The scenario itself ([`harness::scenario`]) lives in the harness, next to the guards it is
//! made of; only the binary's path is known here (`CARGO_BIN_EXE_*` is set for test crates).

use harness::{privilege::Need, scenario::Scenario};

pub(crate) use harness::agent::SCANS_TO_SHOW;

/// The `tcp-liveness` binary cargo built for these tests.
pub(crate) const AGENT: &str = env!("CARGO_BIN_EXE_tcp-liveness");

/// The set-up of a test with namespaces: None when the machine lacks `need` (the test returns;
/// under `CI=true` this panics instead). See [`Scenario::with_net`].
pub(crate) fn scenario(test: &str, need: Need) -> Option<Scenario> {
    Scenario::with_net(AGENT, test, need)
}

/// The set-up of a test of the agent alone (no namespaces). See [`Scenario::agent_only`].
pub(crate) fn agent_only(test: &str, need: Need) -> Option<Scenario> {
    Scenario::agent_only(AGENT, test, need)
}
