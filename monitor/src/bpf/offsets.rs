//! Kernel structure offsets for the programs, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so instead of compiling in a struct layout the agent looks
//! each field up in `/sys/kernel/btf/vmlinux` and hands the offsets to the programs as a global.

use std::path::Path;

use btf_rs::{Btf, Type};
use monitor_common::{KernelOffsets, enforce::EnforceOffsets};

use super::BpfError;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Looks up every field the programs read in the BTF file at `path` (normally [`VMLINUX_BTF`]).
///
/// # Errors
/// The file cannot be read or parsed, or a field is missing or not byte-aligned
/// ([`BpfError::BtfFile`], [`BpfError::BtfLayout`]).
pub fn from_kernel(path: &Path) -> Result<KernelOffsets, BpfError> {
    from_btf(&read_btf(path)?)
}

/// Parses the BTF file at `path` (normally [`VMLINUX_BTF`], ~6 MiB: parse it once per start).
///
/// # Errors
/// [`BpfError::BtfFile`]: the file cannot be read or parsed.
pub fn read_btf(path: &Path) -> Result<Btf, BpfError> {
    Btf::from_file(path).map_err(|source| BpfError::BtfFile {
        path: path.to_path_buf(),
        source,
    })
}

/// As [`from_kernel`], from BTF already parsed.
///
/// # Errors
/// [`BpfError::BtfLayout`]: a field is missing or not byte-aligned.
pub fn from_btf(btf: &Btf) -> Result<KernelOffsets, BpfError> {
    let sock = |path: &[&str]| field_offset(btf, "sock", path);
    let tcp = |path: &[&str]| field_offset(btf, "tcp_sock", path);
    let usec_ts = bit_offset(btf, "tcp_sock", &["tcp_usec_ts"])?;
    Ok(KernelOffsets {
        skc_daddr: sock(&["__sk_common", "skc_daddr"])?,
        skc_rcv_saddr: sock(&["__sk_common", "skc_rcv_saddr"])?,
        skc_dport: sock(&["__sk_common", "skc_dport"])?,
        skc_num: sock(&["__sk_common", "skc_num"])?,
        skc_family: sock(&["__sk_common", "skc_family"])?,
        skc_state: sock(&["__sk_common", "skc_state"])?,
        skc_net: sock(&["__sk_common", "skc_net", "net"])?,
        skc_v6_daddr: sock(&["__sk_common", "skc_v6_daddr"])?,
        skc_v6_rcv_saddr: sock(&["__sk_common", "skc_v6_rcv_saddr"])?,
        net_ns_inum: field_offset(btf, "net", &["ns", "inum"])?,
        sk_protocol: sock(&["sk_protocol"])?,
        sk_err: sock(&["sk_err"])?,
        tcp_snd_nxt: field_offset(btf, "tcp_sock", &["snd_nxt"])?,
        tcp_snd_una: field_offset(btf, "tcp_sock", &["snd_una"])?,
        tcp_srtt_us: field_offset(btf, "tcp_sock", &["srtt_us"])?,
        tcp_keepalive_time: field_offset(btf, "tcp_sock", &["keepalive_time"])?,
        tcp_keepalive_intvl: field_offset(btf, "tcp_sock", &["keepalive_intvl"])?,
        tcp_keepalive_probes: field_offset(btf, "tcp_sock", &["keepalive_probes"])?,
        icsk_user_timeout: field_offset(btf, "tcp_sock", &["inet_conn", "icsk_user_timeout"])?,
        sk_flags: sock(&["__sk_common", "skc_flags"])?,
        sock_dead_bit: enum_value(btf, "sock_flags", "SOCK_DEAD")?,
        sock_keepopen_bit: enum_value(btf, "sock_flags", "SOCK_KEEPOPEN")?,
        skb_ack_seq: field_offset(btf, "sk_buff", &["cb"])?
            + field_offset(btf, "tcp_skb_cb", &["ack_seq"])?,
        tcp_write_seq: tcp(&["write_seq"])?,
        tcp_rcv_nxt: tcp(&["rcv_nxt"])?,
        tcp_copied_seq: tcp(&["copied_seq"])?,
        tcp_snd_wnd: tcp(&["snd_wnd"])?,
        tcp_rcv_tstamp: tcp(&["rcv_tstamp"])?,
        tcp_lsndtime: tcp(&["lsndtime"])?,
        tcp_retrans_stamp: tcp(&["retrans_stamp"])?,
        tcp_packets_out: tcp(&["packets_out"])?,
        tcp_retrans_out: tcp(&["retrans_out"])?,
        tcp_total_retrans: tcp(&["total_retrans"])?,
        tcp_usec_ts_byte: usec_ts / 8,
        tcp_usec_ts_bit: usec_ts % 8,
        icsk_lrcvtime: tcp(&["inet_conn", "icsk_ack", "lrcvtime"])?,
        icsk_rto: tcp(&["inet_conn", "icsk_rto"])?,
        icsk_probes_out: tcp(&["inet_conn", "icsk_probes_out"])?,
        icsk_backoff: tcp(&["inet_conn", "icsk_backoff"])?,
        icsk_retransmits: tcp(&["inet_conn", "icsk_retransmits"])?,
        icsk_pending: tcp(&["inet_conn", "icsk_pending"])?,
        sk_ack_backlog: sock(&["sk_ack_backlog"])?,
        sk_max_ack_backlog: sock(&["sk_max_ack_backlog"])?,
        sk_socket: sock(&["sk_socket"])?,
        socket_ino: field_offset(btf, "socket_alloc", &["vfs_inode", "i_ino"])?
            - field_offset(btf, "socket_alloc", &["socket"])?,
        tw_substate: field_offset(btf, "tcp_timewait_sock", &["tw_sk", "tw_substate"])?,
        task_tgid: field_offset(btf, "task_struct", &["tgid"])?,
        socket_sk: field_offset(btf, "socket", &["sk"])?,
        socket_type: field_offset(btf, "socket", &["type"])?,
        skc_cookie: sock(&["__sk_common", "skc_cookie"])?,
        tcp_bytes_sent: tcp(&["bytes_sent"])?,
        tcp_bytes_received: tcp(&["bytes_received"])?,
        tcp_segs_in: tcp(&["segs_in"])?,
    })
}

/// The fields the `[[enforce]]` program follows from a socket to its cgroup's ancestors' ids
/// (what `bpf_sk_ancestor_cgroup_id` reads, which `sock_ops` programs may not call).
///
/// # Errors
/// As [`from_btf`]; kernels before 6.1 have `cgroup.ancestor_ids` instead of `ancestors`.
pub fn enforce_from_btf(btf: &Btf) -> Result<EnforceOffsets, BpfError> {
    Ok(EnforceOffsets {
        sk_cgroup: field_offset(btf, "sock", &["sk_cgrp_data", "cgroup"])?,
        cgroup_level: field_offset(btf, "cgroup", &["level"])?,
        cgroup_ancestors: field_offset(btf, "cgroup", &["ancestors"])?,
        cgroup_kn: field_offset(btf, "cgroup", &["kn"])?,
        kernfs_node_id: field_offset(btf, "kernfs_node", &["id"])?,
        reserved: 0,
    })
}

/// Bit offset of `path` inside `struct root`, as [`field_offset`] but bit-fields allowed
/// (`tcp_sock.tcp_usec_ts`: the programs load the byte that holds it and test the bit).
fn bit_offset(btf: &Btf, root: &str, path: &[&str]) -> Result<u32, BpfError> {
    let missing = || BpfError::BtfLayout {
        what: format!("struct {root} has no field {}", path.join(".")),
    };
    let mut current = named_struct(btf, root).ok_or_else(missing)?;
    let mut offset_bits = 0u32;
    for (i, name) in path.iter().enumerate() {
        let (bits, member_type) = find_member(btf, &current, name).ok_or_else(missing)?;
        offset_bits += bits;
        if i + 1 < path.len() {
            current = as_struct(btf, member_type).ok_or_else(missing)?;
        }
    }
    Ok(offset_bits)
}

/// Byte offset of `path` (member names, descending through nested structs) inside `struct root`.
/// Anonymous struct/union members are searched transparently, as C does.
fn field_offset(btf: &Btf, root: &str, path: &[&str]) -> Result<u32, BpfError> {
    let offset_bits = bit_offset(btf, root, path)?;
    if !offset_bits.is_multiple_of(8) {
        return Err(BpfError::BtfLayout {
            what: format!(
                "struct {root}: {} is a bit-field, not byte aligned",
                path.join(".")
            ),
        });
    }
    Ok(offset_bits / 8)
}

/// Value of `name` in `enum root`.
fn enum_value(btf: &Btf, root: &str, name: &str) -> Result<u32, BpfError> {
    btf.resolve_types_by_name(root)
        .unwrap_or_default()
        .into_iter()
        .find_map(|t| match t {
            Type::Enum(e) => e
                .members
                .iter()
                .find(|m| btf.resolve_name(*m).ok().as_deref() == Some(name))
                .map(btf_rs::EnumMember::val),
            _ => None,
        })
        .ok_or_else(|| BpfError::BtfLayout {
            what: format!("enum {root} has no value {name}"),
        })
}

fn named_struct(btf: &Btf, name: &str) -> Option<btf_rs::Struct> {
    btf.resolve_types_by_name(name)
        .ok()?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
}

/// Follows typedefs and qualifiers down to a struct or union.
fn as_struct(btf: &Btf, mut t: Type) -> Option<btf_rs::Struct> {
    for _ in 0..16 {
        t = match t {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            Type::Typedef(_) | Type::Volatile(_) | Type::Const(_) | Type::Restrict(_) => {
                let inner = t.as_btf_type()?;
                btf.resolve_chained_type(inner).ok()?
            }
            _ => return None,
        };
    }
    None
}

/// Finds `name` among the members of `s`, descending into anonymous members.
/// Returns the bit offset from the start of `s` and the member's type.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Option<(u32, Type)> {
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        let member_type = btf.resolve_chained_type(member).ok()?;
        if member_name == name {
            return Some((member.bit_offset(), member_type));
        }
        if member_name.is_empty()
            && let Some(inner) = as_struct(btf, member_type)
            && let Some((bits, t)) = find_member(btf, &inner, name)
        {
            return Some((member.bit_offset() + bits, t));
        }
    }
    None
}
