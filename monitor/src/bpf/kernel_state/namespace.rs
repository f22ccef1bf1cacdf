//! Reading the kernel's socket state of one network namespace: an iterator walks the namespace
//! of the thread that creates it, so each read runs on a thread inside the namespace
//! ([`netns::in_namespace`]).

use monitor_common::kernel_state::KernelSockState;

use super::KernelStateReader;
use crate::{
    bpf::BpfError,
    netns::{self, Netns, NetnsError},
};

/// Why one namespace's sockets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KernelStateError {
    /// The namespace could not be entered (gone, or no privilege), or its thread failed.
    #[error("network namespace {}", ns.path.display())]
    Namespace {
        ns: Netns,
        #[source]
        source: NetnsError,
    },
    /// Inside the namespace, the iterator could not be created or read (boxed: a
    /// [`BpfError`] is large, and this error is returned per namespace).
    #[error("reading the socket state iterator in network namespace {}", ns.path.display())]
    Read {
        ns: Netns,
        #[source]
        source: Box<BpfError>,
    },
}

impl KernelStateError {
    /// The namespace went away between listing and reading: expected churn.
    #[must_use]
    pub fn is_vanished_namespace(&self) -> bool {
        matches!(self, Self::Namespace { source, .. } if source.is_vanished_namespace())
    }
}

/// Every TCP socket of `ns` as the kernel keeps it ([`KernelStateReader::read`] on a thread inside
/// `ns`; on the calling thread when it is already there). Each record's `netns` is `ns.inode`.
///
/// # Errors
/// [`KernelStateError::Namespace`] when `ns` cannot be entered, [`KernelStateError::Read`] when
/// the iterator fails inside it.
pub fn read_namespace(
    reader: &KernelStateReader,
    ns: &Netns,
) -> Result<Vec<KernelSockState>, KernelStateError> {
    read_in(reader, ns, KernelStateReader::read)
}

/// Runs `read` with `reader` on a thread inside `ns`, naming the namespace in its errors.
pub(crate) fn read_in<T: Send + 'static>(
    reader: &KernelStateReader,
    ns: &Netns,
    read: impl FnOnce(&KernelStateReader) -> Result<T, BpfError> + Send + 'static,
) -> Result<T, KernelStateError> {
    let inside = reader.clone();
    match netns::in_namespace(ns, move || read(&inside)) {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(source)) => Err(KernelStateError::Read {
            ns: ns.clone(),
            source: Box::new(source),
        }),
        Err(source) => Err(KernelStateError::Namespace {
            ns: ns.clone(),
            source,
        }),
    }
}
