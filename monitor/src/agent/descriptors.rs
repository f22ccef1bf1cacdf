//! The open-file limit: each HTTP connection and BPF object is a descriptor, and the usual
//! soft limit (1024, systemd's default) is low for a server; the hard limit is the ceiling the
//! administrator set.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; logs what it did (debug) or could not.
pub(crate) fn raise_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "open-file limit raised"),
            Err(error) => tracing::warn!(soft, hard, %error, "cannot raise the open-file limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-file limit already at its maximum"),
        Err(error) => tracing::warn!(%error, "cannot read the open-file limit"),
    }
}
