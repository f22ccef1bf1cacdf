//! Keepalive and `TCP_USER_TIMEOUT` enforcement for new connections (`[[enforce]]`):
//! the `sock_ops` program [`SOCK_OPS_ENFORCE_PROGRAM`] (`monitor-ebpf/src/enforce.rs`), attached
//! to the root of the cgroup v2 hierarchy, runs when a connection is established (active and
//! passive) and applies the first [`EnforceSlot`] of [`ENFORCE_POLICIES_MAP`] that matches it
//! (ports from the `bpf_sock_ops` context, cgroup from the socket's own cgroup, the one the
//! owning process was in when it created the socket). What it applied is recorded per socket
//! cookie in [`ENFORCED_MAP`] and removed when the socket closes.
//!
//! Why one program at the root and not one attachment per policy cgroup: `sock_ops` programs may
//! not call `bpf_sk_cgroup_id`/`bpf_sk_ancestor_cgroup_id` (`sock_ops_func_proto`; measured on
//! Linux 6.18: "program of this type cannot use helper `bpf_sk_ancestor_cgroup_id#129`"),
//! `bpf_get_current_cgroup_id` names the wrong task for passive opens (softirq), and several
//! attachments run in cgroup order, not in the config's first-match order. The program reads the
//! socket's cgroup itself instead (`sock.sk_cgrp_data.cgroup`, then `cgroup.ancestors[level]`,
//! `cgroup.kn`, `kernfs_node.id`: what `bpf_sk_ancestor_cgroup_id` reads), at offsets from the
//! kernel's BTF ([`EnforceOffsets`]).

use crate::sockopt::SockoptValues;

/// Name of the `sock_ops` program.
pub const SOCK_OPS_ENFORCE_PROGRAM: &str = "sock_ops_enforce";
/// Name of the array map of [`EnforceSlot`]s, in config order (first match wins).
pub const ENFORCE_POLICIES_MAP: &str = "ENFORCE_POLICIES";
/// Name of the hash map socket cookie (`u64`) → [`EnforcedSocket`].
pub const ENFORCED_MAP: &str = "ENFORCED";
/// Name of the global holding [`EnforceOffsets`].
pub const ENFORCE_OFFSETS_GLOBAL: &str = "ENFORCE_OFFSETS";
/// The most `[[enforce]]` policies (the program walks them all for each new connection).
pub const ENFORCE_SLOTS: u32 = 32;
/// The most sockets recorded as enforced at once; beyond it a socket still gets its options but
/// `/connections` does not name its policy.
pub const ENFORCED_CAPACITY: u32 = 262_144;

/// [`EnforceSlot::flags`]: the slot holds a policy (the walk stops at the first slot without).
pub const SLOT_ACTIVE: u32 = 1 << 0;
/// [`EnforceSlot::flags`]: the policy also matches on the process name, which is not known at
/// handshake time: a connection that matches everything else is left to the agent, which
/// applies the policy (or a later one) once its scan knows the owner.
pub const SLOT_DEFERRED: u32 = 1 << 1;

/// One `[[enforce]]` policy as the kernel program matches and applies it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceSlot {
    /// [`SLOT_ACTIVE`], [`SLOT_DEFERRED`].
    pub flags: u32,
    /// Local port (host order), 0 = any.
    pub local_port: u32,
    /// Remote port (host order), 0 = any.
    pub remote_port: u32,
    /// Depth of `cgroup_id` in the hierarchy (the root is 0, `/a` is 1, `/a/b` is 2).
    pub cgroup_level: u32,
    /// cgroup v2 id (the directory's inode number) the socket's cgroup must be or descend from;
    /// 0 = any.
    pub cgroup_id: u64,
    /// `SET_*` bits of `monitor_common::sockopt`: the options to apply.
    pub set: u32,
    /// `SET_*` bits to apply only where the socket has the default (`mode = "fill"`).
    pub fill: u32,
    /// The values.
    pub want: SockoptValues,
    /// Zero: keeps the size a multiple of 8 with no implicit padding.
    pub reserved: u32,
}

/// What the program did to one socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforcedSocket {
    /// Index of the policy in [`ENFORCE_POLICIES_MAP`] (config order).
    pub slot: u32,
    /// `SET_*` bits actually applied (`bpf_setsockopt` returned 0).
    pub applied: u32,
    /// The first negative errno of `bpf_setsockopt`, 0 when all succeeded.
    pub error: i32,
    /// Zero: keeps the size a multiple of 8 with no implicit padding.
    pub reserved: u32,
}

/// Offsets of the kernel fields the program follows to a socket's cgroup, from the kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceOffsets {
    /// `sock` → `sk_cgrp_data.cgroup` (`struct cgroup *`).
    pub sk_cgroup: u32,
    /// `cgroup` → `level` (int).
    pub cgroup_level: u32,
    /// `cgroup` → `ancestors` (`struct cgroup *[]`, indexed by level).
    pub cgroup_ancestors: u32,
    /// `cgroup` → `kn` (`struct kernfs_node *`).
    pub cgroup_kn: u32,
    /// `kernfs_node` → `id` (u64: the cgroup id, the directory's inode number).
    pub kernfs_node_id: u32,
    /// Zero: keeps the size a multiple of 8 with no implicit padding.
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<EnforceSlot>() == 56);
const _: () = assert!(core::mem::size_of::<EnforcedSocket>() == 16);
const _: () = assert!(core::mem::size_of::<EnforceOffsets>() == 24);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers only, no implicit padding (sizes asserted above).
    unsafe impl aya::Pod for super::EnforceSlot {}
    unsafe impl aya::Pod for super::EnforcedSocket {}
    unsafe impl aya::Pod for super::EnforceOffsets {}
}
