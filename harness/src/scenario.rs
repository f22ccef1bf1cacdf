//! One kernel test's world: the privilege gate, then namespaces, peers and agents that never meet
//! another test's, each removed when it is dropped, a failing assertion included.
//!
//! ```no_run
//! use harness::{privilege::Need, scenario::Scenario};
//! # const AGENT: &str = "target/debug/tcp-liveness";
//! let Some(sc) = Scenario::with_net(AGENT, "close_wait", Need::RootAndKernelBtf) else {
//!     return; // skipped: not root (a failure under CI=true)
//! };
//! let _server = sc.server(&["no-close"]);
//! let agent = sc.agent();
//! let _client = sc.client(&["close"]);
//! ```
//!
//! What a test used to pick by hand, the scenario allocates:
//! - the agent's port: a free loopback port (bound to :0) per [`Scenario::launch`];
//! - the namespace names: `tl-{tag}-{pid}-{n}-s` / `-c`, `n` counting the scenarios of this
//!   process, so two tests (or two runs) never share one;
//! - the subnet: 10.`k`.0.0/24, `k` counting too. The addresses exist only inside the pair's own
//!   namespaces, so counting within the process is enough;
//! - the peers' service port, [`SERVICE_PORT`]: fixed, because nothing but the test's own peers
//!   runs in namespaces the test created; tests match it in labels (`local_port="7000"`).
//!
//! It lives in the harness (which never links the `monitor` crate) so that the gate, the
//! allocation and the guards are one copy for every test module; the agent's binary path, only
//! known to the test crate (`CARGO_BIN_EXE_tcp-liveness`), is passed in.
//!
//! Guards drop in reverse order of creation: a test holds the scenario first and its peers and
//! agents after, so those stop before the namespaces go. The constructors and starters panic on
//! failure (these are test conveniences): a test cannot go on without its set-up.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{
    agent::{Agent, Launch},
    netns::NetPair,
    peer::Peer,
    ports::free_port,
    privilege::{self, Need},
};

/// The port the scenario's server peers listen on, inside the test's own server namespace.
pub const SERVICE_PORT: u16 = 7000;

/// Scenarios created by this process so far: the `n` of namespace names and subnets.
static SCENARIOS: AtomicU32 = AtomicU32::new(0);

/// A test's set-up: the gate passed, an optional namespace pair, and the agent's binary.
/// Dropping it deletes the namespaces (and with them their veths and iptables rules).
#[derive(Debug)]
pub struct Scenario {
    agent_binary: String,
    net: Option<NetPair>,
}

impl Scenario {
    /// The gate for `test` ([`privilege::may_run`]): None when the machine lacks `need` (the
    /// test returns: skipped, or failed under `CI=true`); else a scenario with no namespaces,
    /// for tests of the agent alone.
    ///
    /// # Panics
    /// Under `CI=true` when something is missing.
    #[must_use]
    pub fn agent_only(agent_binary: &str, test: &str, need: Need) -> Option<Self> {
        privilege::may_run(test, need).then(|| Self {
            agent_binary: agent_binary.into(),
            net: None,
        })
    }

    /// [`agent_only`](Self::agent_only), plus a [`NetPair`] of its own (names and subnet
    /// allocated, see the module docs).
    ///
    /// # Panics
    /// As [`agent_only`](Self::agent_only), and when the namespaces cannot be created.
    #[must_use]
    pub fn with_net(agent_binary: &str, test: &str, need: Need) -> Option<Self> {
        let mut scenario = Self::agent_only(agent_binary, test, need)?;
        let n = SCENARIOS.fetch_add(1, Ordering::Relaxed);
        let tag: String = test
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        let name = format!("tl-{tag}-{}-{n}", std::process::id());
        // 10.1 to 10.250: a process would need 250 scenarios alive at once to meet itself.
        let subnet = u8::try_from(n % 250 + 1).expect("below 251");
        let pair = NetPair::create_named(format!("{name}-s"), format!("{name}-c"), subnet)
            .unwrap_or_else(|e| panic!("{test}: namespaces {name}-s/-c: {e:#}"));
        scenario.net = Some(pair);
        Some(scenario)
    }

    /// The namespace pair: `server` listens on `server_ip`, `client` connects from it.
    ///
    /// # Panics
    /// When the scenario was made by [`agent_only`](Self::agent_only).
    #[must_use]
    pub fn net(&self) -> &NetPair {
        self.net.as_ref().expect("a scenario made with_net")
    }

    /// [`Launch::test`] of the agent on a free loopback port: add arguments, then start it.
    ///
    /// # Panics
    /// When no loopback port is free.
    #[must_use]
    pub fn launch(&self) -> Launch {
        self.launch_on(free_port().expect("a free loopback port"))
    }

    /// [`Launch::test`] on `port`, for a test that must write the port somewhere first (a
    /// scrape config); take it from [`free_port`].
    #[must_use]
    pub fn launch_on(&self, port: u16) -> Launch {
        Launch::test(&self.agent_binary, port)
    }

    /// The agent as [`launch`](Self::launch) starts it, serving.
    ///
    /// # Panics
    /// When it does not start.
    #[must_use]
    pub fn agent(&self) -> Agent {
        self.launch().start().expect("agent")
    }

    /// `tcp_peer.py server SERVER_IP SERVICE_PORT MODE…` in the server namespace, ready.
    ///
    /// # Panics
    /// When the peer does not start (or there is no namespace pair).
    #[must_use]
    pub fn server(&self, mode: &[&str]) -> Peer {
        let net = self.net();
        self.peer(&net.server, "server", mode)
    }

    /// `tcp_peer.py client SERVER_IP SERVICE_PORT MODE…` in the client namespace, ready.
    ///
    /// # Panics
    /// When the peer does not start (or there is no namespace pair).
    #[must_use]
    pub fn client(&self, mode: &[&str]) -> Peer {
        let net = self.net();
        self.peer(&net.client, "client", mode)
    }

    fn peer(&self, ns: &crate::netns::Netns, role: &str, mode: &[&str]) -> Peer {
        let port = SERVICE_PORT.to_string();
        let mut args = vec![role, self.net().server_ip.as_str(), port.as_str()];
        args.extend_from_slice(mode);
        Peer::start(ns, &args).unwrap_or_else(|e| panic!("peer {args:?}: {e:#}"))
    }
}
