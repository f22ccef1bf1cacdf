use super::*;

/// A made-up object: `prefix` bytes, then `insns`.
fn object(prefix: usize, insns: &[[u8; 8]]) -> Vec<u8> {
    let mut bytes = vec![0x11; prefix];
    for insn in insns {
        bytes.extend_from_slice(insn);
    }
    bytes
}

const IDS: KfuncIds = KfuncIds {
    rdonly_cast: 0x0001_2345,
    tcp_sock: 77,
};

#[test]
fn every_marker_gets_the_kfunc_id_and_the_rest_is_untouched() {
    // `exit` with the marker's imm bytes: only a kfunc call is resolved.
    let mut other = CALL_MARKER;
    other[..4].copy_from_slice(&[0x95, 0, 0, 0]);
    let bytes = object(16, &[CALL_MARKER, other, CALL_MARKER]);
    let (resolved, calls) = resolve(&bytes, Some(IDS));
    assert_eq!(calls, 2);
    let out = resolved.bytes();
    assert_eq!(out.len(), bytes.len());
    assert_eq!(&out[..16], &bytes[..16]);
    assert_eq!(&out[16..24], &[0x85, 0x20, 0, 0, 0x45, 0x23, 0x01, 0x00]);
    assert_eq!(&out[24..32], &other);
    assert_eq!(&out[32..40], &[0x85, 0x20, 0, 0, 0x45, 0x23, 0x01, 0x00]);
}

#[test]
fn without_the_kfunc_the_calls_become_r0_zero() {
    let bytes = object(8, &[CALL_MARKER]);
    let (resolved, calls) = resolve(&bytes, None);
    assert_eq!(calls, 1);
    assert_eq!(&resolved.bytes()[8..], &CLEAR_R0);
}

#[test]
fn a_marker_across_an_instruction_boundary_is_not_an_instruction() {
    let bytes = object(4, &[CALL_MARKER, [0; 8]]);
    let (resolved, calls) = resolve(&bytes, Some(IDS));
    assert_eq!(calls, 0);
    assert_eq!(resolved.bytes(), &bytes[..]);
}

#[test]
fn the_embedded_object_has_one_call_in_each_program_that_casts() {
    // The programs' assembly builds the call from the same marker constant: if it changed
    // shape (another opcode, register byte or alignment) the call would stay unresolved and the
    // kernel would refuse the program.
    // `iter_task_file` and `walk_slots`.
    let (_, calls) = resolve(crate::bpf::embedded_object(), Some(IDS));
    assert_eq!(calls, 2);
}
