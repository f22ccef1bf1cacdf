//! The pod identity of a cgroup path, cached by container id: the runtime is asked once per
//! container, when a process of a container not seen before appears (the process cache asks
//! once per new pid, never per scan or per socket).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{PodIdentity, cgroup, pod_from_labels};

/// Where container labels come from: the container runtime ([`super::containerd`]), or a fixed
/// table in tests.
pub trait LabelSource: Send {
    /// The labels of container `id`: None when the runtime does not know the container.
    ///
    /// # Errors
    /// The runtime cannot be asked: [`LabelError`] says whether it is absent or failing.
    fn labels(&mut self, id: &str) -> LabelAnswer;
}

/// A container's labels, by name.
pub type Labels = HashMap<String, String>;

/// What a [`LabelSource`] answers: the labels, None for a container it does not know.
pub type LabelAnswer = Result<Option<Labels>, LabelError>;

/// What asking the runtime about one container gave.
enum Answer {
    /// The container's labels.
    Labels(Labels),
    /// The runtime does not know the container.
    Unknown,
    /// The runtime could not be asked (now, or recently).
    Unreachable,
}

/// Why a [`LabelSource`] could not answer, one line each.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// No runtime here (its socket does not exist): not a Kubernetes node, or not yet.
    #[error("{0}")]
    Absent(String),
    /// The runtime is there and did not answer (refused, an error, timed out).
    #[error("{0}")]
    Failed(String),
}

/// How long the runtime is left alone after it could not be asked: a node without containerd
/// costs one attempt a minute, not one per new process.
const RETRY_AFTER: Duration = Duration::from_mins(1);

/// Containers remembered; past it the cache starts over (a node runs at most a few hundred pods,
/// so this only bounds a node that churns through short-lived containers).
const MAX_CONTAINERS: usize = 4096;

/// Resolves cgroup paths to pod identities, one [`LabelSource`] question per container.
pub struct PodResolver {
    source: Box<dyn LabelSource>,
    /// By container id: the identity (None: the container is in no pod).
    known: HashMap<String, Option<Arc<PodIdentity>>>,
    /// The runtime is not asked before this (it failed last time).
    quiet_until: Option<Instant>,
    /// Whether the runtime's failure was logged (once, and its recovery once).
    failure_logged: bool,
    /// How long the runtime is left alone after a failure ([`RETRY_AFTER`]).
    retry_after: Duration,
}

impl PodResolver {
    /// A resolver asking `source`.
    #[must_use]
    pub fn new(source: Box<dyn LabelSource>) -> Self {
        Self {
            source,
            known: HashMap::new(),
            quiet_until: None,
            failure_logged: false,
            retry_after: RETRY_AFTER,
        }
    }

    /// As [`new`](Self::new), asking again at once after a failure (tests).
    #[cfg(test)]
    pub(crate) fn retrying_at_once(source: Box<dyn LabelSource>) -> Self {
        Self {
            retry_after: Duration::ZERO,
            ..Self::new(source)
        }
    }

    /// The pod identity of a process in `cgroup` (its cgroup v2 path): the pod UID from the path,
    /// the names from the runtime's labels of the container the path names. None when the path
    /// shows no pod and the runtime knows no pod for its container. Without the runtime, the
    /// names are None and the UID is still the path's (not remembered: asked again for the
    /// next process of the container once the runtime answers).
    pub fn resolve(&mut self, cgroup: &str) -> Option<Arc<PodIdentity>> {
        let ids = cgroup::parse(cgroup);
        let Some(id) = ids.container_id else {
            return uid_only(ids.pod_uid);
        };
        if let Some(known) = self.known.get(&id) {
            return known.clone();
        }
        let identity = match self.ask(&id) {
            Answer::Unreachable => return uid_only(ids.pod_uid),
            Answer::Labels(labels) => {
                pod_from_labels(&labels, ids.pod_uid.as_deref()).map(Arc::new)
            }
            Answer::Unknown => uid_only(ids.pod_uid),
        };
        if self.known.len() >= MAX_CONTAINERS {
            self.known.clear();
        }
        self.known.insert(id, identity.clone());
        identity
    }

    /// The runtime's answer for container `id`.
    fn ask(&mut self, id: &str) -> Answer {
        if self.quiet_until.is_some_and(|until| Instant::now() < until) {
            return Answer::Unreachable;
        }
        match self.source.labels(id) {
            Ok(labels) => {
                if self.quiet_until.take().is_some() && self.failure_logged {
                    tracing::info!("container runtime answers again: pod names are known");
                }
                labels.map_or(Answer::Unknown, Answer::Labels)
            }
            Err(error) => {
                if !self.failure_logged {
                    self.failure_logged = true;
                    let retry = self.retry_after.as_secs();
                    match &error {
                        LabelError::Absent(_) => tracing::debug!(
                            "no container runtime ({error}): no pod names; looked for every {retry}s"
                        ),
                        LabelError::Failed(_) => tracing::warn!(
                            "container runtime not asked for pod names ({error}): connections in pods show their pod UID only; retried every {retry}s"
                        ),
                    }
                }
                self.quiet_until = Some(Instant::now() + self.retry_after);
                Answer::Unreachable
            }
        }
    }
}

/// The identity the cgroup path alone gives: the pod UID, when it has one.
fn uid_only(pod_uid: Option<String>) -> Option<Arc<PodIdentity>> {
    pod_uid.map(|pod_uid| Arc::new(PodIdentity::new(None, None, Some(pod_uid), None)))
}

impl std::fmt::Debug for PodResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodResolver")
            .field("containers", &self.known.len())
            .field("quiet_until", &self.quiet_until)
            .finish_non_exhaustive()
    }
}
