//! `tcp-liveness destroy --cookie C` / `--dst ADDR[:PORT]` / `--src ADDR[:PORT]`: end
//! connections by hand, the way a `[[remediate]]` policy does (`sock_diag` `SOCK_DESTROY` on the
//! exact socket, cookie included: the same code path, `SocketQueries::destroy`), selected by
//! cookie and/or addresses as `ss -K` selects them ([`select`]). Only a connection suspect of a
//! verdict that destroying remedies (a confirmed verdict in the agent's `/connections`, one
//! `[[remediate]]` accepts) unless `--force`; never a listening socket, even with `--force` (the
//! service would stop accepting while its process runs on). Each selected socket gets one line.
//! Exit 0 all done (or, with `--dry-run`, would be done), 1 any refused or none found, 2 bad
//! input (clap).

mod select;

use std::net::SocketAddr;

use anyhow::Context as _;

use self::select::{Endpoint, Selector};
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
    #[arg(long, value_name = "COOKIE", required_unless_present_any = ["src", "dst"])]
    pub cookie: Option<u64>,
    /// Connections whose remote end is this (`ss -K dst`): `ADDR`, `ADDR:PORT`, `[IPV6]:PORT`,
    /// `:PORT`.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = Endpoint::parse)]
    pub dst: Option<Endpoint>,
    /// Connections whose local end is this (`ss -K src`), in the forms of `--dst`.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = Endpoint::parse)]
    pub src: Option<Endpoint>,
    /// Base URL of the running agent's HTTP listener (asked whether each connection is suspect,
    /// and where it is). An agent with basic authentication: `https://USER:PASSWORD@HOST:PORT`.
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

/// What became of one selected socket before any action.
enum Pick {
    Destroy(Target),
    /// Why not, as one line.
    Refuse(String),
}

impl DestroyArgs {
    fn selector(&self) -> Selector {
        Selector {
            cookie: self.cookie,
            src: self.src,
            dst: self.dst,
        }
    }
}

/// Runs the command; returns the exit code. Each outcome goes to stdout, each refusal or failure
/// to stderr.
pub(super) fn run(args: &DestroyArgs) -> i32 {
    let picks = match find(args) {
        Ok(picks) => picks,
        Err(refusal) => {
            eprintln!("{}", escape_control(&refusal));
            return REFUSED;
        }
    };
    // One netlink socket per namespace, for every target in it.
    let mut queries = SocketQueries::default();
    let mut code = DONE;
    for pick in picks {
        let done = match pick {
            Pick::Destroy(target) => destroy(&target, args.dry_run, &mut queries),
            Pick::Refuse(refusal) => {
                eprintln!("{}", escape_control(&refusal));
                false
            }
        };
        if !done {
            code = REFUSED;
        }
    }
    code
}

/// Destroys `target` through `queries` (or, `dry_run`, says it would); whether it was (or would
/// be) done.
fn destroy(target: &Target, dry_run: bool, queries: &mut SocketQueries) -> bool {
    let what = format!("connection {}: {}", target.key.cookie, target.description);
    if dry_run {
        println!("dry run: would destroy {what}");
        return true;
    }
    match queries.destroy(&target.key) {
        Ok(true) => {
            println!("destroyed {what}");
            true
        }
        Ok(false) => {
            eprintln!(
                "not found: {what} is gone (closed, or its addresses belong to another socket now)"
            );
            false
        }
        Err(error) => {
            let error = crate::model::format::error_chain(&error);
            eprintln!(
                "cannot destroy {what}: {error} (needs root: CAP_NET_ADMIN, and CAP_SYS_ADMIN for another network namespace)"
            );
            false
        }
    }
}

/// The selected sockets, each to destroy or refused, or why there are none (one line).
fn find(args: &DestroyArgs) -> Result<Vec<Pick>, String> {
    let selector = args.selector();
    let url = format!("{}/connections", args.agent.trim_end_matches('/'));
    let listed = fetch(&url, &args.agent, &[]).and_then(|body| {
        serde_json::from_str::<Vec<ConnectionView>>(&body)
            .with_context(|| format!("{url} did not answer a connection list"))
    });
    let views = match listed {
        Ok(views) => views,
        Err(error) if args.force => {
            tracing::debug!(%error, "agent not asked; looking in every namespace");
            return from_kernel(&selector);
        }
        Err(error) => {
            return Err(format!(
                "refused: {error:#}; without the agent only --force destroys (it cannot tell whether a connection is suspect)"
            ));
        }
    };
    let selected: Vec<ConnectionView> = views
        .into_iter()
        .filter(|v| {
            let addr = |text: &str| text.parse::<SocketAddr>().ok();
            match (addr(&v.local), addr(&v.remote)) {
                (Some(local), Some(remote)) => selector.matches(v.cookie, local, remote),
                _ => {
                    selector.src.is_none()
                        && selector.dst.is_none()
                        && selector.cookie == Some(v.cookie)
                }
            }
        })
        .collect();
    if selected.is_empty() {
        if args.force {
            return from_kernel(&selector);
        }
        return Err(format!(
            "not found: the agent at {} tracks no connection with {selector}",
            args.agent
        ));
    }
    let mut picks = Vec::new();
    for view in selected {
        if let Some(refusal) = refusal(&view, args.force) {
            picks.push(Pick::Refuse(refusal));
            continue;
        }
        match key_of_view(&view) {
            Some(key) => picks.push(Pick::Destroy(Target {
                key,
                description: describe_view(&view),
            })),
            None if args.force => picks.extend(from_kernel(&Selector {
                cookie: Some(view.cookie),
                ..selector
            })?),
            None => picks.push(Pick::Refuse(format!(
                "refused: the agent does not know connection {}'s network namespace",
                view.cookie
            ))),
        }
    }
    Ok(picks)
}

/// The sockets `selector` selects in any network namespace (a `sock_diag` dump of each), none
/// of them judged by the agent.
fn from_kernel(selector: &Selector) -> Result<Vec<Pick>, String> {
    let every_state = u32::MAX;
    let picks: Vec<Pick> = sock_diag::dump_all(every_state)
        .into_iter()
        .filter(|s| selector.matches(s.cookie, s.local, s.remote))
        .map(|socket| {
            let state = crate::model::labels::state_label(socket.state);
            if socket.state == monitor_common::tcp_state::LISTEN {
                let what = format!("{}, {state}", socket.local);
                return Pick::Refuse(listener_refusal(socket.cookie, &what));
            }
            Pick::Destroy(Target {
                key: SocketKey {
                    netns: socket.netns,
                    family: socket.family,
                    local: socket.local,
                    remote: socket.remote,
                    cookie: socket.cookie,
                },
                description: format!(
                    "{} → {} ({state}, netns {}; found with sock_diag, not judged by the agent)",
                    socket.local, socket.remote, socket.netns
                ),
            })
        })
        .collect();
    if picks.is_empty() {
        return Err(format!(
            "not found: no TCP socket with {selector} in any network namespace"
        ));
    }
    Ok(picks)
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
    Some(SocketKey::new(view.netns?, local, remote, view.cookie))
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
