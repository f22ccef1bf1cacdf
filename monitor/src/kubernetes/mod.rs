//! Kubernetes pod identity of a socket's owner: which pod, namespace and container a process
//! runs in, from its cgroup v2 path (the pod UID and the container id, [`cgroup`]) and from the
//! container runtime's labels for that container (the names, [`resolver`] over [`containerd`]'s
//! API or any CRI runtime's, [`cri`]; [`runtime`] chooses).
//! Nothing asks the API server: the kubelet already told the runtime.

pub mod cgroup;
pub mod containerd;
pub mod cri;
pub mod resolver;
pub mod runtime;
pub mod socket_source;

use std::collections::HashMap;

pub use crate::model::PodIdentity;

pub use resolver::{LabelAnswer, LabelError, LabelSource, Labels, PodResolver};

/// The CRI label with the pod's name, set on every container Kubernetes creates.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// The CRI label with the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The CRI label with the pod's UID.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// The CRI label with the container's name in the pod spec.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// The identity a container's runtime labels give, with `pod_uid` from its cgroup path when
/// the path has one (the label otherwise). None when the labels name no pod: the container
/// was not created by Kubernetes, and the path shows no pod either.
#[must_use]
pub(crate) fn pod_from_labels(
    labels: &HashMap<String, String>,
    pod_uid: Option<&str>,
) -> Option<PodIdentity> {
    let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    let identity = PodIdentity::new(
        label(LABEL_POD_NAMESPACE),
        label(LABEL_POD_NAME),
        pod_uid.map(str::to_owned).or_else(|| label(LABEL_POD_UID)),
        label(LABEL_CONTAINER_NAME),
    );
    (identity.pod.is_some() || identity.pod_uid.is_some()).then_some(identity)
}

#[cfg(test)]
mod tests;
