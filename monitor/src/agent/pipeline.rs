//! The per-socket pipeline the scans and `/connections` share, and the features registered on
//! it: one line per feature, in the order every pass goes through them.

use std::sync::Arc;

use crate::{
    act::{enforce::Enforcement, probe::ProbeBook},
    config::RunConfig,
    scan::{Feature, Pipeline, convert::SocketDefaults},
};

/// The features the agent runs, each when its setting enables it.
pub(super) struct Features {
    /// `[probe]` (or an `[[override]]` with `probe = true`).
    pub probe: Option<Arc<ProbeBook>>,
    /// `[[enforce]]`.
    pub enforcement: Option<Arc<Enforcement>>,
}

/// The verdict pipeline (confirming verdicts against the kernel), judging by `defaults` until
/// the namespaces' own sysctls are read, with every enabled feature registered.
pub(super) fn build(defaults: SocketDefaults, config: &RunConfig, features: &Features) -> Arc<Pipeline> {
    let registered: [Option<Arc<dyn Feature>>; 2] = [
        features.probe.clone().map(|f| f as _),
        features.enforcement.clone().map(|f| f as _),
    ];
    let pipeline = Pipeline::new(defaults, config.policy.clone()).confirming_verdicts();
    let pipeline = registered
        .into_iter()
        .flatten()
        .fold(pipeline, Pipeline::with_feature);
    Arc::new(pipeline)
}
