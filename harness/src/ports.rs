//! Free loopback ports for the servers the harness starts.

use std::net::TcpListener;

/// A TCP port free on 127.0.0.1 right now (the kernel picks it). Another process could take it
/// before the caller binds it; on these machines that is unlikely enough.
///
/// # Errors
/// When no loopback port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `wanted` when nothing listens on 127.0.0.1:`wanted`, else [`free_port`].
///
/// # Errors
/// As [`free_port`], when `wanted` is taken.
pub fn free_port_preferring(wanted: u16) -> anyhow::Result<u16> {
    if TcpListener::bind(("127.0.0.1", wanted)).is_ok() {
        return Ok(wanted);
    }
    free_port()
}
