//! Kubernetes pod identity of a socket's owner: which pod, namespace and container a process
//! runs in, from its cgroup v2 path (the pod UID and the container id, [`cgroup`]) and from the
//! container runtime's labels for that container (the names, [`resolver`] over [`containerd`]).
//! Nothing asks the API server: the kubelet already told the runtime.

pub mod cgroup;
pub mod containerd;
pub mod resolver;

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

pub use resolver::{LabelAnswer, LabelError, LabelSource, Labels, PodResolver};

/// The CRI label with the pod's name, set on every container Kubernetes creates.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// The CRI label with the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The CRI label with the pod's UID.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// The CRI label with the container's name in the pod spec.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// The pod a process runs in, as `/connections` serves it (`"kubernetes"`). Shared by every
/// connection of the container (one `Arc` per container id). Each field is null when unknown.
/// Equal when the four fields are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PodIdentity {
    /// The pod's namespace: runtime label `io.kubernetes.pod.namespace`.
    pub namespace: Option<String>,
    /// The pod's name: runtime label `io.kubernetes.pod.name`.
    pub pod: Option<String>,
    /// The pod's UID: from the cgroup path (`pod<uid>`, the systemd driver's `_` read back as
    /// `-`), else runtime label `io.kubernetes.pod.uid`. Known without the runtime.
    pub pod_uid: Option<String>,
    /// The container's name in the pod spec: runtime label `io.kubernetes.container.name`.
    pub container: Option<String>,
    /// [`Self::qualified_name`], made once per container: the `group_by = "pod"` owner of
    /// every connection of the container costs a reference count, not a string.
    #[serde(skip)]
    owner: Option<Arc<str>>,
}

impl PartialEq for PodIdentity {
    fn eq(&self, other: &Self) -> bool {
        (&self.namespace, &self.pod, &self.pod_uid, &self.container)
            == (
                &other.namespace,
                &other.pod,
                &other.pod_uid,
                &other.container,
            )
    }
}

impl Eq for PodIdentity {}

impl PodIdentity {
    /// The identity a container's runtime labels give, with `pod_uid` from its cgroup path when
    /// the path has one (the label otherwise). None when the labels name no pod: the container
    /// was not created by Kubernetes, and the path shows no pod either.
    #[must_use]
    pub fn from_labels(labels: &HashMap<String, String>, pod_uid: Option<&str>) -> Option<Self> {
        let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
        let identity = Self::new(
            label(LABEL_POD_NAMESPACE),
            label(LABEL_POD_NAME),
            pod_uid.map(str::to_owned).or_else(|| label(LABEL_POD_UID)),
            label(LABEL_CONTAINER_NAME),
        );
        (identity.pod.is_some() || identity.pod_uid.is_some()).then_some(identity)
    }

    /// An identity of these parts (each None when unknown).
    #[must_use]
    pub fn new(
        namespace: Option<String>,
        pod: Option<String>,
        pod_uid: Option<String>,
        container: Option<String>,
    ) -> Self {
        let mut identity = Self {
            namespace,
            pod,
            pod_uid,
            container,
            owner: None,
        };
        identity.owner = identity.qualified_name().map(Arc::from);
        identity
    }

    /// [`Self::qualified_name`], shared; None without a pod name (or for an identity read back
    /// from JSON).
    #[must_use]
    pub fn owner(&self) -> Option<&Arc<str>> {
        self.owner.as_ref()
    }

    /// `namespace/pod` (the POD column, the `group_by = "pod"` owner); None without a pod name.
    /// A pod without a known namespace is `-/pod`.
    #[must_use]
    pub fn qualified_name(&self) -> Option<String> {
        let pod = self.pod.as_deref()?;
        Some(format!(
            "{}/{pod}",
            self.namespace.as_deref().unwrap_or("-")
        ))
    }
}

#[cfg(test)]
mod tests;
