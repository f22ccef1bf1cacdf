//! Which container runtime is asked for pod names: the CRI runtime at `runtime_endpoint` when it
//! is set; otherwise containerd's API, unless containerd's socket does not exist and CRI-O's
//! does. Decided once, at start, and said in one info line.

use std::path::{Path, PathBuf};

use super::{
    LabelSource,
    containerd::Containerd,
    cri::{CRIO_SOCKET, Cri},
};

/// `[kubernetes]`: the container runtime asked for the names of the pods connections are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// containerd's API socket (`containerd_socket`, `--containerd-socket`; absolute).
    pub containerd_socket: PathBuf,
    /// The containerd namespace of the containers the kubelet creates (`containerd_namespace`).
    pub containerd_namespace: String,
    /// A CRI runtime's socket, asked instead of containerd's API (`runtime_endpoint`,
    /// `--runtime-endpoint`; absolute, `unix://` removed). None: containerd's, or CRI-O's.
    pub runtime_endpoint: Option<PathBuf>,
}

/// The runtime API asked, and on which socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// containerd's own API at `socket`, in containerd namespace `namespace`.
    Containerd { socket: PathBuf, namespace: String },
    /// The CRI runtime service at `socket`.
    Cri { socket: PathBuf },
}

impl RuntimeChoice {
    /// The choice for `settings`, `exists` telling whether a socket path exists now.
    #[must_use]
    pub fn of(settings: &KubernetesSettings, exists: impl Fn(&Path) -> bool) -> Self {
        if let Some(endpoint) = &settings.runtime_endpoint {
            return Self::Cri {
                socket: endpoint.clone(),
            };
        }
        let crio = Path::new(CRIO_SOCKET);
        if !exists(&settings.containerd_socket) && exists(crio) {
            return Self::Cri {
                socket: crio.to_path_buf(),
            };
        }
        Self::Containerd {
            socket: settings.containerd_socket.clone(),
            namespace: settings.containerd_namespace.clone(),
        }
    }

    /// The source asking the chosen runtime; logs which (info).
    #[must_use]
    pub fn into_source(self) -> Box<dyn LabelSource> {
        match self {
            Self::Containerd { socket, namespace } => {
                tracing::info!(
                    "pod names from containerd's API at {} (namespace {namespace})",
                    socket.display()
                );
                Box::new(Containerd::in_namespace(socket, namespace))
            }
            Self::Cri { socket } => {
                tracing::info!("pod names from the CRI runtime at {}", socket.display());
                Box::new(Cri::at(socket))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>) -> KubernetesSettings {
        KubernetesSettings {
            containerd_socket: "/run/containerd/containerd.sock".into(),
            containerd_namespace: "k8s.io".into(),
            runtime_endpoint: endpoint.map(PathBuf::from),
        }
    }

    fn containerd() -> RuntimeChoice {
        RuntimeChoice::Containerd {
            socket: "/run/containerd/containerd.sock".into(),
            namespace: "k8s.io".into(),
        }
    }

    fn cri(socket: &str) -> RuntimeChoice {
        RuntimeChoice::Cri {
            socket: socket.into(),
        }
    }

    #[test]
    fn an_endpoint_is_asked_whatever_exists() {
        let set = settings(Some("/run/k8s/cri.sock"));
        for exists in [|_: &Path| true, |_: &Path| false] {
            assert_eq!(RuntimeChoice::of(&set, exists), cri("/run/k8s/cri.sock"));
        }
    }

    #[test]
    fn without_an_endpoint_containerd_unless_only_crio_is_there() {
        let unset = settings(None);
        let only = |present: &'static str| move |p: &Path| p == Path::new(present);
        assert_eq!(RuntimeChoice::of(&unset, |_| true), containerd());
        assert_eq!(
            RuntimeChoice::of(&unset, only("/run/containerd/containerd.sock")),
            containerd()
        );
        assert_eq!(
            RuntimeChoice::of(&unset, only(CRIO_SOCKET)),
            cri(CRIO_SOCKET)
        );
        // Neither yet (a node still starting): containerd, asked again later as before.
        assert_eq!(RuntimeChoice::of(&unset, |_| false), containerd());
    }
}
