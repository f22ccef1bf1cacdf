//! Signals from the peer and from the TCP stack: inbound segments (`tcp_probe`, which fires for
//! every segment an ESTABLISHED socket receives, pure ACKs and keepalive answers too: "the peer is
//! alive"), retransmits, resets, socket errors, and socket destruction.
#![expect(
    clippy::needless_pass_by_value,
    reason = "the `#[btf_tracepoint]` macro hands each entry point its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::counters;

use crate::{maps, socket};

// TP_PROTO(struct sock *sk, const struct sk_buff *skb)
#[btf_tracepoint(function = "tcp_probe")]
fn tcp_probe(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let cookie = socket::cookie(sk);
    if let Some(entry) = maps::entry(cookie) {
        entry.last_peer_ns = unsafe { bpf_ktime_get_ns() };
        if let Some(tp) = socket::tcp_sock(sk) {
            let off = socket::offsets();
            let skb: *const c_void = ctx.arg(1);
            let acked: u32 = socket::read(skb, off.skb_ack_seq);
            socket::read_transport(tp, off, entry, Some(acked));
        }
    }
    0
}

// TP_PROTO(const struct sock *sk, const struct sk_buff *skb, int err)
#[btf_tracepoint(function = "tcp_retransmit_skb")]
fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    maps::count(counters::RETRANSMITS);
    let cookie = socket::cookie(sk);
    if let Some(entry) = maps::entry(cookie) {
        // Retransmits of one socket run under its lock, so the increment does not race.
        entry.retransmits += 1;
        // The peer is silent, so tcp_probe no longer refreshes the in-flight bytes: do it here.
        if let Some(tp) = socket::tcp_sock(sk) {
            socket::read_transport(tp, socket::offsets(), entry, None);
        }
    }
    0
}

// TP_PROTO(struct sock *sk)
#[btf_tracepoint(function = "tcp_receive_reset")]
fn tcp_receive_reset(_ctx: BtfTracePointContext) -> i32 {
    maps::count(counters::RESETS_RECEIVED);
    0
}

// TP_PROTO(const struct sock *sk, const struct sk_buff *skb, const enum sk_rst_reason reason)
// sk may be NULL (a reset for a segment that matched no socket): only the count is kept.
#[btf_tracepoint(function = "tcp_send_reset")]
fn tcp_send_reset(_ctx: BtfTracePointContext) -> i32 {
    maps::count(counters::RESETS_SENT);
    0
}

// TP_PROTO(const struct sock *sk)
#[btf_tracepoint(function = "inet_sk_error_report")]
fn inet_sk_error_report(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let off = socket::offsets();
    if socket::is_tcp(sk, off) {
        let err: i32 = socket::read(sk, off.sk_err);
        // The report also fires for soft errors and cleared ones, with sk_err 0: not an error.
        if err != 0 {
            maps::count_error(err.unsigned_abs());
        }
    }
    0
}

// TP_PROTO(struct sock *sk)
#[btf_tracepoint(function = "tcp_destroy_sock")]
fn tcp_destroy_sock(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    // Normally gone already (CLOSE transition); this catches sockets destroyed without one.
    maps::remove_destroyed(socket::cookie(sk));
    0
}
