//! Judging one table entry: the kernel's values from the entry and the last held pass, the
//! owner and holders, the features' annotations, then the verdicts. Shared by scans and
//! `/connections` readers ([`Pipeline::scan`], [`Pipeline::read`]).

use std::sync::Arc;

use monitor_common::{SockActivity, tcp_state};

use super::Pipeline;
use crate::{
    model::{Comm, Connection},
    scan::{
        convert,
        feature::{Annotator, ScanPass},
        held_state,
        holders::{self, HeldSockets},
        kernel_state::{self, FastMap, KernelTruth},
        namespaces::DefaultsByNetns,
        processes::ProcessCache,
    },
    verdict::{self, Policy},
};

impl Pipeline {
    /// One entry, judged into `c` when live. CLOSE and `TIME_WAIT` entries are never live (a straggler would make
    /// counts differ from what `ss` shows for live sockets); one whose socket the kernel no
    /// longer has is gone. The kernel's own values come from the entry itself (the last read
    /// wrote them into its slot) and, for a socket a process holds, from the last pass over the
    /// held sockets.
    pub(super) fn judge(
        &self,
        (slot, cookie, entry): (u32, u64, &SockActivity),
        now_ns: u64,
        context: &Context,
        processes: &mut ProcessCache,
        c: &mut Connection,
    ) -> Judged {
        if entry.state == tcp_state::CLOSE || entry.state == tcp_state::TIME_WAIT {
            return Judged::NotLive;
        }
        if context.truth.as_deref().is_some_and(|t| t.is_gone(entry)) {
            return Judged::Gone;
        }
        let netns = (entry.netns != 0).then_some(entry.netns);
        let defaults = self.defaults.of(&context.namespaces, netns);
        *c = convert::unnamed_connection(cookie, entry, now_ns, &defaults);
        kernel_state::apply(c, entry, now_ns, &defaults);
        let held = context.held.as_deref();
        let view = held.and_then(|h| h.view(slot, cookie));
        let in_accept_queue = view.as_ref().map_or_else(
            || kernel_state::in_accept_queue(entry),
            |view| held_state::in_accept_queue(&view.sample),
        );
        if let Some(view) = view {
            held_state::apply(c, entry, view, now_ns, &defaults);
        }
        let hooks_owner = c.pid;
        holders::attribute(c, held, slot, in_accept_queue);
        if c.pid.is_none() && in_accept_queue {
            c.accept_queue = true;
            c.pid = c
                .netns
                .and_then(|netns| context.listeners.get(&(netns, c.local.port())))
                .copied();
        }
        if let Some(pid) = c.pid {
            let process = processes.info(pid);
            // The thread group leader's name: the kernel side saw whichever thread did the I/O
            // (its name is no fallback for another process).
            c.comm = process
                .name
                .or_else(|| (hooks_owner == Some(pid)).then(|| Comm::from_kernel(&entry.comm)));
            c.cgroup.clone_from(&process.cgroup);
            c.pod.clone_from(&process.pod);
        }
        holders::name_holders(c, processes);
        for annotator in &context.annotators {
            annotator.annotate(c, now_ns, &context.policy);
        }
        (c.suspect, c.gives_up_in) = verdict::evaluate(c, &context.policy, defaults.tcp_retries2);
        Judged::Live
    }
}

/// The connection a pass refills for each socket ([`Pipeline::judge`]), before the first.
pub(super) fn refilled() -> Connection {
    let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    Connection::new(0, tcp_state::CLOSE, nowhere, nowhere)
}

/// What became of one table entry in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Judged {
    /// Judged into the pass's connection.
    Live,
    /// CLOSE or `TIME_WAIT`: never reported.
    NotLive,
    /// The kernel no longer has the socket.
    Gone,
}

/// The owner (pid) of each listening socket by (network namespace, port).
pub(super) type Listeners = FastMap<(u32, u16), u32>;

/// What one pass reads once and every socket of it shares.
pub(super) struct Context<'a> {
    pub(super) namespaces: DefaultsByNetns,
    pub(super) truth: Option<Arc<KernelTruth>>,
    pub(super) held: Option<Arc<HeldSockets>>,
    pub(super) policy: Arc<Policy>,
    pub(super) listeners: Arc<Listeners>,
    /// Each feature's view of the pass, in registration order.
    pub(super) annotators: Vec<Box<dyn Annotator + 'a>>,
}

/// At a scan: every feature's scan follows `c` (judged, verdicts confirmed).
pub(super) fn observe(scans: &mut [Box<dyn ScanPass + '_>], c: &Connection, policy: &Policy) {
    for scan in scans {
        scan.observe(c, policy);
    }
}
