//! Benchmark floor: on the same hooks as the real programs, the least a per-socket monitor can do —
//! one socket cookie, one hash lookup, one timestamp store (a delete on `tcp_destroy_sock`, like
//! the real program) — in a map of its own. `cargo xtask bench` attaches these next to the real
//! programs and reports each hook as a ratio to its floor.
//!
//! The `empty_*` programs return at once: on the rare hooks the agent attaches by default they
//! measure what the tracepoint itself costs an application, which no program there can go below.
//!
//! Compiled only with this crate's `bench` feature (`monitor`'s `bench` feature turns it on), so
//! the object the agent embeds has neither these programs nor their map. Their map has one entry
//! unless the benchmark loader sizes it (`monitor/src/bpf/bench.rs`).
#![expect(
    clippy::needless_pass_by_value,
    reason = "the `#[btf_tracepoint]` macro hands each entry point its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{
    helpers::bpf_ktime_get_ns, macros::btf_tracepoint, macros::map, maps::HashMap,
    programs::BtfTracePointContext,
};

use crate::socket;

/// cookie → last time seen. Sized by the benchmark loader (`FLOOR_MAP`).
#[map(name = "FLOOR")]
static FLOOR: HashMap<u64, u64> = HashMap::with_max_entries(1, 0);

/// The whole floor: a socket seen for the first time is inserted (so that a steady load measures
/// lookup + store, like the real hot path); afterwards it is one lookup and one store. Entries are
/// deleted at `tcp_destroy_sock`, so that under churn the map holds the live sockets, like the
/// real table (a map that only grows would make the floor slower than the programs it measures).
#[inline(always)]
fn floor(ctx: &BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let cookie = socket::cookie(sk);
    let now = unsafe { bpf_ktime_get_ns() };
    match FLOOR.get_ptr_mut(cookie) {
        Some(slot) => unsafe { *slot = now },
        None => {
            let _ = FLOOR.insert(cookie, now, 0);
        }
    }
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
fn floor_inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    floor(&ctx)
}

#[btf_tracepoint(function = "sock_send_length")]
fn floor_sock_send_length(ctx: BtfTracePointContext) -> i32 {
    floor(&ctx)
}

#[btf_tracepoint(function = "sock_recv_length")]
fn floor_sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    floor(&ctx)
}

#[btf_tracepoint(function = "tcp_probe")]
fn floor_tcp_probe(ctx: BtfTracePointContext) -> i32 {
    floor(&ctx)
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
fn floor_tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    floor(&ctx)
}

#[btf_tracepoint(function = "tcp_destroy_sock")]
fn floor_tcp_destroy_sock(ctx: BtfTracePointContext) -> i32 {
    let sk: *mut c_void = ctx.arg(0);
    let _ = FLOOR.remove(socket::cookie(sk));
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
fn empty_inet_sock_set_state(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
fn empty_tcp_retransmit_skb(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "tcp_receive_reset")]
fn empty_tcp_receive_reset(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
fn empty_tcp_send_reset(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "inet_sk_error_report")]
fn empty_inet_sk_error_report(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "tcp_destroy_sock")]
fn empty_tcp_destroy_sock(_ctx: BtfTracePointContext) -> i32 {
    0
}
