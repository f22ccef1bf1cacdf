//! Container labels from containerd's API (`containers.v1.Containers/Get` in one containerd
//! namespace, `k8s.io` for the containers the kubelet creates through CRI), over its unix
//! socket ([`SocketSource`]).

use std::path::{Path, PathBuf};

use containerd_client::{
    services::v1::{GetContainerRequest, containers_client::ContainersClient},
    tonic::{Code, Request, transport::Channel},
};

use super::{
    Labels,
    socket_source::{RuntimeApi, SocketSource, channel},
};

/// Asks containerd at a socket, in one containerd namespace, for containers' labels.
pub type Containerd = SocketSource<ContainerdApi>;

impl Containerd {
    /// A source asking containerd's socket `socket` (`[kubernetes] containerd_socket`) about
    /// containers of `namespace` (`containerd_namespace`). Touches nothing until asked.
    #[must_use]
    pub fn in_namespace(socket: PathBuf, namespace: String) -> Self {
        Self::new(socket, ContainerdApi { namespace })
    }
}

/// containerd's containers service, in containerd namespace `namespace`.
#[derive(Clone, Debug)]
pub struct ContainerdApi {
    namespace: String,
}

impl RuntimeApi for ContainerdApi {
    type Client = ContainersClient<Channel>;
    const NAME: &'static str = "containerd";

    async fn connect(&self, socket: &Path) -> Result<Self::Client, String> {
        Ok(ContainersClient::new(channel(socket).await?))
    }

    async fn labels(&self, client: &mut Self::Client, id: &str) -> Result<Option<Labels>, String> {
        let mut request = Request::new(GetContainerRequest { id: id.to_owned() });
        let namespace = self
            .namespace
            .parse()
            .map_err(|e| format!("namespace is no header value: {e}"))?;
        request
            .metadata_mut()
            .insert("containerd-namespace", namespace);
        match client.get(request).await {
            Ok(response) => Ok(response.into_inner().container.map(|c| c.labels)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(format!("get container: {}", status.message())),
        }
    }
}
