use monitor_common::kernel_state::{KIND_FULL, KernelSockState};

use super::*;

fn record(cookie: u64, sport: u16) -> KernelSockState {
    let mut s = KernelSockState::zeroed();
    s.cookie = cookie;
    s.sport = sport;
    s.kind = KIND_FULL;
    s
}

fn bytes_of(records: &[KernelSockState]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for r in records {
        // SAFETY: a repr(C) record without implicit padding, viewed as its bytes.
        let raw =
            unsafe { std::slice::from_raw_parts(std::ptr::from_ref(r).cast::<u8>(), RECORD_LEN) };
        bytes.extend_from_slice(raw);
    }
    bytes
}

#[test]
fn records_decode_in_order_from_unaligned_bytes() {
    let records = [record(1, 80), record(0xdead_beef, 443), record(u64::MAX, 1)];
    let mut bytes = vec![0u8]; // shift everything by one: the decoder must not need alignment
    bytes.extend(bytes_of(&records));
    let decoded = decode_all(&bytes[1..]).expect("whole records");
    assert_eq!(decoded, records);
}

#[test]
fn a_partial_record_is_an_error() {
    let mut bytes = bytes_of(&[record(1, 80)]);
    bytes.extend_from_slice(&[0; 10]);
    assert_eq!(decode_all(&bytes), Err(10));
    assert_eq!(decode_all(&[]), Ok(Vec::new()));
}

#[test]
fn kernel_hz_is_a_real_tick_rate() {
    let hz = kernel_hz().expect("CLOCK_MONOTONIC_COARSE has a resolution");
    assert!(
        [100, 250, 300, 1000].contains(&hz),
        "CONFIG_HZ is one of the kernel's choices, got {hz}"
    );
}
