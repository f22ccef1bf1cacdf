//! `tcp-liveness destroy --cookie C`: end one connection by hand, the way a `[[remediate]]`
//! policy does (`sock_diag` `SOCK_DESTROY` on the exact socket, cookie included: the same code
//! path, `SocketQueries::destroy`). Only a connection suspect of a verdict that destroying
//! remedies (a confirmed verdict in the agent's `/connections`, one `[[remediate]]` accepts)
//! unless `--force`; never a listening socket, even with `--force` (the service would stop
//! accepting while its process runs on). Exit 0 done (or, with `--dry-run`, would be done), 1
//! refused or not found, 2 bad input (clap).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;

use super::connections::fetch;
use crate::{
    act::remediate::policy::REMEDIABLE,
    model::{ConnectionView, Reason, format::escape_control},
    sock_diag::{self, SocketKey, SocketQueries},
};

const DONE: i32 = 0;
const REFUSED: i32 = 1;

#[derive(Clone, Debug, clap::Args)]
pub struct DestroyArgs {
    /// The connection's socket cookie (`cookie` in `/connections`, `connections --json`).
    #[arg(long, value_name = "COOKIE")]
    pub cookie: u64,
    /// Base URL of the running agent's HTTP listener (asked whether the connection is suspect,
    /// and where it is).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9977")]
    pub agent: String,
    /// Find the connection and say what would be done; destroy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Destroy it even when the agent does not find it suspect (or cannot be asked: the socket
    /// is then looked up in every network namespace with `sock_diag`).
    #[arg(long)]
    pub force: bool,
}

/// The connection to destroy, and what is known of it.
struct Target {
    key: SocketKey,
    /// State, owner and verdicts, as one line.
    description: String,
}

/// Runs the command; returns the exit code. The outcome goes to stdout, a refusal or failure
/// to stderr.
pub(super) fn run(args: &DestroyArgs) -> i32 {
    let target = match find(args) {
        Ok(target) => target,
        Err(refusal) => {
            eprintln!("{}", escape_control(&refusal));
            return REFUSED;
        }
    };
    let what = format!("connection {}: {}", args.cookie, target.description);
    if args.dry_run {
        println!("dry run: would destroy {what}");
        return DONE;
    }
    match SocketQueries::default().destroy(&target.key) {
        Ok(true) => {
            println!("destroyed {what}");
            DONE
        }
        Ok(false) => {
            eprintln!(
                "not found: {what} is gone (closed, or its addresses belong to another socket now)"
            );
            REFUSED
        }
        Err(error) => {
            let error = crate::model::format::error_chain(&error);
            eprintln!(
                "cannot destroy {what}: {error} (needs root: CAP_NET_ADMIN, and CAP_SYS_ADMIN for another network namespace)"
            );
            REFUSED
        }
    }
}

/// The target, or why there is none (one line).
fn find(args: &DestroyArgs) -> Result<Target, String> {
    let cookie = args.cookie;
    let url = format!("{}/connections", args.agent.trim_end_matches('/'));
    let listed = fetch(&url, &args.agent, &[]).and_then(|body| {
        serde_json::from_str::<Vec<ConnectionView>>(&body)
            .with_context(|| format!("{url} did not answer a connection list"))
    });
    match listed {
        Ok(views) => match views.into_iter().find(|v| v.cookie == cookie) {
            Some(view) if let Some(refusal) = refusal(&view, args.force) => Err(refusal),
            Some(view) => match key_of_view(&view) {
                Some(key) => Ok(Target {
                    key,
                    description: describe_view(&view),
                }),
                None if args.force => from_kernel(cookie),
                None => Err(format!(
                    "refused: the agent does not know connection {cookie}'s network namespace"
                )),
            },
            None if args.force => from_kernel(cookie),
            None => Err(format!(
                "not found: the agent at {} tracks no connection with cookie {cookie}",
                args.agent
            )),
        },
        Err(error) if args.force => {
            tracing::debug!(%error, "agent not asked; looking in every namespace");
            from_kernel(cookie)
        }
        Err(error) => Err(format!(
            "refused: {error:#}; without the agent only --force destroys (it cannot tell whether the connection is suspect)"
        )),
    }
}

/// The socket with `cookie` in any network namespace (a `sock_diag` dump of each).
fn from_kernel(cookie: u64) -> Result<Target, String> {
    let every_state = u32::MAX;
    let socket = sock_diag::dump_all(every_state)
        .into_iter()
        .find(|s| s.cookie == cookie)
        .ok_or_else(|| {
            format!("not found: no TCP socket with cookie {cookie} in any network namespace")
        })?;
    let state = crate::model::labels::state_label(socket.state);
    if socket.state == monitor_common::tcp_state::LISTEN {
        return Err(listener_refusal(
            cookie,
            &format!("{}, {state}", socket.local),
        ));
    }
    Ok(Target {
        key: SocketKey {
            netns: socket.netns,
            family: socket.family,
            local: socket.local,
            remote: socket.remote,
            cookie,
        },
        description: format!(
            "{} → {} ({state}, netns {}; found with sock_diag, not judged by the agent)",
            socket.local, socket.remote, socket.netns
        ),
    })
}

/// Why `view` is not destroyed, if it is not: a listening socket never; without `force`, a
/// connection that is not suspect, or suspect only of verdicts destroying does not remedy (those
/// `[[remediate]]` refuses).
fn refusal(view: &ConnectionView, force: bool) -> Option<String> {
    let cookie = view.cookie;
    if view.state == "listen" {
        return Some(listener_refusal(cookie, &describe_view(view)));
    }
    if force {
        return None;
    }
    if view.suspect.is_empty() {
        return Some(format!(
            "refused: connection {cookie} ({}) is not suspect; --force to destroy it anyway",
            describe_view(view)
        ));
    }
    let remedied = view
        .suspect
        .iter()
        .any(|r| Reason::parse(r).is_some_and(|r| REMEDIABLE.contains(&r)));
    (!remedied).then(|| {
        format!(
            "refused: connection {cookie} ({}) is suspect only of what destroying does not \
             remedy (close_wait_stuck: the application's descriptor leak stays; \
             idle_no_keepalive: idle is not dead); --force to destroy it anyway",
            describe_view(view)
        )
    })
}

/// The refusal of the listening socket `cookie` (`what` describes it).
fn listener_refusal(cookie: u64, what: &str) -> String {
    format!(
        "refused: socket {cookie} ({what}) is a listening socket: destroying it would stop the \
         service accepting while its process runs on; only connections are destroyed, even \
         with --force"
    )
}

fn key_of_view(view: &ConnectionView) -> Option<SocketKey> {
    let local: SocketAddr = view.local.parse().ok()?;
    let remote: SocketAddr = view.remote.parse().ok()?;
    Some(SocketKey {
        netns: view.netns?,
        family: match local.ip() {
            IpAddr::V4(_) => monitor_common::AF_INET,
            IpAddr::V6(_) => monitor_common::AF_INET6,
        },
        local,
        remote,
        cookie: view.cookie,
    })
}

/// `10.0.0.1:40000 → 10.0.0.2:7000 (established, netns 4026532, pid 42 app, suspect:
/// peer_unresponsive)`.
fn describe_view(view: &ConnectionView) -> String {
    let netns = view.netns.map_or("unknown".into(), |n| n.to_string());
    let owner = match (view.pid, view.comm.as_deref()) {
        (Some(pid), Some(comm)) => format!(", pid {pid} {comm}"),
        (Some(pid), None) => format!(", pid {pid}"),
        _ => String::new(),
    };
    let suspect = if view.suspect.is_empty() {
        "not suspect".to_owned()
    } else {
        format!("suspect: {}", view.suspect.join(", "))
    };
    format!(
        "{} → {} ({}, netns {netns}{owner}, {suspect})",
        view.local, view.remote, view.state
    )
}

#[cfg(test)]
mod tests;
