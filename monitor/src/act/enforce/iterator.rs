//! The agent's [`Applier`]: the socket-option iterator, in the socket's own namespace.

use std::sync::Arc;

use monitor_common::sockopt::SockoptRequest;

use super::Applier;

/// The agent's [`Applier`]: the `iter_tcp_sockopt` program, read from a thread inside the
/// socket's namespace (`netns::in_namespace`; needs `CAP_SYS_ADMIN` for other namespaces).
pub struct IteratorApplier {
    pub control: Arc<crate::bpf::SockoptControl>,
}

impl Applier for IteratorApplier {
    fn apply(
        &self,
        netns: Option<u32>,
        requests: &[(u64, SockoptRequest)],
    ) -> Result<Vec<(u64, SockoptRequest)>, String> {
        let own = crate::netns::ns_inode(std::path::Path::new("/proc/self/ns/net"));
        let control = Arc::clone(&self.control);
        let requests = requests.to_vec();
        let run = move || {
            control
                .apply(&requests)
                .map_err(|e| crate::model::format::error_chain(&e))
        };
        if netns.is_none() || netns == own {
            return run();
        }
        let ns = crate::netns::find_namespaces()
            .into_iter()
            .find(|ns| Some(ns.inode) == netns)
            .ok_or_else(|| format!("network namespace {netns:?} not found"))?;
        crate::netns::in_namespace(&ns, run).map_err(|e| crate::model::format::error_chain(&e))?
    }
}
