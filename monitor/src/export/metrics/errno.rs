//! Errno numbers → symbolic names for `tcp_liveness_socket_errors_total{error}`.
//!
//! Uses `libc`'s constants rather than literal numbers because errno values differ between
//! architectures (mips, sparc), and the kernel reports the host architecture's numbers.

use std::borrow::Cow;

/// The errors a TCP socket can report through `sk_err`, plus a few generic ones.
const NAMES: &[(i32, &str)] = &[
    (libc::EPERM, "EPERM"),
    (libc::ENOENT, "ENOENT"),
    (libc::EINTR, "EINTR"),
    (libc::EIO, "EIO"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::EACCES, "EACCES"),
    (libc::EINVAL, "EINVAL"),
    (libc::EPIPE, "EPIPE"),
    (libc::EPROTO, "EPROTO"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::ENOPROTOOPT, "ENOPROTOOPT"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EADDRINUSE, "EADDRINUSE"),
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::ENETRESET, "ENETRESET"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::ENOTCONN, "ENOTCONN"),
    (libc::ESHUTDOWN, "ESHUTDOWN"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::EHOSTDOWN, "EHOSTDOWN"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
];

/// Symbolic name of an errno (`"ETIMEDOUT"`), or `"errno_<n>"` when not in the table.
#[must_use]
pub fn errno_name(errno: u32) -> Cow<'static, str> {
    NAMES
        .iter()
        .find(|&&(n, _)| u32::try_from(n) == Ok(errno))
        .map_or_else(
            || Cow::Owned(format!("errno_{errno}")),
            |&(_, name)| Cow::Borrowed(name),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_errnos() {
        assert_eq!(errno_name(libc::ETIMEDOUT as u32), "ETIMEDOUT");
        assert_eq!(errno_name(libc::ECONNRESET as u32), "ECONNRESET");
        assert_eq!(errno_name(libc::EPIPE as u32), "EPIPE");
        assert_eq!(errno_name(159), "errno_159");
        assert_eq!(errno_name(0), "errno_0");
    }
}
