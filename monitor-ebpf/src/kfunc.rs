//! Kernel functions (kfuncs) the programs call. aya 0.14 resolves no kfunc relocation, so a call
//! is written as its raw instruction with a marker where the kernel wants the function's BTF id;
//! the agent replaces every marker before loading the object (`monitor/src/bpf/kfunc.rs`): with
//! the id when the kernel has the kfunc, else with `r0 = 0`, and then it leaves the type id
//! global below at 0 so that no program takes the path that would use the result.

use core::ffi::c_void;

use monitor_common::KFUNC_CALL_MARKER_IMM;

/// The marker's bytes, as the instruction holds them.
const MARKER: [u8; 4] = KFUNC_CALL_MARKER_IMM.to_le_bytes();

/// BTF id of `struct tcp_sock` in the running kernel's BTF, set by the agent when the kernel has
/// `bpf_rdonly_cast` (Linux 6.2 and later); 0 otherwise, and [`rdonly_cast`] is then not called.
#[unsafe(no_mangle)]
static TCP_SOCK_TYPE_ID: u32 = 0;

/// The type id to cast a socket to `struct tcp_sock` with, if the kernel can (see
/// [`TCP_SOCK_TYPE_ID`]). A read-only global: the verifier knows its value and skips the path
/// not taken.
#[inline(always)]
pub(crate) fn tcp_sock_type_id() -> Option<u32> {
    // SAFETY: a read of a read-only global, set before load.
    let id = unsafe { core::ptr::read_volatile(&raw const TCP_SOCK_TYPE_ID) };
    (id != 0).then_some(id)
}

/// `bpf_rdonly_cast(obj, type_id)`: `obj` typed as the kernel's BTF type `type_id`, for loads
/// only. The verifier turns each load through the result into an exception-handled one (a bad
/// address reads 0), and checks its offset and size against the type, so a field read this way
/// costs one load where `bpf_probe_read_kernel` costs a helper call. `type_id` must be a value
/// the verifier knows (a read-only global's).
///
/// The instruction: `call` (`BPF_JMP | BPF_CALL`, 0x85) with `src_reg` =
/// `BPF_PSEUDO_KFUNC_CALL` (2, the 0x20 byte), `imm` = [`KFUNC_CALL_MARKER_IMM`] (little-endian),
/// which the agent replaces. Arguments in r1 and r2, the result in r0; r1–r5 are clobbered, as
/// by any call.
#[inline(always)]
pub(crate) unsafe fn rdonly_cast(obj: *const c_void, type_id: u32) -> *const c_void {
    let out: *const c_void;
    // SAFETY: the caller passes a verifier-known `type_id`; the call follows the BPF calling
    // convention declared by the operands.
    unsafe {
        core::arch::asm!(
            ".byte 0x85, 0x20, 0x00, 0x00, {imm0}, {imm1}, {imm2}, {imm3}",
            imm0 = const MARKER[0],
            imm1 = const MARKER[1],
            imm2 = const MARKER[2],
            imm3 = const MARKER[3],
            inlateout("r1") obj => _,
            inlateout("r2") u64::from(type_id) => _,
            lateout("r0") out,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
            options(nostack),
        );
    }
    out
}
