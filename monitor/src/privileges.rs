//! Linux capabilities: what start-up needs (checked before anything is loaded), what the running
//! agent keeps ([`kept`]), and the drop itself, one thread at a time.
//!
//! Capabilities belong to each thread, and a new thread starts with its creator's. So every
//! thread that parses network input (the async runtime's workers and blocking pool, the
//! Alertmanager sender) drops all of them when it starts; the main thread loads and seeds with
//! the full [`START`] set, keeps only the [`kept`] set, starts the threads that enter namespaces
//! and walk `/proc` (scan, kernel state: they and the short-lived threads they start inherit
//! it), then drops the rest. `CAP_BPF` and `CAP_PERFMON` are gone from every thread after
//! start-up: maps and links are used through descriptors opened at load, which need none.

use caps::{CapSet, Capability, CapsHashSet};

/// A capability and what the agent does with it: the reason printed when it is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Need {
    pub cap: Capability,
    pub why: &'static str,
}

const BPF: Need = Need {
    cap: Capability::CAP_BPF,
    why: "load the kernel programs and create their maps",
};
const PERFMON: Need = Need {
    cap: Capability::CAP_PERFMON,
    why: "attach the BTF tracepoints, which read kernel memory",
};
const SYS_ADMIN: Need = Need {
    cap: Capability::CAP_SYS_ADMIN,
    why: "enter every network namespace (setns)",
};
const SYS_PTRACE: Need = Need {
    cap: Capability::CAP_SYS_PTRACE,
    why: "read other users' /proc/PID/fd and /proc/PID/ns/net (socket owners, namespaces)",
};
const DAC_READ_SEARCH: Need = Need {
    cap: Capability::CAP_DAC_READ_SEARCH,
    why: "list other users' /proc/PID/fd (socket owners)",
};

const CONNTRACK_NET_ADMIN: Need = Need {
    cap: Capability::CAP_NET_ADMIN,
    why: "ask the host's conntrack about idle flows (ctnetlink), when the agent was given it",
};

const NET_ADMIN: Need = Need {
    cap: Capability::CAP_NET_ADMIN,
    why: "destroy sockets for a [[remediate]] policy with dry_run = false (sock_diag SOCK_DESTROY)",
};

/// What start-up needs: loading and attaching the programs, then seeding every namespace's
/// sockets with their owners (the same set as the systemd unit's).
pub(crate) const START: &[Need] = &[BPF, PERFMON, SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH];

/// A part of the running agent that needs a capability after start-up; the ones beyond
/// [`Feature::Namespaces`] and [`Feature::Owners`] are enabled by their setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feature {
    /// Work inside every network namespace: the kernel-state reads (`iter/tcp`), the namespace
    /// sysctls and the verdict confirmations (`sock_diag`) run on threads that `setns()`.
    Namespaces,
    /// Socket owners: walks of every user's `/proc/PID/fd`.
    Owners,
    /// Ending confirmed-dead connections (`[[remediate]]` with `dry_run = false`): `sock_diag`
    /// `SOCK_DESTROY` from the scan thread.
    Destroy,
    /// The host's conntrack entry of an idle flow (ctnetlink `IPCTNL_MSG_CT_GET`, from the scan
    /// thread): kept when the agent has it, never required at start (without it the entries are
    /// not read).
    Conntrack,
}

impl Feature {
    /// The capabilities this feature uses.
    #[must_use]
    pub(crate) fn needs(self) -> &'static [Need] {
        match self {
            Self::Namespaces => &[SYS_ADMIN, SYS_PTRACE],
            Self::Owners => &[SYS_PTRACE, DAC_READ_SEARCH],
            Self::Destroy => &[NET_ADMIN],
            Self::Conntrack => &[CONNTRACK_NET_ADMIN],
        }
    }
}

/// The capabilities the running agent keeps for `features`, and nothing else.
#[must_use]
pub(crate) fn kept(features: &[Feature]) -> CapsHashSet {
    features
        .iter()
        .flat_map(|f| f.needs())
        .map(|need| need.cap)
        .collect()
}

/// The first of `needs` not in `effective`. One the running kernel does not know (not in
/// `supported`: `CAP_BPF` and `CAP_PERFMON` before Linux 5.8, where `CAP_SYS_ADMIN` covers
/// them) is not asked for.
#[must_use]
pub(crate) fn first_missing<'a>(
    needs: &'a [Need],
    effective: &CapsHashSet,
    supported: &CapsHashSet,
) -> Option<&'a Need> {
    needs
        .iter()
        .find(|need| supported.contains(&need.cap) && !effective.contains(&need.cap))
}

/// Why the capabilities are not what the agent needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrivilegeError {
    /// Start-up needs a capability the agent was not given.
    #[error(
        "missing capability {cap}, needed to {why}: run as root or grant it (docs/privileges.md)",
        cap = .0.cap,
        why = .0.why
    )]
    Missing(Need),
    /// The kernel refused to read or lower the thread's capabilities.
    #[error("changing the thread's capabilities")]
    Caps(#[from] caps::errors::CapsError),
    /// `no_new_privs` could not be set.
    #[error("setting no_new_privs")]
    NoNewPrivs(#[source] nix::Error),
}

/// Checks that the calling thread's effective set holds every [`START`] need and what the
/// running `features` need.
///
/// # Errors
/// [`PrivilegeError::Missing`] naming the first one missing, or the set cannot be read.
pub(crate) fn check_start(features: &[Feature]) -> Result<(), PrivilegeError> {
    let effective = caps::read(None, CapSet::Effective)?;
    let supported = caps::runtime::thread_all_supported();
    let needs: Vec<Need> = START
        .iter()
        .copied()
        .chain(features.iter().flat_map(|f| f.needs()).copied())
        .collect();
    match first_missing(&needs, &effective, &supported) {
        Some(need) => Err(PrivilegeError::Missing(*need)),
        None => Ok(()),
    }
}

/// Restricts the calling thread, and every thread it starts from now on, to `keep` (what it has
/// of it): permitted and effective are `keep`, inheritable and ambient empty, the bounding set
/// `keep` when the thread may lower it (`CAP_SETPCAP`: root; without it, the set only bounds
/// what an `execve` could gain, and `no_new_privs`, set here, already forbids any gain).
/// Permanent: a capability dropped from the permitted set cannot come back.
///
/// # Errors
/// The kernel refused a change (lowering is always allowed, so in practice never).
pub(crate) fn restrict_thread(keep: &CapsHashSet) -> Result<(), PrivilegeError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: CapsHashSet = keep.intersection(&permitted).copied().collect();
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)? {
        for cap in caps::read(None, CapSet::Bounding)? {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    // Effective first: it must stay within permitted at every step.
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

/// Drops every capability of the calling thread: for threads that parse network input. The
/// kernel cannot refuse this; should it, the error is logged (the thread keeps running).
pub(crate) fn drop_all_in_thread() {
    if let Err(error) = restrict_thread(&CapsHashSet::new()) {
        tracing::error!(error = %error, "cannot drop this thread's capabilities");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn running_agent_keeps_namespaces_and_owners_only() {
        let kept = kept(&[Feature::Namespaces, Feature::Owners]);
        assert_eq!(
            kept,
            set(&[
                Capability::CAP_SYS_ADMIN,
                Capability::CAP_SYS_PTRACE,
                Capability::CAP_DAC_READ_SEARCH
            ])
        );
        assert!(!kept.contains(&Capability::CAP_BPF));
        assert!(!kept.contains(&Capability::CAP_PERFMON));
        assert!(
            super::kept(&[]).is_empty(),
            "no feature, no capability: the network threads"
        );
    }

    #[test]
    fn destroy_adds_net_admin_only() {
        let with = kept(&[Feature::Namespaces, Feature::Owners, Feature::Destroy]);
        let without = kept(&[Feature::Namespaces, Feature::Owners]);
        let added: Vec<_> = with.difference(&without).copied().collect();
        assert_eq!(added, [Capability::CAP_NET_ADMIN]);
        let line = PrivilegeError::Missing(NET_ADMIN).to_string();
        assert!(
            line.starts_with("missing capability CAP_NET_ADMIN, needed to destroy sockets"),
            "{line}"
        );
    }

    #[test]
    fn kept_set_is_within_what_start_up_has() {
        let start: CapsHashSet = START.iter().map(|n| n.cap).collect();
        let all = kept(&[Feature::Namespaces, Feature::Owners]);
        assert!(all.is_subset(&start), "{all:?} not within {start:?}");
    }

    #[test]
    fn first_missing_names_the_first_absent_need() {
        let supported = caps::all();
        let everything: CapsHashSet = START.iter().map(|n| n.cap).collect();
        assert_eq!(first_missing(START, &everything, &supported), None);
        let mut without_bpf = everything.clone();
        without_bpf.remove(&Capability::CAP_BPF);
        without_bpf.remove(&Capability::CAP_DAC_READ_SEARCH);
        let missing = first_missing(START, &without_bpf, &supported).expect("one missing");
        assert_eq!(missing.cap, Capability::CAP_BPF);
        let line = PrivilegeError::Missing(*missing).to_string();
        assert!(
            line.starts_with("missing capability CAP_BPF, needed to load"),
            "{line}"
        );
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn capabilities_the_kernel_lacks_are_not_asked_for() {
        // Before Linux 5.8 there is no CAP_BPF or CAP_PERFMON: CAP_SYS_ADMIN covers both.
        let mut old_kernel = caps::all();
        old_kernel.remove(&Capability::CAP_BPF);
        old_kernel.remove(&Capability::CAP_PERFMON);
        let effective = set(&[
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_SYS_PTRACE,
            Capability::CAP_DAC_READ_SEARCH,
        ]);
        assert_eq!(first_missing(START, &effective, &old_kernel), None);
        let missing = first_missing(START, &effective, &caps::all()).map(|n| n.cap);
        assert_eq!(missing, Some(Capability::CAP_BPF));
    }
}
