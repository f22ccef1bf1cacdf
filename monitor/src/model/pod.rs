//! The Kubernetes pod a socket's owner runs in, as the agent reports it (`/connections`'s
//! `"kubernetes"`, the POD column, alert labels). Where the values come from is the
//! `kubernetes` room's business (the cgroup path and the container runtime's labels).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
