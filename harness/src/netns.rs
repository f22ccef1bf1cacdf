//! Network namespaces the caller creates and the guards delete, veth pairs joining two of them,
//! and iptables rules inside one (a vanished peer).
//!
//! Deleting a namespace also deletes its end of a veth pair and its iptables rules, so the
//! [`Netns`] guard is the only clean-up needed. Veth ends are created directly inside their
//! namespaces (`ip link add … netns`), so their names never meet on the host and can be fixed.

use std::{
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::command::{self, run, run_quietly};

/// Where `ip netns add` bind-mounts named namespaces.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// `tl-{tag}-{pid}`: a namespace name unique to this process, so runs side by side do not meet.
#[must_use]
pub fn unique_name(tag: &str) -> String {
    format!("tl-{tag}-{}", std::process::id())
}

/// A named network namespace (`ip netns add`) with its loopback up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name`, first deleting a leftover of that name (from a run killed before
    /// its guards ran), and brings its loopback up (a fresh namespace's `lo` is down: 127.0.0.1
    /// cannot even be bound).
    ///
    /// # Errors
    /// When `ip` fails; what was created is deleted again.
    pub fn create(name: impl Into<String>) -> anyhow::Result<Self> {
        let name = name.into();
        run_quietly("ip", &["netns", "del", &name]);
        run("ip", &["netns", "add", &name])?;
        // The guard exists from here on: a failure below still deletes the namespace.
        let ns = Self { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`: a path to open the namespace by (setns, `nsenter --net=`).
    #[must_use]
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NAMED_NETNS_DIR).join(&self.name)
    }

    /// The namespace's inode: the id the agent reports as `netns` and filters `/connections` by.
    ///
    /// # Panics
    /// When the namespace file cannot be read, which cannot happen while the guard lives.
    #[must_use]
    pub fn inode(&self) -> u64 {
        let meta = std::fs::metadata(self.path())
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path().display()));
        meta.ino()
    }

    /// `ip netns exec NAME program`: a command for the caller to add arguments to and run.
    /// `ip netns exec` execs `program`, so the spawned child's pid is `program`'s.
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace to completion.
    ///
    /// # Errors
    /// When it cannot be started or does not exit 0 (as [`command::check`]).
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        command::check(self.command(program).args(args))
    }

    /// Drops every inbound packet (`iptables -A INPUT -j DROP`): whoever listens in here
    /// vanishes for its peers, who keep retransmitting unacknowledged data.
    ///
    /// # Errors
    /// When `iptables` fails.
    pub fn drop_input(&self) -> anyhow::Result<()> {
        self.run("iptables", &["-A", "INPUT", "-j", "DROP"])
    }

    /// Removes the rule [`drop_input`](Self::drop_input) added: the host answers again.
    ///
    /// # Errors
    /// When `iptables` fails (there is no such rule, for one).
    pub fn stop_dropping_input(&self) -> anyhow::Result<()> {
        self.run("iptables", &["-D", "INPUT", "-j", "DROP"])
    }

    /// Drops each inbound packet with probability `probability` (`iptables -m statistic --mode
    /// random`, independently per packet): a lossy link into this namespace.
    ///
    /// # Errors
    /// When `iptables` fails.
    pub fn drop_input_randomly(&self, probability: f64) -> anyhow::Result<()> {
        let probability = format!("{probability:.4}");
        let rule = [
            "-A",
            "INPUT",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &probability,
            "-j",
            "DROP",
        ];
        self.run("iptables", &rule)
    }

    /// Drops inbound TCP to local port `port` only: one server vanishes, others stay.
    ///
    /// # Errors
    /// When `iptables` fails.
    pub fn drop_input_to_port(&self, port: u16) -> anyhow::Result<()> {
        let port = port.to_string();
        let rule = ["-A", "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"];
        self.run("iptables", &rule)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Two namespaces joined by a veth pair: `server` holds 10.`subnet`.0.1/24, `client`
/// 10.`subnet`.0.2/24. Addresses exist only inside the two namespaces; both are deleted on drop.
#[derive(Debug)]
pub struct NetPair {
    /// The namespace holding the `.1` end: where servers listen.
    pub server: Netns,
    /// The namespace holding the `.2` end: where clients connect from.
    pub client: Netns,
    /// `10.{subnet}.0.1`
    pub server_ip: String,
    /// `10.{subnet}.0.2`
    pub client_ip: String,
}

impl NetPair {
    /// The pair `tl-{tag}-s-{pid}` and `tl-{tag}-c-{pid}`: unique to this process.
    ///
    /// # Errors
    /// As [`create_named`](Self::create_named).
    pub fn create(tag: &str, subnet: u8) -> anyhow::Result<Self> {
        let id = std::process::id();
        Self::create_named(
            format!("tl-{tag}-s-{id}"),
            format!("tl-{tag}-c-{id}"),
            subnet,
        )
    }

    /// The pair with the given namespace names (leftovers of those names are deleted first).
    ///
    /// # Errors
    /// When `ip` fails; whatever was created is deleted again.
    pub fn create_named(
        server: impl Into<String>,
        client: impl Into<String>,
        subnet: u8,
    ) -> anyhow::Result<Self> {
        let pair = Self {
            server: Netns::create(server)?,
            client: Netns::create(client)?,
            server_ip: format!("10.{subnet}.0.1"),
            client_ip: format!("10.{subnet}.0.2"),
        };
        let (server_end, client_end) = ("veth-server", "veth-client");
        run(
            "ip",
            &[
                "link",
                "add",
                server_end,
                "netns",
                pair.server.name(),
                "type",
                "veth",
                "peer",
                "name",
                client_end,
                "netns",
                pair.client.name(),
            ],
        )?;
        for (ns, dev, addr) in [
            (&pair.server, server_end, &pair.server_ip),
            (&pair.client, client_end, &pair.client_ip),
        ] {
            let cidr = format!("{addr}/24");
            run("ip", &["-n", ns.name(), "addr", "add", &cidr, "dev", dev])?;
            run("ip", &["-n", ns.name(), "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }
}
