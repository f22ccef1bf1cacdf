//! A process name held inline: a socket's `comm` without a heap allocation per connection.

use std::{fmt, hash, ops::Deref};

/// The kernel's `TASK_COMM_LEN`: 15 bytes and a NUL.
pub const TASK_COMM_LEN: usize = 16;

/// `/proc/PID/comm`'s bytes (the name and a newline) as the kernel's NUL-padded buffer: raw
/// bytes, not text, so a name that is not UTF-8 reaches [`Comm::from_kernel`]'s one lossy
/// conversion the same way whether it came from `/proc` or from the kernel programs.
#[must_use]
pub fn kernel_buffer(proc_comm: &[u8]) -> [u8; TASK_COMM_LEN] {
    let name = proc_comm.strip_suffix(b"\n").unwrap_or(proc_comm);
    let len = name.len().min(TASK_COMM_LEN - 1);
    let mut out = [0; TASK_COMM_LEN];
    out[..len].copy_from_slice(&name[..len]);
    out
}
/// `comm` is not guaranteed UTF-8; each invalid byte becomes U+FFFD (3 bytes) in the lossy
/// conversion, so the worst case is three times the raw length. Keeping the lossy text (rather
/// than the raw bytes) is what lets [`Comm`] deref to `str` and print exactly as before.
const CAPACITY: usize = 3 * TASK_COMM_LEN;

/// A process name (`comm`), UTF-8, at most [`CAPACITY`] bytes, stored inline (`Copy`).
#[derive(Clone, Copy)]
pub struct Comm {
    len: u8,
    bytes: [u8; CAPACITY],
}

impl Comm {
    /// From the kernel's NUL-padded, possibly non-UTF-8 buffer.
    #[must_use]
    pub fn from_kernel(raw: &[u8; TASK_COMM_LEN]) -> Self {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        // Valid UTF-8 (nearly every name) is copied as it is: no allocation once per socket.
        match std::str::from_utf8(&raw[..len]) {
            Ok(text) => Self::new(text),
            Err(_) => Self::new(&String::from_utf8_lossy(&raw[..len])),
        }
    }

    /// From `/proc/PID/comm`'s bytes (see [`kernel_buffer`]).
    #[must_use]
    pub fn from_proc(proc_comm: &[u8]) -> Self {
        Self::from_kernel(&kernel_buffer(proc_comm))
    }

    /// From text; cut at a character boundary if longer than the capacity (never happens for a
    /// name that came from the kernel).
    ///
    /// # Panics
    /// Never: the capacity (48 bytes) fits the one-byte length.
    #[must_use]
    pub fn new(text: &str) -> Self {
        let mut len = text.len().min(CAPACITY);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; CAPACITY];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self {
            len: u8::try_from(len).expect("CAPACITY fits in a u8"),
            bytes,
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // `new` only copies whole characters of a `&str`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Deref for Comm {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Comm {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Comm {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Comm {}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl hash::Hash for Comm {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl serde::Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_nul_trimmed_and_lossy() {
        assert_eq!(Comm::from_kernel(b"redis\0\0\0\0\0\0\0\0\0\0\0"), "redis");
        assert_eq!(Comm::from_kernel(b"a-very-long-proc"), "a-very-long-proc");
        let invalid = Comm::from_kernel(&[0xff; 16]);
        assert_eq!(invalid.as_str(), "\u{fffd}".repeat(16));
        assert_eq!(invalid.to_string(), String::from_utf8_lossy(&[0xff; 16]));
    }

    /// A name that is not UTF-8 is the same lossy text from `/proc` as from the kernel, never
    /// empty; the newline `/proc` adds is not part of it.
    #[test]
    fn proc_names_take_the_same_lossy_path() {
        let raw = b"caf\xe9-\xff\x1b";
        let mut kernel = [0; TASK_COMM_LEN];
        kernel[..raw.len()].copy_from_slice(raw);
        let from_proc = Comm::from_proc(b"caf\xe9-\xff\x1b\n");
        assert_eq!(from_proc, Comm::from_kernel(&kernel));
        assert_eq!(from_proc.as_str(), "caf\u{fffd}-\u{fffd}\u{1b}");
        assert_eq!(kernel_buffer(b"redis-server\n")[..13], *b"redis-server\0");
        assert_eq!(
            kernel_buffer(b"a-very-long-process\n")[15],
            0,
            "15 bytes and a NUL"
        );
    }

    #[test]
    fn compares_displays_and_serializes_as_text() {
        let comm = Comm::from("nginx");
        assert_eq!(comm, Comm::new("nginx"));
        assert!(comm == "nginx");
        assert_eq!(format!("{comm} {comm:?}"), "nginx \"nginx\"");
        assert_eq!(serde_json::to_string(&comm).unwrap(), "\"nginx\"");
        assert_eq!(Some(comm).as_deref(), Some("nginx"));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(40);
        assert_eq!(Comm::new(&long).as_str(), "é".repeat(24));
    }
}
