//! Container labels from any CRI runtime (CRI-O, containerd's CRI plugin, …):
//! `runtime.v1.RuntimeService/ContainerStatus` (not verbose: the status alone, whose `labels`
//! are the ones the kubelet set), over the runtime's unix socket ([`SocketSource`]).

use std::path::{Path, PathBuf};

use containerd_client::tonic::{Code, Request, transport::Channel};
use k8s_cri::v1::{ContainerStatusRequest, runtime_service_client::RuntimeServiceClient};

use super::{
    Labels,
    socket_source::{RuntimeApi, SocketSource, channel},
};

/// CRI-O's socket: asked when `runtime_endpoint` is not set and containerd's socket does not
/// exist.
pub const CRIO_SOCKET: &str = "/run/crio/crio.sock";

/// Asks a CRI runtime at a socket for containers' labels.
pub type Cri = SocketSource<CriApi>;

impl Cri {
    /// A source asking the CRI runtime on `socket` (`[kubernetes] runtime_endpoint`). Touches
    /// nothing until asked.
    #[must_use]
    pub fn at(socket: PathBuf) -> Self {
        Self::new(socket, CriApi)
    }
}

/// The CRI's runtime service.
#[derive(Clone, Copy, Debug)]
pub struct CriApi;

impl RuntimeApi for CriApi {
    type Client = RuntimeServiceClient<Channel>;
    const NAME: &'static str = "CRI runtime";

    async fn connect(&self, socket: &Path) -> Result<Self::Client, String> {
        Ok(RuntimeServiceClient::new(channel(socket).await?))
    }

    async fn labels(&self, client: &mut Self::Client, id: &str) -> Result<Option<Labels>, String> {
        let request = Request::new(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        });
        match client.container_status(request).await {
            Ok(response) => Ok(response.into_inner().status.map(|s| s.labels)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(format!("container status: {}", status.message())),
        }
    }
}
