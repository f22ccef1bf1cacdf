//! Every TCP socket a process holds, read through the `iter/task_file` program
//! (`monitor-ebpf/src/task_file.rs`): one [`HeldSocket`] record per TCP socket descriptor of
//! every process, in one pass that covers every network namespace (it walks the processes'
//! file tables, not a namespace's socket hash, so its cost grows with the descriptors, not with
//! namespaces × sockets).
//!
//! The walk covers the processes of the PID namespace of the thread that creates the iterator
//! file: the agent's, the host's. As for the `iter/tcp` reader, the link is created once and
//! kept, and each [`TaskFileReader::for_each`] makes a new iterator file from it and reads it to
//! the end. The pure conversions (grouping by socket, ages) are in [`holders`].

pub mod holders;

use std::{
    fs::File,
    io::{self, BufRead as _, BufReader, Read as _},
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
};

use aya::Btf;
use monitor_common::holders::{HeldSocket, ITER_TASK_FILE_PROGRAM};

use super::{
    BpfError, Programs,
    kernel_state::{load_and_link, sys},
};

/// Bytes of one record in the iterator's output.
pub const RECORD_LEN: usize = size_of::<HeldSocket>();

/// The kernel's iterator type the program attaches to (`bpf_iter_task_file`).
const ITER_TARGET: &str = "task_file";

/// How much is read from the iterator per `read()`: its buffer holds at most 8 pages per call.
const READ_CHUNK: usize = 64 * 1024;

/// The linked `iter/task_file` program: makes a new iterator per pass. Cloning is cheap (the link
/// is shared) and a clone may be sent to another thread; the link is detached when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct TaskFileReader {
    link: Arc<OwnedFd>,
}

impl Programs {
    /// Loads (verifies) and links the `iter/task_file` program, which writes one [`HeldSocket`]
    /// per TCP socket descriptor of every process. [`Programs::load`] loads it (the agent's
    /// [`Programs::holders`]); a later call returns that same reader. Loading needs `CAP_BPF`
    /// (and `CAP_PERFMON` for the kernel reads).
    ///
    /// # Errors
    /// The kernel BTF cannot be read ([`BpfError::KernelBtf`]), the object has no such program
    /// ([`BpfError::MissingProgram`]), the verifier or the kernel refuses it
    /// ([`BpfError::Program`]), or `BPF_LINK_CREATE` fails ([`BpfError::KernelState`]).
    pub fn holders_reader(&mut self) -> Result<TaskFileReader, BpfError> {
        if let Some(reader) = &self.holders {
            return Ok(reader.clone());
        }
        let btf = Btf::from_sys_fs().map_err(BpfError::KernelBtf)?;
        let link = load_and_link(&mut self.ebpf, &btf, ITER_TASK_FILE_PROGRAM, ITER_TARGET)?;
        Ok(TaskFileReader {
            link: Arc::new(link),
        })
    }
}

impl TaskFileReader {
    /// One record per TCP socket descriptor of every process, now, in the kernel's task order.
    /// The pass is not atomic: a descriptor opened or closed while it runs may be missed.
    ///
    /// # Errors
    /// [`BpfError::KernelState`]: the iterator cannot be created or read, or its output is not a
    /// whole number of records.
    pub fn read(&self) -> Result<Vec<HeldSocket>, BpfError> {
        let mut records = Vec::new();
        self.for_each(|record| records.push(*record))?;
        Ok(records)
    }

    /// As [`read`](Self::read), calling `f` for each record instead of collecting them.
    ///
    /// # Errors
    /// As [`read`](Self::read); records before the failure have been passed to `f`.
    pub fn for_each(&self, mut f: impl FnMut(&HeldSocket)) -> Result<(), BpfError> {
        let error = |step: &'static str| move |source| BpfError::KernelState { step, source };
        let iterator = sys::iter_create(self.link.as_fd()).map_err(error("BPF_ITER_CREATE"))?;
        let mut input = BufReader::with_capacity(READ_CHUNK, File::from(iterator));
        let mut raw = [0u8; RECORD_LEN];
        loop {
            match input.fill_buf() {
                Ok([]) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(error("reading the task_file iterator")(e)),
            }
            // A record cut by the end of the output is UnexpectedEof here.
            input
                .read_exact(&mut raw)
                .map_err(error("reading the task_file iterator"))?;
            f(&decode(&raw));
        }
    }
}

/// One record from its bytes.
fn decode(raw: &[u8; RECORD_LEN]) -> HeldSocket {
    // SAFETY: `raw` holds RECORD_LEN bytes; `HeldSocket` is repr(C) plain data (`aya::Pod`) for
    // which every bit pattern is valid; the read does not assume alignment.
    unsafe { raw.as_ptr().cast::<HeldSocket>().read_unaligned() }
}

/// Every record in `bytes` (the iterator's whole output).
///
/// # Errors
/// The length of a trailing partial record.
pub fn decode_records(bytes: &[u8]) -> Result<Vec<HeldSocket>, usize> {
    let chunks = bytes.chunks_exact(RECORD_LEN);
    let rest = chunks.remainder().len();
    if rest != 0 {
        return Err(rest);
    }
    Ok(chunks
        .map(|chunk| {
            let mut raw = [0u8; RECORD_LEN];
            raw.copy_from_slice(chunk);
            decode(&raw)
        })
        .collect())
}

#[cfg(test)]
mod tests;
