//! The kernel's own socket state per network namespace: the `iter/tcp` reader (`probes`) run
//! inside each namespace by `seed`'s per-namespace threads. The glue lives here because `probes`
//! and `seed` sit on one level and may not import each other; `scan` is the first room above both.

use monitor_common::kernel_state::KernelSockState;

use crate::{
    probes::{KernelStateReader, ProbeError},
    seed::{self, Netns, SeedError},
};

/// Why one namespace's sockets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KernelStateError {
    /// The namespace could not be entered (gone, or no privilege), or its thread failed.
    #[error("network namespace {}", ns.path.display())]
    Namespace {
        ns: Netns,
        #[source]
        source: SeedError,
    },
    /// Inside the namespace, the iterator could not be created or read (boxed: a
    /// [`ProbeError`] is large, and this error is returned per namespace).
    #[error("reading the socket state iterator in network namespace {}", ns.path.display())]
    Read {
        ns: Netns,
        #[source]
        source: Box<ProbeError>,
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
    let inside = reader.clone();
    match seed::in_namespace(ns, move || inside.read()) {
        Ok(Ok(sockets)) => Ok(sockets),
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

/// [`read_namespace`] for every namespace of [`seed::find_namespaces`]: the sockets of all that
/// could be read, and the errors of the others (vanished namespaces are left out: they have no
/// sockets left).
#[must_use]
pub fn read_all(reader: &KernelStateReader) -> (Vec<KernelSockState>, Vec<KernelStateError>) {
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    for ns in seed::find_namespaces() {
        match read_namespace(reader, &ns) {
            Ok(found) => sockets.extend(found),
            Err(error) if error.is_vanished_namespace() => {}
            Err(error) => errors.push(error),
        }
    }
    (sockets, errors)
}
