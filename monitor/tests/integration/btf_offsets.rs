//! The kernel structure offsets the agent hands its programs, computed from this machine's
//! kernel BTF. Needs the BTF (not root); without it the test skips, except under CI=true.

use std::path::Path;

use harness::privilege::{self, KERNEL_BTF, Need};
use monitor::bpf::offsets::{VMLINUX_BTF, from_kernel};

/// The layout of `struct sock_common` has been stable for years (`skc_daddr` first, ports at 12/14,
/// family at 16), which makes it a usable oracle.
#[test]
fn finds_sock_common_fields_in_kernel_btf() {
    if !privilege::may_run("finds_sock_common_fields_in_kernel_btf", Need::KernelBtf) {
        return;
    }
    assert_eq!(
        VMLINUX_BTF, KERNEL_BTF,
        "the agent reads the BTF the gate checks"
    );
    let off = from_kernel(Path::new(VMLINUX_BTF)).expect("offsets");
    assert_eq!(off.skc_daddr, 0);
    assert_eq!(off.skc_rcv_saddr, 4);
    assert_eq!(off.skc_dport, 12);
    assert_eq!(off.skc_num, 14);
    assert_eq!(off.skc_family, 16);
    assert_eq!(off.skc_state, 18);
    assert!(off.skc_v6_daddr > off.skc_net);
    assert!(off.sk_protocol > off.skc_v6_rcv_saddr);
    assert_ne!(off.tcp_snd_nxt, off.tcp_snd_una);
    assert!(off.net_ns_inum > 0);
    // Stable for decades in include/net/sock.h.
    assert_eq!((off.sock_dead_bit, off.sock_keepopen_bit), (0, 3));
    assert!(off.icsk_user_timeout > 0 && off.tcp_keepalive_time > off.icsk_user_timeout);
    // `struct socket` starts with state, type, flags, then (after a pointer) `sk`: never first.
    assert!(off.socket_sk > off.socket_type);
    assert_eq!(off.socket_type, 4, "after `socket_state state`");
    assert!(off.task_tgid > 0);
    assert!(off.skc_cookie > off.skc_state && off.skc_cookie < off.sk_protocol);
}
