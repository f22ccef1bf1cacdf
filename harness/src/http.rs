//! HTTP GET on loopback, enough for the agent, Prometheus and Alertmanager.
//!
//! HTTP/1.0, so the server closes the connection after the body and never chunks it: reading to
//! end of stream is the whole body, with no HTTP library to build.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context as _, bail};

/// How long one read may block: a large `/connections` on a busy host takes a while, a hung
/// server must not hang the caller.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` on 127.0.0.1:`port`: the status code and the body (UTF-8), whatever the status.
///
/// # Errors
/// When nothing listens, the answer is not UTF-8 HTTP, or a read blocks for [`READ_TIMEOUT`].
pub fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8(response).context("HTTP response is not UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no HTTP status")?
        .parse()?;
    Ok((status, body.to_owned()))
}

/// The body of `GET path` on 127.0.0.1:`port`.
///
/// # Errors
/// As [`get`], and when the status is not 2xx (the error has the status and body).
pub fn get_ok(port: u16, path: &str) -> anyhow::Result<String> {
    match get(port, path)? {
        (200..=299, body) => Ok(body),
        (status, body) => bail!("GET {path}: {status} {body}"),
    }
}
