//! The wire form of a [`Connection`]: what `/connections` serves and alert samples carry, and
//! what `tcp-liveness connections` reads back. Field names are a contract.
//!
//! Unknown values are `null`, never 0: an idle time of 0 would claim "active right now" about a
//! socket whose history the agent simply never saw.

use serde::{Deserialize, Serialize};

use super::pod::PodIdentity;
use super::{CallStack, Connection, ProbeView, format::seconds, labels::state_label};

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
    /// Every process holding the socket, ascending by pid (`ss -p`'s); `[]` for a socket no
    /// process holds (`orphan`, `accept_queue`); null when not known yet.
    #[serde(default)]
    pub holders: Option<Vec<HolderView>>,
    pub state_age_seconds: Option<f64>,
    pub idle_seconds: Option<f64>,
    pub since_send_seconds: Option<f64>,
    pub since_recv_seconds: Option<f64>,
    pub since_peer_seconds: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub unacked_bytes: Option<u32>,
    pub srtt_ms: Option<f64>,
    /// Written by the application, not yet acknowledged (`ss` Send-Q).
    #[serde(default)]
    pub send_queue_bytes: Option<u32>,
    /// Received, not yet read by the application (`ss` Recv-Q).
    #[serde(default)]
    pub recv_queue_bytes: Option<u32>,
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
    /// Still in its listener's accept queue (never accepted); `pid` and `comm` are the
    /// listener's owner.
    #[serde(default)]
    pub accept_queue: bool,
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Container id derived from the cgroup path, when it has one.
    #[serde(default)]
    pub container: Option<String>,
    /// The Kubernetes pod of the owner: `{"namespace", "pod", "pod_uid", "container"}`, each
    /// null when unknown; null when the owner is in no pod.
    #[serde(default)]
    pub kubernetes: Option<PodIdentity>,
    /// The `[[enforce]]` policy that set the connection's keepalive timers or user timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<String>,
    /// Seconds since the first transmission of the oldest data the kernel is retransmitting
    /// on its retransmission timer (`retrans_stamp` while `icsk_retransmits` > 0); null when it
    /// is not.
    #[serde(default)]
    pub since_retrans_start_seconds: Option<f64>,
    /// For `peer_unresponsive`: seconds until the kernel gives up retransmitting.
    #[serde(default)]
    pub gives_up_in_seconds: Option<f64>,
    pub suspect: Vec<String>,
    /// Why, one sentence per `suspect` reason in the same order: the connection's values and
    /// the threshold they crossed ("`CLOSE_WAIT` 1m17s > `close_wait_after` 1m00s"). Empty when
    /// not suspect.
    #[serde(default)]
    pub why: Vec<String>,
    /// The latest keepalive probe (`[probe]`); absent when the socket was never probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeView>,
    /// The call stack that opened the connection (`[forensics] stacks`): `{"frames": [{"function",
    /// "file", "line", "module", "address"}]}`, innermost first, each name null when unknown;
    /// absent when not recorded or the connection is not suspect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<CallStack>,
}

impl ConnectionView {
    /// The view with its `why` sentences (the verdict module writes them; this room cannot).
    #[must_use]
    pub fn explained(self, why: Vec<String>) -> Self {
        Self { why, ..self }
    }

    /// The `why` sentence for `reason` (its contract name), if the connection has that reason.
    #[must_use]
    pub fn why_for(&self, reason: &str) -> Option<&str> {
        let at = self.suspect.iter().position(|r| r == reason)?;
        self.why.get(at).map(String::as_str)
    }
}

/// One process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderView {
    pub pid: u32,
    pub comm: Option<String>,
}

/// `SO_KEEPALIVE` and its effective timers.
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

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            cookie: c.cookie,
            state: state_label(c.state).into_owned(),
            local: c.local.to_string(),
            remote: c.remote.to_string(),
            netns: c.netns,
            pid: c.pid,
            comm: c.comm.map(|comm| comm.to_string()),
            holders: c.holders.as_slice().map(|holders| {
                holders
                    .iter()
                    .map(|h| HolderView {
                        pid: h.pid,
                        comm: h.comm.map(|comm| comm.to_string()),
                    })
                    .collect()
            }),
            state_age_seconds: seconds(c.state_age),
            idle_seconds: seconds(c.idle),
            since_send_seconds: seconds(c.since_send),
            since_recv_seconds: seconds(c.since_recv),
            since_peer_seconds: seconds(c.since_peer),
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            unacked_bytes: c.unacked_bytes,
            srtt_ms: c
                .srtt
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX) as f64 / 1000.0),
            send_queue_bytes: c.send_queue_bytes,
            recv_queue_bytes: c.recv_queue_bytes,
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
            accept_queue: c.accept_queue,
            cgroup: c.cgroup.as_deref().map(str::to_owned),
            container: c.cgroup.as_deref().and_then(container_id),
            kubernetes: c.pod.as_deref().cloned(),
            enforced: c.enforced.as_deref().map(str::to_owned),
            since_retrans_start_seconds: seconds(c.since_retrans_start),
            gives_up_in_seconds: seconds(c.gives_up_in),
            suspect: c.suspect.iter().map(|r| r.as_str().to_owned()).collect(),
            why: Vec::new(),
            probe: c.probe.as_ref().map(ProbeView::from),
            stack: c.stack.as_deref().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"kubernetes"`: null outside a pod, else the four fields, null where unknown.
    #[test]
    fn the_pod_is_an_object_of_four_fields() {
        let addr = "127.0.0.1:80".parse().expect("address");
        let mut c = Connection::new(1, monitor_common::tcp_state::ESTABLISHED, addr, addr);
        let json = |c: &Connection| serde_json::to_value(ConnectionView::from(c)).unwrap();
        assert_eq!(json(&c)["kubernetes"], serde_json::Value::Null);
        let named = |s: &str| Some(s.to_owned());
        let pod = PodIdentity::new(named("shop"), named("web-1"), named("1b3c"), None);
        c.pod = Some(std::sync::Arc::new(pod.clone()));
        assert_eq!(
            json(&c)["kubernetes"],
            serde_json::json!({
                "namespace": "shop", "pod": "web-1", "pod_uid": "1b3c", "container": null,
            })
        );
        let back: ConnectionView = serde_json::from_value(json(&c)).unwrap();
        assert_eq!(back.kubernetes, Some(pod), "read back by the CLI");
    }

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&format!(
                "/kubepods/burstable/pod1/cri-containerd-{id}.scope"
            )),
            Some(id.clone())
        );
        assert_eq!(container_id(&format!("/docker/{id}")), Some(id));
        assert_eq!(
            container_id("/user.slice/user-0.slice/session-1.scope"),
            None
        );
    }
}
