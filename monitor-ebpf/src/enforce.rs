//! `sock_ops` program `sock_ops_enforce`: gives new connections the keepalive timers and user
//! timeout of the first `[[enforce]]` policy that matches them (`ENFORCE_POLICIES`, config
//! order), when the connection is established (`BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB`,
//! `BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`), with `bpf_setsockopt` — the change `setsockopt(2)`
//! makes, so an application's own later `setsockopt` wins. Records what it applied in
//! `ENFORCED` (by cookie) and asks for the socket's state changes to delete the record at close.
//!
//! Attached to the root of the cgroup v2 hierarchy: it runs for every connection of the host,
//! once at establishment (and at state changes of the sockets it enforced), never per packet.
//! The socket's cgroup is read from the socket, not from `current`: for a passive open the
//! program runs in softirq, where `current` is whatever task was interrupted.
#![expect(
    clippy::needless_pass_by_value,
    reason = "the `#[sock_ops]` macro hands the entry point its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_F_NO_PREALLOC, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
    },
    helpers::{bpf_get_socket_cookie, bpf_probe_read_kernel, bpf_setsockopt},
    macros::{map, sock_ops},
    maps::{Array, HashMap},
    programs::SockOpsContext,
};
use monitor_common::{
    enforce::{
        ENFORCE_SLOTS, ENFORCED_CAPACITY, EnforceOffsets, EnforceSlot, EnforcedSocket, SLOT_ACTIVE,
        SLOT_DEFERRED,
    },
    sockopt::{SET_KEEPALIVE, SockoptValues},
    tcp_state,
};

use crate::{
    socket,
    sockopt::{OPTIONS, errno, explicit_options, value_of},
};

/// The policies in config order; the agent fills them before attaching the program.
#[map(name = "ENFORCE_POLICIES")]
static ENFORCE_POLICIES: Array<EnforceSlot> = Array::with_max_entries(ENFORCE_SLOTS, 0);

/// What was applied, by socket cookie; deleted by this program when the socket closes.
/// Not preallocated: the object is loaded with every agent, `[[enforce]]` or not, and a
/// preallocated map of this capacity would hold megabytes of kernel memory for nothing.
#[map(name = "ENFORCED")]
static ENFORCED: HashMap<u64, EnforcedSocket> =
    HashMap::with_max_entries(ENFORCED_CAPACITY, BPF_F_NO_PREALLOC);

/// Filled in by the agent before load (from the kernel's BTF).
#[unsafe(no_mangle)]
static ENFORCE_OFFSETS: EnforceOffsets = EnforceOffsets {
    sk_cgroup: 0,
    cgroup_level: 0,
    cgroup_ancestors: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    reserved: 0,
};

#[inline(always)]
fn offsets() -> &'static EnforceOffsets {
    // As `socket::offsets`: hide the zeros from the compiler; the verifier sees constants.
    unsafe { &*core::ptr::read_volatile(&core::ptr::addr_of!(ENFORCE_OFFSETS)) }
}

#[sock_ops]
fn sock_ops_enforce(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB | BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => {
            established(&ctx);
        }
        // args[1] is the new state; the record goes with the socket.
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == u32::from(tcp_state::CLOSE) => {
            let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
            let _ = ENFORCED.remove(cookie);
        }
        _ => {}
    }
    1
}

/// The socket's cgroup as (`struct cgroup` address, level); None when it cannot be read.
#[inline(always)]
fn socket_cgroup(sk: *const c_void, off: &EnforceOffsets) -> Option<(u64, u32)> {
    // SAFETY: probe reads of kernel memory; a bad address fails, it does not fault.
    let field = sk as u64 + u64::from(off.sk_cgroup);
    let cgroup: u64 = unsafe { bpf_probe_read_kernel(field as *const u64).ok()? };
    if cgroup == 0 {
        return None;
    }
    let level: i32 = unsafe {
        bpf_probe_read_kernel((cgroup + u64::from(off.cgroup_level)) as *const i32).ok()?
    };
    Some((cgroup, u32::try_from(level).ok()?))
}

/// Whether the cgroup at `cgroup` (of depth `level`) is `slot`'s cgroup or one of its
/// descendants: its ancestor at the slot's depth has the slot's id.
#[inline(always)]
fn in_cgroup(cgroup: u64, level: u32, slot: &EnforceSlot, off: &EnforceOffsets) -> bool {
    if level < slot.cgroup_level || slot.cgroup_level > 1024 {
        return false;
    }
    let at = cgroup + u64::from(off.cgroup_ancestors) + 8 * u64::from(slot.cgroup_level);
    // SAFETY: as in `socket_cgroup`.
    let Ok(ancestor) = (unsafe { bpf_probe_read_kernel(at as *const u64) }) else {
        return false;
    };
    let Ok(kn) =
        (unsafe { bpf_probe_read_kernel((ancestor + u64::from(off.cgroup_kn)) as *const u64) })
    else {
        return false;
    };
    let id = unsafe { bpf_probe_read_kernel((kn + u64::from(off.kernfs_node_id)) as *const u64) };
    id == Ok(slot.cgroup_id)
}

#[inline(always)]
fn established(ctx: &SockOpsContext) {
    // SAFETY: the context's `sk` field; the verifier checks the access.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    let Some(tp) = socket::tcp_sock(sk.cast::<c_void>()) else {
        return;
    };
    let local_port = ctx.local_port();
    // Network order in the context (`bpf_sock_ops.remote_port`).
    let remote_port = u32::from_be(ctx.remote_port());
    let off = offsets();
    let cgroup = socket_cgroup(tp, off);
    for i in 0..ENFORCE_SLOTS {
        let Some(slot) = ENFORCE_POLICIES.get(i) else {
            return;
        };
        if slot.flags & SLOT_ACTIVE == 0 {
            return;
        }
        if (slot.local_port != 0 && slot.local_port != local_port)
            || (slot.remote_port != 0 && slot.remote_port != remote_port)
        {
            continue;
        }
        if slot.cgroup_id != 0 {
            match cgroup {
                Some((cgroup, level)) if in_cgroup(cgroup, level, slot, off) => {}
                _ => continue,
            }
        }
        if slot.flags & SLOT_DEFERRED != 0 {
            // The process decides: the agent's scan applies this policy or a later one.
            return;
        }
        apply(ctx, tp, slot, i);
        return;
    }
}

/// Applies `slot` (policy `index`) to the socket and records it.
#[inline(always)]
fn apply(ctx: &SockOpsContext, tp: *const c_void, slot: &EnforceSlot, index: u32) {
    let explicit = explicit_options(tp, tp, socket::offsets());
    let mut want: SockoptValues = slot.want;
    let mut applied = 0u32;
    let mut error = 0i32;
    for (bit, level, name) in OPTIONS {
        if slot.set & bit == 0 {
            continue;
        }
        // `fill`: only where the application left the default; keepalive is only switched on.
        if slot.fill & bit != 0
            && (explicit & bit != 0 || (bit == SET_KEEPALIVE && want.keepalive == 0))
        {
            continue;
        }
        let mut value = *value_of(&mut want, bit);
        // SAFETY: `ctx` is the program's context; the kernel copies the 4 bytes.
        let ret = unsafe {
            bpf_setsockopt(
                ctx.as_ptr(),
                level,
                name,
                (&raw mut value).cast::<c_void>(),
                4,
            )
        };
        if ret == 0 {
            applied |= bit;
        } else if error == 0 {
            error = errno(ret);
        }
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let record = EnforcedSocket {
        slot: index,
        applied,
        error,
        reserved: 0,
    };
    // A full map costs the record only (`/connections` then names no policy), not the options.
    if ENFORCED.insert(cookie, record, 0).is_ok() {
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG).cast_signed());
    }
}
