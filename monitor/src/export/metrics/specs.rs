//! Names, types and help texts of the snapshot metrics. The names are a contract with
//! dashboards and alerts: change them only with a release note.

use prometheus::proto::MetricType::{self, COUNTER, GAUGE, HISTOGRAM};

use super::proto::Spec;

const fn spec(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
) -> Spec {
    Spec {
        name,
        help,
        kind,
        labels,
    }
}

pub(super) const CONNECTIONS: Spec = spec(
    "tcp_liveness_connections",
    GAUGE,
    &["state"],
    "TCP sockets in each kernel state at the last scan (syn_recv includes request sockets; time_wait and orphaned fin_wait2 sockets come from the kernel's own socket state, read with iter/tcp).",
);
pub(super) const IDLE: Spec = spec(
    "tcp_liveness_idle_seconds",
    HISTOGRAM,
    &["state"],
    "Time since each non-listening socket last sent, received or heard from its peer, at the last scan; sockets with no activity seen since the agent started are left out.",
);
pub(super) const TRACKED: Spec = spec(
    "tcp_liveness_tracked_sockets",
    GAUGE,
    &[],
    "Entries in the kernel socket table at the last scan.",
);
pub(super) const CAPACITY: Spec = spec(
    "tcp_liveness_table_capacity",
    GAUGE,
    &[],
    "Capacity of the kernel socket table; when tracked_sockets reaches it, new sockets go unmonitored.",
);
pub(super) const UNTRACKED: Spec = spec(
    "tcp_liveness_untracked_sockets",
    GAUGE,
    &[],
    "Full TCP sockets the kernel had and the socket table did not at the last kernel read (missed while the table was full, or opened during the read); those sockets are not monitored.",
);
pub(super) const KERNEL_READS: Spec = spec(
    "tcp_liveness_kernel_reads_total",
    COUNTER,
    &[],
    "Reads of every network namespace's TCP sockets with iter/tcp, which refresh the table with each socket's own kernel state.",
);
pub(super) const KERNEL_READ_SECONDS: Spec = spec(
    "tcp_liveness_kernel_read_seconds_total",
    COUNTER,
    &[],
    "Time spent in those reads (paced to at most 0.25% of a core, and at most one per scan interval).",
);
pub(super) const INSERT_FAILURES: Spec = spec(
    "tcp_liveness_table_insert_failures_total",
    COUNTER,
    &[],
    "Sockets the kernel programs could not add to the table (full or out of memory); those sockets are not monitored.",
);
pub(super) const HOOK_ATTACHED: Spec = spec(
    "tcp_liveness_hook_attached",
    GAUGE,
    &["hook"],
    "1 if the kernel hook is attached, 0 if it failed to attach (the agent log says why); without it some fields stay unknown.",
);
pub(super) const RECURSION_MISSES: Spec = spec(
    "tcp_liveness_hook_recursion_misses_total",
    COUNTER,
    &["hook"],
    "Events each attached kernel hook missed because the kernel skipped the program (entered again on the same CPU while it ran, e.g. from softirq): bpf_prog_info.recursion_misses, what bpftool prints. A missed inet_sock_set_state is a lost state transition.",
);
pub(super) const TRANSITIONS: Spec = spec(
    "tcp_liveness_state_transitions_total",
    COUNTER,
    &["from", "to"],
    "TCP state changes seen by the kernel programs since the agent started.",
);
pub(super) const RETRANSMITS: Spec = spec(
    "tcp_liveness_retransmits_total",
    COUNTER,
    &[],
    "TCP segment retransmissions seen since the agent started.",
);
pub(super) const RESETS: Spec = spec(
    "tcp_liveness_resets_total",
    COUNTER,
    &["direction"],
    "TCP RST segments sent and received since the agent started.",
);
pub(super) const SOCKET_ERRORS: Spec = spec(
    "tcp_liveness_socket_errors_total",
    COUNTER,
    &["error"],
    "Errors reported on TCP sockets (sk_err, e.g. ETIMEDOUT when retransmissions or keepalives give up), by errno name, since the agent started.",
);
pub(super) const BUILD_INFO: Spec = spec(
    "tcp_liveness_build_info",
    GAUGE,
    &["version"],
    "Always 1; the version label is the version of the running agent.",
);

pub(super) const SUSPECTS: Spec = spec(
    "tcp_liveness_suspect_connections",
    GAUGE,
    &["reason"],
    "Connections that look dead or leaking at the last scan, by reason (close_wait_stuck, fin_wait2_stuck, peer_unresponsive, keepalive_unanswered, idle_no_keepalive). See /alerts and /connections for which.",
);
pub(super) const DETECTIONS: Spec = spec(
    "tcp_liveness_suspect_detections_total",
    COUNTER,
    &["reason"],
    "Connections newly found suspect, by reason, since the agent started.",
);
pub(super) const CLOSE_WAIT_BY_OWNER: Spec = spec(
    "tcp_liveness_close_wait_connections",
    GAUGE,
    &["owner", "local_port"],
    "CLOSE_WAIT sockets by owner (the process name, or the cgroup v2 path with group_by = \"cgroup\") and local port (the service port, or \"outbound\"): the top N owners by count, the rest summed as owner=\"other\"; each owner's top_ports service ports by count, the rest summed as local_port=\"other\". A growing count means the application does not close() after the peer closes.",
);
pub(super) const CLOSE_WAIT_OLDEST: Spec = spec(
    "tcp_liveness_close_wait_oldest_seconds",
    GAUGE,
    &["owner"],
    "Age of the oldest CLOSE_WAIT socket of each owner (process name, or cgroup per group_by; top N by count, rest as \"other\"), in seconds; a lower bound for sockets that predate the agent.",
);
pub(super) const KEEPALIVE_DISABLED: Spec = spec(
    "tcp_liveness_keepalive_disabled_connections",
    GAUGE,
    &["state"],
    "Connections known to have SO_KEEPALIVE off, by state: if their peer dies while they only read, nothing will ever notice.",
);

pub(super) const ENFORCED: Spec = spec(
    "tcp_liveness_enforced_connections",
    GAUGE,
    &["policy"],
    "Live connections whose keepalive timers or user timeout an [[enforce]] policy set, by policy name (every configured policy present, 0 included).",
);

pub(super) const CARDINALITY_LIMIT: Spec = spec(
    "tcp_liveness_cardinality_limit",
    GAUGE,
    &["setting"],
    "The caps on owner-labelled series and alert groups, by config key: top_n (owners in the CLOSE_WAIT metrics), top_ports (service ports per owner in the CLOSE_WAIT metrics and alert groups), max_alert_groups (alert groups per scan in /alerts and the Alertmanager push).",
);
pub(super) const CLOSE_WAIT_FOLDED_OWNERS: Spec = spec(
    "tcp_liveness_close_wait_folded_owners",
    GAUGE,
    &[],
    "Owners with CLOSE_WAIT sockets past top_n at the last scan, summed into owner=\"other\".",
);
pub(super) const CLOSE_WAIT_FOLDED_PORTS: Spec = spec(
    "tcp_liveness_close_wait_folded_ports",
    GAUGE,
    &[],
    "Service ports with CLOSE_WAIT sockets past their owner's top_ports at the last scan, summed into local_port=\"other\".",
);
pub(super) const ALERT_GROUPS: Spec = spec(
    "tcp_liveness_alert_groups",
    GAUGE,
    &[],
    "Alert groups at the last scan, as /alerts lists them and the Alertmanager push sends them (folded groups included; at most max_alert_groups).",
);
pub(super) const ALERT_GROUPS_FOLDED: Spec = spec(
    "tcp_liveness_alert_groups_folded",
    GAUGE,
    &[],
    "Reason x owner x port groups at the last scan folded into local_port=\"other\" groups (ports past top_ports, groups past max_alert_groups); 0 when every group is listed on its own.",
);

pub(super) const SNAPSHOT_SPECS: [&Spec; 26] = [
    &SUSPECTS,
    &ENFORCED,
    &DETECTIONS,
    &CLOSE_WAIT_BY_OWNER,
    &CLOSE_WAIT_OLDEST,
    &CARDINALITY_LIMIT,
    &CLOSE_WAIT_FOLDED_OWNERS,
    &CLOSE_WAIT_FOLDED_PORTS,
    &ALERT_GROUPS,
    &ALERT_GROUPS_FOLDED,
    &KEEPALIVE_DISABLED,
    &CONNECTIONS,
    &IDLE,
    &TRACKED,
    &CAPACITY,
    &UNTRACKED,
    &KERNEL_READS,
    &KERNEL_READ_SECONDS,
    &INSERT_FAILURES,
    &HOOK_ATTACHED,
    &RECURSION_MISSES,
    &TRANSITIONS,
    &RETRANSMITS,
    &RESETS,
    &SOCKET_ERRORS,
    &BUILD_INFO,
];
