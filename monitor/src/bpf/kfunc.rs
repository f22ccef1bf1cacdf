//! The kernel functions (kfuncs) the programs call, resolved before the object is loaded.
//!
//! aya 0.14 resolves no kfunc relocation, so each call in the programs is a raw `call`
//! instruction whose `imm` holds [`KFUNC_CALL_MARKER_IMM`] (`monitor-ebpf/src/kfunc.rs`). Before
//! loading, the agent copies the embedded object and replaces every such instruction: with the
//! kfunc's BTF id when the kernel has `bpf_rdonly_cast` (Linux 6.2 and later), else with
//! `r0 = 0` (the verifier reads every call before it prunes the paths not taken, and would
//! refuse an unknown id) while the type id global stays 0, so no program takes that path.

use btf_rs::{Btf, Type};
use monitor_common::KFUNC_CALL_MARKER_IMM;

/// Name of the global holding the BTF id of `struct tcp_sock` (0: no cast).
pub(crate) const TCP_SOCK_TYPE_ID_GLOBAL: &str = "TCP_SOCK_TYPE_ID";

/// The unresolved call: `BPF_JMP | BPF_CALL` (0x85), `src_reg` = `BPF_PSEUDO_KFUNC_CALL` (2),
/// `off` 0, `imm` = [`KFUNC_CALL_MARKER_IMM`], little-endian.
const CALL_MARKER: [u8; 8] = {
    let imm = KFUNC_CALL_MARKER_IMM.to_le_bytes();
    [0x85, 0x20, 0, 0, imm[0], imm[1], imm[2], imm[3]]
};

/// `r0 = 0` (`BPF_ALU64 | BPF_MOV | BPF_K`), in place of a call the kernel cannot make.
const CLEAR_R0: [u8; 8] = [0xb7, 0, 0, 0, 0, 0, 0, 0];

/// The BTF ids the programs' kfunc calls need, from the running kernel's BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KfuncIds {
    /// The `bpf_rdonly_cast` function.
    pub(crate) rdonly_cast: u32,
    /// `struct tcp_sock`, what the programs cast a socket to.
    pub(crate) tcp_sock: u32,
}

impl KfuncIds {
    /// The ids, when the kernel's BTF has both (None: the kernel predates `bpf_rdonly_cast`).
    pub(crate) fn of(btf: &Btf) -> Option<Self> {
        Some(Self {
            rdonly_cast: id_of(btf, "bpf_rdonly_cast", |t| matches!(t, Type::Func(_)))?,
            tcp_sock: id_of(btf, "tcp_sock", |t| matches!(t, Type::Struct(_)))?,
        })
    }
}

/// The id of the type named `name` that `kind` accepts.
fn id_of(btf: &Btf, name: &str, kind: fn(&Type) -> bool) -> Option<u32> {
    btf.resolve_ids_by_name(name)
        .ok()?
        .into_iter()
        .find(|&id| btf.resolve_type_by_id(id).is_ok_and(|t| kind(&t)))
}

/// An object's bytes in memory aligned for any field of it (ELF parsing reads 8-byte words in
/// place, which is why the embedded object is aligned too).
pub(crate) struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    /// The object's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of the `words` allocation, which has at least that many; u64 has
        // no padding and every byte is initialised.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// A copy of `object` with every unresolved kfunc call resolved with `ids` (or cleared, see the
/// module's text), and how many there were. BPF instructions are 8-byte aligned in their
/// sections, and sections in the file: only aligned positions are looked at.
pub(crate) fn resolve(object: &[u8], ids: Option<KfuncIds>) -> (AlignedObject, usize) {
    let mut resolved = AlignedObject {
        words: vec![0; object.len().div_ceil(8)],
        len: object.len(),
    };
    resolved.bytes_mut().copy_from_slice(object);
    let replacement = ids.map_or(CLEAR_R0, |ids| {
        let mut call = CALL_MARKER;
        call[4..].copy_from_slice(&ids.rdonly_cast.to_le_bytes());
        call
    });
    let mut calls = 0;
    for insn in resolved.bytes_mut().chunks_exact_mut(8) {
        if insn == CALL_MARKER {
            insn.copy_from_slice(&replacement);
            calls += 1;
        }
    }
    (resolved, calls)
}

#[cfg(test)]
mod tests;
