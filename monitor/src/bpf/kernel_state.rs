//! The kernel's own state of every TCP socket, read through the `iter/tcp` program
//! (`monitor-ebpf/src/iter.rs`): one [`KernelSockState`] record per socket.
//!
//! A BPF iterator walks the sockets of the network namespace of the thread that **creates the
//! iterator file** (`BPF_ITER_CREATE` takes `current->nsproxy->net_ns`). [`KernelStateReader::read`]
//! creates a new one on every call, in the calling thread, and reads it to the end; reading
//! another namespace means calling it from a thread that entered that namespace ([`read_namespace`],
//! on `netns`'s per-namespace threads).
//!
//! aya 0.14 loads the program (`programs::Iter`), but its link can be turned into an iterator file
//! only once (`IterLink::into_file` consumes it). The reader therefore creates the link itself
//! (`BPF_LINK_CREATE` on the loaded program's fd) and keeps it, so any number of iterator files
//! can be made from it (`BPF_ITER_CREATE`), from any thread. The pure conversions from raw kernel
//! values to ages and byte counts are in [`convert`].

pub mod convert;
mod namespace;

use std::{
    fs::File,
    io::{self, Read as _},
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
};

use aya::{Btf, Ebpf, programs::Iter};
use monitor_common::kernel_state::KernelSockState;
#[cfg(doc)]
use monitor_common::kernel_state::{ITER_TCP_PROGRAM, ITER_TCP_TABLE_PROGRAM};

pub(crate) use self::namespace::read_in;
pub use self::namespace::{KernelStateError, read_namespace};
use super::BpfError;

/// Bytes of one record in the iterator's output.
pub const RECORD_LEN: usize = size_of::<KernelSockState>();

/// The kernel's iterator type the program attaches to (`bpf_iter_tcp`).
const ITER_TARGET: &str = "tcp";

/// The size of one `read()`: a BPF iterator fills at most its 8-page buffer per call, so a
/// larger buffer would not save calls.
const READ_CHUNK: usize = 64 * 1024;

/// The attached `iter/tcp` program: makes a new iterator per [`read`](Self::read), in the calling
/// thread's network namespace. Cloning is cheap (the link is shared) and a clone may be sent to
/// another thread; the link is detached when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct KernelStateReader {
    link: Arc<OwnedFd>,
}

impl KernelStateReader {
    /// Loads (verifies) the program `name` of `ebpf` ([`ITER_TCP_PROGRAM`] or
    /// [`ITER_TCP_TABLE_PROGRAM`]) as a `tcp` iterator and links it.
    ///
    /// # Errors
    /// The object has no such program ([`BpfError::MissingProgram`]), the verifier or the kernel
    /// refuses it ([`BpfError::Program`]), or `BPF_LINK_CREATE` fails
    /// ([`BpfError::KernelState`]).
    pub(crate) fn load(ebpf: &mut Ebpf, btf: &Btf, name: &str) -> Result<Self, BpfError> {
        let link = load_and_link(ebpf, btf, name, ITER_TARGET)?;
        Ok(Self {
            link: Arc::new(link),
        })
    }

    /// Every TCP socket of the calling thread's network namespace, as the kernel keeps it now:
    /// full sockets (listeners included), `TIME_WAIT` and request sockets, in the kernel's hash
    /// table order. Each full socket is read under its lock; the whole walk is not atomic
    /// (sockets that appear or go while it runs may be missed or seen once).
    ///
    /// # Errors
    /// [`BpfError::KernelState`]: the iterator cannot be created or read, or its output is not a
    /// whole number of records.
    pub fn read(&self) -> Result<Vec<KernelSockState>, BpfError> {
        let mut sockets = Vec::new();
        self.for_each(|record| sockets.push(*record))?;
        Ok(sockets)
    }

    /// As [`read`](Self::read), calling `f` for each record instead of collecting them.
    ///
    /// # Errors
    /// As [`read`](Self::read); records before the failure have been passed to `f`.
    pub fn for_each(&self, mut f: impl FnMut(&KernelSockState)) -> Result<(), BpfError> {
        let error = |step: &'static str| move |source| BpfError::KernelState { step, source };
        let iterator = sys::iter_create(self.link.as_fd()).map_err(error("BPF_ITER_CREATE"))?;
        let mut file = File::from(iterator);
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut filled = 0;
        loop {
            let n = match file.read(&mut buffer[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(error("reading the iterator")(e)),
            };
            if n == 0 {
                break;
            }
            filled += n;
            let whole = filled - filled % RECORD_LEN;
            for chunk in buffer[..whole].chunks_exact(RECORD_LEN) {
                f(&decode(chunk));
            }
            buffer.copy_within(whole..filled, 0);
            filled -= whole;
        }
        if filled != 0 {
            return Err(error("reading the iterator")(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("output ends {filled} bytes into a {RECORD_LEN}-byte record"),
            )));
        }
        Ok(())
    }
}

/// One record from its bytes (`chunk.len() == RECORD_LEN`).
fn decode(chunk: &[u8]) -> KernelSockState {
    assert_eq!(chunk.len(), RECORD_LEN, "a whole record");
    // SAFETY: `chunk` holds RECORD_LEN readable bytes; `KernelSockState` is repr(C) plain data
    // (`aya::Pod`) for which every bit pattern is valid; the read does not assume alignment.
    unsafe { chunk.as_ptr().cast::<KernelSockState>().read_unaligned() }
}

/// Every record in `bytes`, which must be a whole number of records.
///
/// # Errors
/// The length of the trailing partial record.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<KernelSockState>, usize> {
    let rest = bytes.len() % RECORD_LEN;
    if rest != 0 {
        return Err(rest);
    }
    Ok(bytes.chunks_exact(RECORD_LEN).map(decode).collect())
}

/// Ticks per second of the kernel's jiffies (`CONFIG_HZ`), from the resolution of
/// `CLOCK_MONOTONIC_COARSE`, which the kernel reports as one tick (`TICK_NSEC`). Needs no kernel
/// config file; `None` only if the clock is missing or reports something absurd.
#[must_use]
pub fn kernel_hz() -> Option<u32> {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `res` is a valid, writable timespec.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &raw mut res) } != 0 {
        return None;
    }
    convert::hz_from_tick(res.tv_sec, res.tv_nsec)
}

/// The two `bpf()` commands aya does not offer for an iterator link it keeps.
/// Loads (verifies) the program `name` of `ebpf` as an iterator of kernel type `target`
/// (`tcp`, `task_file`) and links it, without iterator parameters (every socket of the reading
/// thread's namespace, every task): the link each read makes a new iterator from.
///
/// # Errors
/// The object has no such program ([`BpfError::MissingProgram`]), the verifier or the kernel
/// refuses it ([`BpfError::Program`]), or `BPF_LINK_CREATE` fails ([`BpfError::KernelState`]).
pub(crate) fn load_and_link(
    ebpf: &mut Ebpf,
    btf: &Btf,
    name: &str,
    target: &str,
) -> Result<OwnedFd, BpfError> {
    let program: &mut Iter = super::program_of(ebpf, name)?;
    program.load(target, btf).map_err(BpfError::program(name))?;
    let program_fd = program.fd().map_err(BpfError::program(name))?;
    sys::link_create_iter(program_fd.as_fd()).map_err(|source| BpfError::KernelState {
        step: "BPF_LINK_CREATE",
        source,
    })
}

pub(crate) mod sys {
    use std::{
        io,
        os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    };

    /// `BPF_LINK_CREATE`, `BPF_ITER_CREATE` (`enum bpf_cmd`, include/uapi/linux/bpf.h).
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_ITER_CREATE: libc::c_long = 33;
    /// `BPF_TRACE_ITER` (`enum bpf_attach_type`).
    const BPF_TRACE_ITER: u32 = 28;

    /// The head of `union bpf_attr` for `BPF_LINK_CREATE`; the kernel zero-fills the rest.
    #[repr(C)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
    }

    /// `union bpf_attr` for `BPF_ITER_CREATE`.
    #[repr(C)]
    struct IterCreate {
        link_fd: u32,
        flags: u32,
    }

    /// A link of the loaded iterator program `program` (no iterator parameters: `tcp` takes
    /// none).
    pub(crate) fn link_create_iter(program: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        let attr = LinkCreate {
            prog_fd: fd_u32(program),
            target_fd: 0,
            attach_type: BPF_TRACE_ITER,
            flags: 0,
        };
        bpf_fd(BPF_LINK_CREATE, &attr)
    }

    /// A new iterator file of `link`, walking the calling thread's network namespace.
    pub(crate) fn iter_create(link: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        let attr = IterCreate {
            link_fd: fd_u32(link),
            flags: 0,
        };
        bpf_fd(BPF_ITER_CREATE, &attr)
    }

    fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
        // A valid descriptor is never negative.
        u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
    }

    /// `bpf(cmd, attr, sizeof attr)` for a command that returns a new file descriptor.
    fn bpf_fd<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
        // SAFETY: `attr` points to an initialised repr(C) prefix of `union bpf_attr` of the size
        // passed; the kernel copies it and treats the missing tail as zeros.
        let ret =
            unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_ref(attr), size_of::<T>()) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(ret).map_err(|_| io::Error::other("bpf() returned no fd"))?;
        // SAFETY: on success these commands return a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests;
