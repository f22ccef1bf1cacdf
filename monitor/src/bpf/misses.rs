//! Events the kernel skipped: a BTF tracepoint program entered again on the same CPU while it
//! still runs (softirq interrupting it) is not run, and the kernel counts that in the program's
//! `bpf_prog_info.recursion_misses` (what `bpftool prog show` prints as `recursion_misses`). A
//! missed `inet_sock_set_state` is a lost transition, so the count says how far an event-built
//! view can drift from the kernel.
//!
//! aya 0.14's `ProgramInfo` does not expose the field: this asks the kernel directly
//! (`BPF_OBJ_GET_INFO_BY_FD`).

use std::{
    io,
    mem::MaybeUninit,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya_obj::generated::{bpf_cmd, bpf_prog_info};

/// The `info` member of `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `recursion_misses` of the loaded program `program`: runs the kernel skipped, since it was
/// loaded (monotonic).
///
/// # Errors
/// The kernel refused `BPF_OBJ_GET_INFO_BY_FD` (not a program descriptor, or no permission).
pub(crate) fn recursion_misses(program: BorrowedFd<'_>) -> io::Result<u64> {
    let mut info = MaybeUninit::<bpf_prog_info>::zeroed();
    let mut attr = InfoByFd {
        bpf_fd: u32::try_from(program.as_raw_fd()).map_err(io::Error::other)?,
        info_len: u32::try_from(size_of::<bpf_prog_info>()).map_err(io::Error::other)?,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` is a valid `bpf_attr.info` prefix (the kernel zero-fills the rest of the
    // union from the size given); `info` points to `info_len` writable bytes that live across
    // the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw mut attr,
            size_of::<InfoByFd>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised plain integers, filled by the kernel up to `info_len`.
    Ok(unsafe { info.assume_init() }.recursion_misses)
}
