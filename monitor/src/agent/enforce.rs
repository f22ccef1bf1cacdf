//! `[[enforce]]` at start-up: the kernel program's policy slots filled and the program attached
//! to the cgroup v2 root (new connections), the socket-option iterator loaded, and the
//! connections that already exist given their policy once. A policy whose cgroup does not exist
//! waits for it (a warning, not an error). Runs on the main thread before
//! privileges drop: loading needs `CAP_BPF`, attaching to a cgroup `CAP_NET_ADMIN` or
//! `CAP_SYS_ADMIN`, entering other namespaces `CAP_SYS_ADMIN`.

use std::sync::{Arc, Mutex};

use monitor_common::enforce::{EnforceSlot, SLOT_ACTIVE, SLOT_DEFERRED};

use crate::{
    act::enforce::{Enforce, Enforcement, IteratorApplier, PolicyCgroups, WAITING_CGROUP_ID},
    bpf::{BpfError, Programs, SocketSource, cgroup},
    clock,
    error::Error,
    scan::Pipeline,
};

/// Attaches the program (new connections get their policy from then on) and loads the
/// iterator that applies the rest: the enforcement the pipeline registers, None without
/// `[[enforce]]`.
///
/// # Errors
/// The cgroup v2 hierarchy cannot be found or a policy's cgroup read (other than missing), or the
/// kernel refuses the program, its maps or the attachment ([`Error::Bpf`]).
pub(super) fn attach(
    policies: &[Enforce],
    programs: &Mutex<Programs>,
) -> Result<Option<Arc<Enforcement>>, Error> {
    if policies.is_empty() {
        return Ok(None);
    }
    let root = cgroup::v2_root().map_err(|source| BpfError::Cgroup {
        step: "finding its mount in /proc/self/mountinfo".into(),
        source,
    })?;
    // Attached at the hierarchy's root, the program sees every connection on the host, whatever
    // cgroup namespace the agent runs in; below it, only those of the cgroup it is attached at.
    let host_root = cgroup::is_hierarchy_root(&root).unwrap_or(false);
    if !host_root {
        warn_if_own_cgroup_namespace();
    }
    let lookup_root = root.clone();
    let cgroups = PolicyCgroups::start(
        policies,
        Box::new(move |path| cgroup::id(&lookup_root, path)),
    )
    .map_err(|(i, source)| {
        let p = &policies[i];
        BpfError::Cgroup {
            step: format!(
                "[[enforce]] {}: reading cgroup {}",
                p.name,
                p.matcher.cgroup.as_deref().unwrap_or_default()
            ),
            source,
        }
    })?;
    let slots: Vec<EnforceSlot> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| slot(p, cgroups.id(i)))
        .collect();
    let (records, control) = {
        let mut programs = crate::locks::lock(programs);
        let records = programs.enforce(&slots, &root)?;
        (records, programs.sockopt_control()?)
    };
    tracing::info!(
        policies = policies.len(),
        cgroup_root = %root.display(),
        host_root,
        "enforce: sock_ops program attached at cgroup {} ({}); new connections get their policy \
         at establishment",
        root.display(),
        if host_root {
            "the host's root: every connection on the host"
        } else {
            "not the host's root: only connections of processes below it"
        }
    );
    let applier = IteratorApplier { control };
    Ok(Some(Arc::new(Enforcement::new(
        policies.to_vec(),
        Box::new(records),
        cgroups,
        Box::new(applier),
    ))))
}

/// Gives the connections that exist now their policy, once (the scans take those whose owner
/// shows up later), judged by `pipeline` (owners and names as the scans see them); nothing
/// without `[[enforce]]`.
pub(super) fn apply_to_existing(
    enforcement: Option<&Enforcement>,
    pipeline: &Pipeline,
    table: &dyn SocketSource,
) {
    let Some(enforcement) = enforcement else {
        return;
    };
    let mut pass = enforcement.start_pass();
    pipeline.read(table, clock::monotonic_now_ns(), &mut |c| pass.observe(c));
    let count = pass.finish();
    tracing::info!(count, "enforce: existing connections given their policy");
}

/// The kernel program's view of policy `p`: ports, cgroup (`cgroup_id`: its directory's id, None
/// while it is missing; the depth comes from the path), what to set.
fn slot(p: &Enforce, cgroup_id: Option<u64>) -> EnforceSlot {
    let (cgroup_id, cgroup_level) = match &p.matcher.cgroup {
        None => (0, 0),
        Some(path) => (cgroup_id.unwrap_or(WAITING_CGROUP_ID), cgroup::level(path)),
    };
    let request = p.request();
    EnforceSlot {
        flags: SLOT_ACTIVE | if p.needs_owner() { SLOT_DEFERRED } else { 0 },
        local_port: p.matcher.local_port.map_or(0, u32::from),
        remote_port: p.matcher.remote_port.map_or(0, u32::from),
        cgroup_level,
        cgroup_id,
        set: request.set,
        fill: request.fill,
        want: request.want,
        reserved: 0,
    }
}

/// In a cgroup namespace of its own (a container's default), the agent's cgroup v2 mount is its
/// container's subtree: the attachment covers only that, and cgroup paths are relative to it.
/// Said once at start (pid 1 is the host's init with the host's pid namespace).
fn warn_if_own_cgroup_namespace() {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).ok();
    if let (Some(own), Some(init)) = (ns("self"), ns("1"))
        && own != init
    {
        tracing::warn!(
            own = %own.display(),
            init = %init.display(),
            "enforce: the agent is in a cgroup namespace of its own: [[enforce]] reaches only the \
             connections of processes inside it; run it in the host's cgroup namespace"
        );
    }
}
