//! How `connections` prints: every connection `ss`-like, or (`--suspect`) the flagged ones by
//! reason with why each is flagged.

use std::cmp::Ordering;

use super::super::table::{Column, aligned, indented};
use crate::{
    kubernetes::PodIdentity,
    model::{
        ConnectionView, Reason,
        format::{human_age, human_age_bound},
    },
};

/// The time in the current state, `≥` its lower bound for a socket that predates the agent.
fn in_state(c: &ConnectionView) -> String {
    human_age_bound(c.state_age_seconds, c.state_age_at_least_seconds)
}

fn owner(c: &ConnectionView) -> String {
    match (c.pid, c.comm.as_deref()) {
        (Some(pid), Some(comm)) => format!("{pid}/{comm}"),
        (Some(pid), None) => pid.to_string(),
        (None, Some(comm)) => format!("-/{comm}"),
        (None, None) => "-".to_owned(),
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The suspect reasons (`-` for none), then the latest keepalive probe's result when the
/// agent probed the socket (`[probe]`): `- probe=peer_alive`, `peer_dead probe=peer_dead`.
pub(super) fn verdict_cell(c: &ConnectionView) -> String {
    let reasons = if c.suspect.is_empty() {
        "-".to_owned()
    } else {
        c.suspect.join(",")
    };
    match &c.probe {
        Some(probe) => format!("{reasons} probe={}", probe.result),
        None => reasons,
    }
}

fn holders(c: &ConnectionView) -> String {
    match c.holders.as_deref() {
        None => "-".to_owned(),
        Some([]) => "none".to_owned(),
        Some(holders) => holders
            .iter()
            .map(|h| format!("{}/{}", h.pid, h.comm.as_deref().unwrap_or("-")))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The container id when the cgroup names one (12 digits, as `docker ps` shows it), else the
/// cgroup path.
fn cgroup(c: &ConnectionView) -> String {
    match (&c.container, &c.cgroup) {
        (Some(id), _) => id.chars().take(12).collect(),
        (None, cgroup) => or_dash(cgroup.as_deref()),
    }
}

/// The Kubernetes pod as `namespace/pod`, `-` when the connection is in no named pod.
fn pod(c: &ConnectionView) -> String {
    or_dash(c.kubernetes.as_ref().and_then(PodIdentity::qualified_name))
}

/// A column of text, left-aligned.
const fn left(header: &'static str, cell: fn(&ConnectionView) -> String) -> Column<ConnectionView> {
    Column {
        header,
        right: false,
        cell,
    }
}

/// A column of ages or counts, right-aligned so their magnitudes line up.
const fn right(
    header: &'static str,
    cell: fn(&ConnectionView) -> String,
) -> Column<ConnectionView> {
    Column {
        header,
        right: true,
        cell,
    }
}

const STATE: Column<ConnectionView> = left("STATE", |c| c.state.clone());
const LOCAL: Column<ConnectionView> = left("LOCAL", |c| c.local.clone());
const REMOTE: Column<ConnectionView> = left("REMOTE", |c| c.remote.clone());
const OWNER: Column<ConnectionView> = left("PID/COMM", owner);
/// Time in the current state (`kubectl`'s AGE is the time since creation; here the state is
/// what matters).
const AGE: Column<ConnectionView> = right("AGE", in_state);
const IDLE: Column<ConnectionView> = right("IDLE", |c| human_age(c.idle_seconds));
// The clocks since the application last sent, last received, and since the last segment from the
// peer are ages: named `*-AGO` ("sent 4m05s ago"), as `kubectl` names its ages (AGE, LAST SEEN),
// so they never read as byte counts. They are `ss -ti`'s lastsnd, lastrcv and lastack (whose
// name would read as the LAST_ACK state in this table).
const SEND_AGO: Column<ConnectionView> = right("SEND-AGO", |c| human_age(c.since_send_seconds));
const RECV_AGO: Column<ConnectionView> = right("RECV-AGO", |c| human_age(c.since_recv_seconds));
const PEER_AGO: Column<ConnectionView> = right("PEER-AGO", |c| human_age(c.since_peer_seconds));
const UNACKED: Column<ConnectionView> = right("UNACKED", |c| or_dash(c.unacked_bytes));
const RETRANS: Column<ConnectionView> = right("RETRANS", |c| c.retransmits.to_string());
const NETNS: Column<ConnectionView> = left("NETNS", |c| or_dash(c.netns));
/// The socket cookie, as `destroy --cookie` takes it (`ss -e` prints it in hex as `sk:`).
const COOKIE: Column<ConnectionView> = right("COOKIE", |c| c.cookie.to_string());
const SUSPECT: Column<ConnectionView> = left("SUSPECT", verdict_cell);
const HOLDERS: Column<ConnectionView> = left("HOLDERS", holders);
const ENFORCED: Column<ConnectionView> = left("ENFORCED", |c| or_dash(c.enforced.as_deref()));
const CGROUP: Column<ConnectionView> = left("CGROUP", cgroup);
const POD: Column<ConnectionView> = left("POD", pod);

/// Every connection, one line each: [`super::super::table::WIDTH`] columns at most for IPv4
/// and ordinary names; `wide` adds the time since the last send, receive and segment from the
/// peer, the transport counters, namespace, cookie, holders, `[[enforce]]` policy, cgroup and
/// Kubernetes pod.
pub(super) fn connections(views: &[ConnectionView], wide: bool) -> String {
    let columns = if wide {
        vec![
            STATE, LOCAL, REMOTE, OWNER, AGE, IDLE, SEND_AGO, RECV_AGO, PEER_AGO, UNACKED, RETRANS,
            NETNS, COOKIE, SUSPECT, HOLDERS, ENFORCED, CGROUP, POD,
        ]
    } else {
        // The three activity clocks make the line ~25 columns wider than 120 for ordinary
        // IPv4 rows: the default shows the most recent of them (IDLE), --wide each.
        vec![STATE, LOCAL, REMOTE, OWNER, AGE, IDLE, SUSPECT]
    };
    aligned(&columns, views, |_| String::new())
}

/// One suspect connection for one of its reasons (a connection with two is listed twice).
pub(super) struct Suspect<'a> {
    reason: &'a str,
    view: &'a ConnectionView,
}

/// A connection column read through the suspect's connection.
macro_rules! of_view {
    ($column:expr) => {
        Column {
            header: $column.header,
            right: $column.right,
            cell: |s: &Suspect<'_>| ($column.cell)(s.view),
        }
    };
}

/// The flagged connections, by reason (in the order of the verdict table) and oldest first
/// within one, each followed by why it is flagged (for an unresponsive peer, the why says when
/// the kernel gives up). `wide` adds that time as a column, the state, transport counters,
/// holders, `[[enforce]]` policy, cgroup and Kubernetes pod.
pub(super) fn suspects(views: &[ConnectionView], wide: bool) -> String {
    let mut rows: Vec<Suspect<'_>> = views
        .iter()
        .flat_map(|view| {
            view.suspect
                .iter()
                .map(move |reason| Suspect { reason, view })
        })
        .collect();
    rows.sort_by(by_reason_then_oldest);
    let mut columns = vec![
        Column {
            header: "REASON",
            right: false,
            cell: |s: &Suspect<'_>| s.reason.to_owned(),
        },
        of_view!(AGE),
        of_view!(OWNER),
        of_view!(LOCAL),
        of_view!(REMOTE),
        of_view!(NETNS),
        of_view!(COOKIE),
    ];
    if wide {
        columns.extend([
            Column {
                header: "GIVES-UP-IN",
                right: true,
                cell: |s: &Suspect<'_>| human_age(s.view.gives_up_in_seconds),
            },
            of_view!(STATE),
            of_view!(UNACKED),
            of_view!(RETRANS),
            of_view!(HOLDERS),
            of_view!(ENFORCED),
            of_view!(CGROUP),
            of_view!(POD),
        ]);
    }
    aligned(&columns, &rows, |s| {
        s.view
            .why_for(s.reason)
            .map_or_else(String::new, |why| indented(why, 2))
    })
}

/// Reasons in the verdict table's order (a name this build does not know last, by name), then
/// the oldest first: exact ages and lower bounds compared as numbers, unknown ages last.
fn by_reason_then_oldest(a: &Suspect<'_>, b: &Suspect<'_>) -> Ordering {
    let rank = |s: &Suspect<'_>| {
        Reason::ALL
            .iter()
            .position(|r| r.as_str() == s.reason)
            .unwrap_or(usize::MAX)
    };
    let age = |s: &Suspect<'_>| {
        s.view
            .state_age_seconds
            .or(s.view.state_age_at_least_seconds)
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| a.reason.cmp(b.reason))
        .then_with(|| match (age(a), age(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (x, y) => x.is_none().cmp(&y.is_none()),
        })
}

#[cfg(test)]
mod tests;
