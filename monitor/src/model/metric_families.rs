//! Every `tcp_liveness_*` metric family the agent exports: name, type, help and label names,
//! written once. The names are a contract with dashboards and alert rules (deploy/): change them
//! only with a release note.
//!
//! The catalogue lives here, at the bottom of the crate, because the families are defined in
//! several rooms (act's probe and remediation counters, the Alertmanager push counters,
//! export's snapshot and HTTP metrics) and every room may import `model`. Each definer builds its
//! family from the constant here; [`FAMILIES`] lists them all, and a unit test in
//! `export::metrics` checks it against the registry the agent builds, so neither can drift.

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: what `# HELP` and `# TYPE` say, and the label names of its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order the definer passes values.
    pub labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        help,
        labels,
    }
}

// The snapshot: sockets, kernel hooks and counters, read from the latest scan at each scrape.

pub const CONNECTIONS: Family = family(
    "tcp_liveness_connections",
    Kind::Gauge,
    &["state"],
    "TCP sockets in each kernel state at the last scan (syn_recv includes request sockets; time_wait and orphaned fin_wait2 sockets come from the kernel's own socket state, read with iter/tcp).",
);
pub const IDLE: Family = family(
    "tcp_liveness_idle_seconds",
    Kind::Histogram,
    &["state"],
    "Time since each non-listening socket last sent, received or heard from its peer, at the last scan; sockets with no activity seen since the agent started are left out.",
);
pub const TRACKED: Family = family(
    "tcp_liveness_tracked_sockets",
    Kind::Gauge,
    &[],
    "Entries in the kernel socket table at the last scan.",
);
pub const CAPACITY: Family = family(
    "tcp_liveness_table_capacity",
    Kind::Gauge,
    &[],
    "Capacity of the kernel socket table; when tracked_sockets reaches it, new sockets go unmonitored.",
);
pub const UNTRACKED: Family = family(
    "tcp_liveness_untracked_sockets",
    Kind::Gauge,
    &[],
    "Full TCP sockets the kernel had and the socket table did not at the last kernel read (missed while the table was full, or opened during the read); those sockets are not monitored.",
);
pub const KERNEL_READS: Family = family(
    "tcp_liveness_kernel_reads_total",
    Kind::Counter,
    &[],
    "Reads of every network namespace's TCP sockets with iter/tcp, which refresh the table with each socket's own kernel state.",
);
pub const KERNEL_READ_SECONDS: Family = family(
    "tcp_liveness_kernel_read_seconds_total",
    Kind::Counter,
    &[],
    "Time spent in those reads (paced to at most 0.25% of a core, and at most one per scan interval).",
);
pub const HELD_READS: Family = family(
    "tcp_liveness_held_socket_reads_total",
    Kind::Counter,
    &[],
    "Passes of iter/task_file over every process's socket descriptors (all network namespaces at once), which give each held socket its own kernel state and holders.",
);
pub const HELD_READ_SECONDS: Family = family(
    "tcp_liveness_held_socket_read_seconds_total",
    Kind::Counter,
    &[],
    "Time spent in those passes (each scan runs one when due: at most 1% of a core and at least every 15 s; where the slot walk runs, at most 0.25% and at least every 60 s).",
);
pub const SLOT_WALKS: Family = family(
    "tcp_liveness_slot_walks_total",
    Kind::Counter,
    &[],
    "Walks of the socket table's slots, which give every tracked socket (orphans and the accept queue included) its own kernel state between descriptor passes (Linux 6.2 and later).",
);
pub const SLOT_WALK_SECONDS: Family = family(
    "tcp_liveness_slot_walk_seconds_total",
    Kind::Counter,
    &[],
    "Time spent in those walks (each scan runs one when due: at most 0.25% of a core, and at least every 15 s).",
);
pub const INSERT_FAILURES: Family = family(
    "tcp_liveness_table_insert_failures_total",
    Kind::Counter,
    &[],
    "Sockets the kernel programs could not add to the table (full or out of memory); those sockets are not monitored.",
);
pub const HOOK_ATTACHED: Family = family(
    "tcp_liveness_hook_attached",
    Kind::Gauge,
    &["hook"],
    "1 if the kernel hook is attached, 0 if it failed to attach (the agent log says why); without it some fields stay unknown.",
);
pub const RECURSION_MISSES: Family = family(
    "tcp_liveness_hook_recursion_misses_total",
    Kind::Counter,
    &["hook"],
    "Events each attached kernel hook missed because the kernel skipped the program (entered again on the same CPU while it ran, e.g. from softirq): bpf_prog_info.recursion_misses, what bpftool prints. A missed inet_sock_set_state is a lost state transition.",
);
pub const TRANSITIONS: Family = family(
    "tcp_liveness_state_transitions_total",
    Kind::Counter,
    &["from", "to"],
    "TCP state changes seen by the kernel programs since the agent started.",
);
pub const RETRANSMITS: Family = family(
    "tcp_liveness_retransmits_total",
    Kind::Counter,
    &[],
    "TCP segment retransmissions seen since the agent started.",
);
pub const RESETS: Family = family(
    "tcp_liveness_resets_total",
    Kind::Counter,
    &["direction"],
    "TCP RST segments sent and received since the agent started.",
);
pub const SOCKET_ERRORS: Family = family(
    "tcp_liveness_socket_errors_total",
    Kind::Counter,
    &["error"],
    "Errors reported on TCP sockets (sk_err, e.g. ETIMEDOUT when retransmissions or keepalives give up), by errno name, since the agent started.",
);
pub const BUILD_INFO: Family = family(
    "tcp_liveness_build_info",
    Kind::Gauge,
    &["version"],
    "Always 1; the version label is the version of the running agent.",
);
// Verdicts and owners: bounded by the reasons and the top-N caps.

pub const SUSPECTS: Family = family(
    "tcp_liveness_suspect_connections",
    Kind::Gauge,
    &["reason"],
    "Connections that look dead or leaking at the last scan, by reason (close_wait_stuck, fin_wait2_stuck, peer_unresponsive, keepalive_unanswered, idle_no_keepalive). See /alerts and /connections for which.",
);
pub const SUSPECTS_BY_OWNER: Family = family(
    "tcp_liveness_suspect_connections_by_owner",
    Kind::Gauge,
    &["reason", "owner", "local_port"],
    "Suspect connections at the last scan by reason, owner (the process name, the cgroup v2 path with group_by = \"cgroup\", or namespace/pod with group_by = \"pod\") and local port (the service port, or \"outbound\"): per reason, the top N owners by count, the rest summed as owner=\"other\"; each owner's top_ports service ports, the rest summed as local_port=\"other\". Series exist only while there are suspects.",
);
pub const DETECTIONS: Family = family(
    "tcp_liveness_suspect_detections_total",
    Kind::Counter,
    &["reason"],
    "Connections newly found suspect, by reason, since the agent started.",
);
pub const CLOSE_WAIT_BY_OWNER: Family = family(
    "tcp_liveness_close_wait_connections",
    Kind::Gauge,
    &["owner", "local_port"],
    "CLOSE_WAIT sockets by owner (the process name, the cgroup v2 path with group_by = \"cgroup\", or namespace/pod with group_by = \"pod\") and local port (the service port, or \"outbound\"): the top N owners by count, the rest summed as owner=\"other\"; each owner's top_ports service ports by count, the rest summed as local_port=\"other\". A growing count means the application does not close() after the peer closes.",
);
pub const CLOSE_WAIT_OLDEST: Family = family(
    "tcp_liveness_close_wait_oldest_seconds",
    Kind::Gauge,
    &["owner"],
    "Age of the oldest CLOSE_WAIT socket of each owner (process name, cgroup or namespace/pod per group_by; top N by count, rest as \"other\"), in seconds; a lower bound for sockets that predate the agent.",
);
pub const KEEPALIVE_DISABLED: Family = family(
    "tcp_liveness_keepalive_disabled_connections",
    Kind::Gauge,
    &["state"],
    "Connections known to have SO_KEEPALIVE off, by state: if their peer dies while they only read, nothing will ever notice.",
);
pub const IDLE_BEYOND_THRESHOLD: Family = family(
    "tcp_liveness_idle_connections",
    Kind::Gauge,
    &["state"],
    "Connections idle (nothing sent, received or heard from the peer) for longer than their idle_after threshold ([[override]]s applied), by state (every state but listen present). Without keepalive, a dead peer of one of them is never noticed.",
);
pub const THRESHOLDS: Family = family(
    "tcp_liveness_threshold_seconds",
    Kind::Gauge,
    &["threshold"],
    "The configured verdict thresholds, by config key (close_wait_after, fin_wait2_after, unresponsive_after, idle_after): the defaults before [[override]]s, as the agent judges with them now (a SIGHUP reload shows here).",
);
pub const ENFORCED: Family = family(
    "tcp_liveness_enforced_connections",
    Kind::Gauge,
    &["policy"],
    "Live connections whose keepalive timers or user timeout an [[enforce]] policy set, by policy name (every configured policy present, 0 included).",
);
pub const PATH_TIMEOUT_AT_RISK: Family = family(
    "tcp_liveness_path_timeout_at_risk",
    Kind::Gauge,
    &["path"],
    "Connections idle_beyond_path_timeout at the last scan, by [[path]] name (every configured path present, 0 included) or conntrack (this host's own conntrack entry for the flow): idle past path_timeout_share of the path's idle timeout with nothing to send a packet before the middlebox forgets the flow.",
);
pub const CARDINALITY_LIMIT: Family = family(
    "tcp_liveness_cardinality_limit",
    Kind::Gauge,
    &["setting"],
    "The caps on owner-labelled series and alert groups, by config key: top_n (owners in the CLOSE_WAIT metrics), top_ports (service ports per owner in the CLOSE_WAIT metrics and alert groups), max_alert_groups (alert groups per scan in /alerts and the Alertmanager push).",
);
pub const CLOSE_WAIT_FOLDED_OWNERS: Family = family(
    "tcp_liveness_close_wait_folded_owners",
    Kind::Gauge,
    &[],
    "Owners with CLOSE_WAIT sockets past top_n at the last scan, summed into owner=\"other\".",
);
pub const CLOSE_WAIT_FOLDED_PORTS: Family = family(
    "tcp_liveness_close_wait_folded_ports",
    Kind::Gauge,
    &[],
    "Service ports with CLOSE_WAIT sockets past their owner's top_ports at the last scan, summed into local_port=\"other\".",
);
pub const ALERT_GROUPS: Family = family(
    "tcp_liveness_alert_groups",
    Kind::Gauge,
    &[],
    "Alert groups at the last scan, as /alerts lists them and the Alertmanager push sends them (folded groups included; at most max_alert_groups).",
);
pub const ALERT_GROUPS_FOLDED: Family = family(
    "tcp_liveness_alert_groups_folded",
    Kind::Gauge,
    &[],
    "Reason x owner x port groups at the last scan folded into local_port=\"other\" groups (ports past top_ports, groups past max_alert_groups); 0 when every group is listed on its own.",
);
// Descriptor exhaustion of the processes holding suspects: bounded like the CLOSE_WAIT series
// (one series per owner among the top N processes by suspects).

pub const FD_EXHAUSTION: Family = family(
    "tcp_liveness_fd_exhaustion_seconds",
    Kind::Gauge,
    &["owner"],
    "Predicted seconds until the owner's process closest to its open-file soft limit (RLIMIT_NOFILE) reaches it, at its descriptors' growth rate over the last 5 minutes (least squares), among the top_n processes by suspect connections; 0 at the limit; absent when not growing or unlimited.",
);
pub const PROCESS_OPEN_FDS: Family = family(
    "tcp_liveness_process_open_fds",
    Kind::Gauge,
    &["owner"],
    "Descriptors in use (/proc/PID/fd) by the owner's process closest to its open-file limit, among the top_n processes by suspect connections at the last scan.",
);
pub const PROCESS_MAX_FDS: Family = family(
    "tcp_liveness_process_max_fds",
    Kind::Gauge,
    &["owner"],
    "Open-file soft limit (\"Max open files\" in /proc/PID/limits) of the process tcp_liveness_process_open_fds reports; absent when unlimited.",
);
mod live;
pub use live::*;

/// The families built from the latest scan at each scrape (export's snapshot collector
/// describes them to the registry).
pub const SNAPSHOT: [&Family; 37] = [
    &CONNECTIONS,
    &IDLE,
    &TRACKED,
    &CAPACITY,
    &UNTRACKED,
    &KERNEL_READS,
    &KERNEL_READ_SECONDS,
    &HELD_READS,
    &HELD_READ_SECONDS,
    &SLOT_WALKS,
    &SLOT_WALK_SECONDS,
    &INSERT_FAILURES,
    &HOOK_ATTACHED,
    &RECURSION_MISSES,
    &TRANSITIONS,
    &RETRANSMITS,
    &RESETS,
    &SOCKET_ERRORS,
    &BUILD_INFO,
    &SUSPECTS,
    &SUSPECTS_BY_OWNER,
    &DETECTIONS,
    &CLOSE_WAIT_BY_OWNER,
    &CLOSE_WAIT_OLDEST,
    &KEEPALIVE_DISABLED,
    &IDLE_BEYOND_THRESHOLD,
    &THRESHOLDS,
    &ENFORCED,
    &PATH_TIMEOUT_AT_RISK,
    &CARDINALITY_LIMIT,
    &CLOSE_WAIT_FOLDED_OWNERS,
    &CLOSE_WAIT_FOLDED_PORTS,
    &ALERT_GROUPS,
    &ALERT_GROUPS_FOLDED,
    &FD_EXHAUSTION,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
];

/// The families kept as live counters and gauges by the room that counts them.
pub const LIVE: [&Family; 15] = [
    &SCAN_DURATION,
    &SCAN_ERRORS,
    &LAST_SCAN_SUCCESS,
    &SCAN_INTERVAL,
    &STALE_ENTRIES_REMOVED,
    &RELOAD_SUCCESSFUL,
    &RELOAD_SUCCESS_TIME,
    &HTTP_OPEN,
    &HTTP_REFUSED,
    &HTTP_ACCEPT_ERRORS,
    &HTTP_DROPPED,
    &ALERTMANAGER_PUSHES,
    &ALERTMANAGER_PUSH_FAILURES,
    &PROBES,
    &REMEDIATIONS,
];

/// Every family: [`SNAPSHOT`], then [`LIVE`].
pub const FAMILIES: [&Family; 52] = concat(SNAPSHOT, LIVE);

/// `a` then `b`; `N` must be their total length (checked when compiled).
const fn concat<const A: usize, const B: usize, const N: usize>(
    a: [&'static Family; A],
    b: [&'static Family; B],
) -> [&'static Family; N] {
    assert!(
        A + B == N,
        "FAMILIES has the length of SNAPSHOT and LIVE together"
    );
    let mut out = [a[0]; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < A { a[i] } else { b[i - A] };
        i += 1;
    }
    out
}
