//! The per-socket pipeline the scans and `/connections` share, and the features registered on
//! it: one line per feature, in the order every pass goes through them.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use super::{enforce, probing};
use crate::{
    act::{enforce::Enforcement, probe::ProbeBook},
    bpf::Programs,
    config::RunConfig,
    error::Error,
    forensics::Stacks,
    kubernetes::{PodResolver, runtime::RuntimeChoice},
    scan::{Feature, Pipeline, conntrack::HostConntrack, kernel_defaults},
};

/// The features the agent runs, each when its setting enables it.
pub(super) struct Features {
    /// `[probe]` (or an `[[override]]` with `probe = true`), when the socket-option program was
    /// loaded.
    pub probe: Option<Arc<ProbeBook>>,
    /// `[[enforce]]`.
    pub enforcement: Option<Arc<Enforcement>>,
    /// `[forensics] stacks`, when the programs record them.
    pub stacks: Option<Arc<Stacks>>,
}

/// The features `config` enables, and the verdict pipeline (confirming verdicts against the
/// kernel, judging by the agent's own namespace's sysctls until the others are read) with each
/// registered. Attaches `[[enforce]]`'s program (`CAP_BPF`, and `CAP_NET_ADMIN` or
/// `CAP_SYS_ADMIN` for the cgroup: call before the capability drop).
///
/// # Errors
/// As [`enforce::attach`].
pub(super) fn build(
    config: &RunConfig,
    programs: &Mutex<Programs>,
    sockopt_loaded: bool,
) -> Result<(Arc<Pipeline>, Features), Error> {
    let enforcement = tokio::task::block_in_place(|| enforce::attach(&config.enforce, programs))?;
    let defaults = kernel_defaults::load();
    let features = Features {
        probe: probing::book(config, defaults.hz, sockopt_loaded),
        enforcement,
        stacks: crate::locks::lock(programs)
            .stacks
            .take()
            .map(|tables| Arc::new(Stacks::new(tables))),
    };
    // The host's conntrack needs no setting: it asks the kernel only about idle candidates.
    let conntrack: Arc<dyn Feature> = Arc::new(HostConntrack::new());
    let registered: [Option<Arc<dyn Feature>>; 4] = [
        features.probe.clone().map(|f| f as _),
        features.enforcement.clone().map(|f| f as _),
        features.stacks.clone().map(|f| f as _),
        Some(conntrack),
    ];
    let runtime = RuntimeChoice::of(&config.kubernetes, Path::exists).into_source();
    let pipeline = registered.into_iter().flatten().fold(
        Pipeline::new(defaults, config.policy.clone())
            .confirming_verdicts()
            .with_pods(PodResolver::new(runtime)),
        Pipeline::with_feature,
    );
    Ok((Arc::new(pipeline), features))
}
