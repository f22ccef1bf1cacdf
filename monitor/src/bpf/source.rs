//! What a scan reads from the kernel, as traits: the per-socket table ([`SocketSource`]) and the
//! kernel-side counters and hook status ([`KernelStatus`]). The loaded programs implement both;
//! tests and benchmarks use fixed values ([`FixedStatus`], a vector of entries).

use std::sync::Mutex;

use monitor_common::SockActivity;

use super::{BpfError, Programs};

/// Read access to the per-socket table: the kernel maps in the agent, a vector in tests.
pub trait SocketSource: Send + Sync {
    /// Calls `f` for every entry (its slot in the table, socket cookie, activity), in slot
    /// order.
    fn for_each_socket(&self, f: &mut dyn FnMut(u32, u64, &SockActivity));

    /// Calls `f` with every entry's slot and socket cookie, in slot order: the same entries as
    /// [`for_each_socket`](Self::for_each_socket), for a caller that needs only the index
    /// (a table may then skip copying the entries).
    fn for_each_cookie(&self, f: &mut dyn FnMut(u32, u64)) {
        self.for_each_socket(&mut |slot, cookie, _| f(slot, cookie));
    }
}

/// A fixed table (tests, benchmarks): each entry's slot is its index.
impl SocketSource for Vec<(u64, SockActivity)> {
    fn for_each_socket(&self, f: &mut dyn FnMut(u32, u64, &SockActivity)) {
        for (slot, (cookie, entry)) in (0..).zip(self) {
            f(slot, *cookie, entry);
        }
    }
}

/// Kernel-side counters (the programs' per-CPU arrays), summed over CPUs. All monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// `tcp_retransmit_skb` events.
    pub retransmits: u64,
    /// `tcp_send_reset` events.
    pub resets_sent: u64,
    /// `tcp_receive_reset` events.
    pub resets_received: u64,
    /// Sockets the programs could not add to the table (full, or out of memory).
    pub table_insert_failures: u64,
    /// `(from_state, to_state, count)` of `inet_sock_set_state`, non-zero entries only.
    pub transitions: Vec<(u8, u8, u64)>,
    /// `(errno, count)` of `inet_sk_error_report`, non-zero entries only.
    pub socket_errors: Vec<(u32, u64)>,
    /// `(hook, runs the kernel skipped)` per attached hook: `bpf_prog_info.recursion_misses`,
    /// events lost because the program was entered again on the same CPU while it ran.
    pub recursion_misses: Vec<(&'static str, u64)>,
}

/// Whether one kernel hook is attached, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookStatus {
    /// Program and BTF tracepoint name (one of [`super::HOOKS`]), or `iter_tcp` for the socket
    /// state iterator.
    pub hook: &'static str,
    pub attached: bool,
    /// The kernel's or the loader's refusal, as one line.
    pub error: Option<String>,
}

/// What a scan reads from the kernel besides the table.
pub trait KernelStatus: Send + Sync {
    /// The programs' counters, summed over CPUs.
    ///
    /// # Errors
    /// A map read the kernel refused ([`BpfError::Map`]).
    fn counters(&self) -> Result<KernelCounters, BpfError>;
    /// Every hook, attached or not.
    fn hooks(&self) -> Vec<HookStatus>;
    /// Slots in the socket table (`--table-capacity`).
    fn table_capacity(&self) -> u32;
    /// Removes the table entries of `cookies` (sockets the kernel no longer has).
    fn forget(&self, cookies: &[u64]);
    /// Adds entries for sockets the table lacks (`(cookie, entry)`, as seeding does), until the
    /// table is full; a socket the programs tracked meanwhile keeps their entry. Returns how many
    /// were added. A fixed table adds none.
    fn track(&self, sockets: &[(u64, SockActivity)]) -> usize {
        let _ = sockets;
        0
    }
}

/// The loaded programs (shared with seeding, hence the lock).
impl KernelStatus for Mutex<Programs> {
    fn counters(&self) -> Result<KernelCounters, BpfError> {
        let programs = crate::locks::lock(self);
        Ok(KernelCounters {
            recursion_misses: programs.recursion_misses()?,
            ..programs.maps.counters()?
        })
    }

    fn hooks(&self) -> Vec<HookStatus> {
        let programs = crate::locks::lock(self);
        programs.hooks.clone()
    }

    fn table_capacity(&self) -> u32 {
        let programs = crate::locks::lock(self);
        programs.capacity
    }

    fn forget(&self, cookies: &[u64]) {
        let mut programs = crate::locks::lock(self);
        for &cookie in cookies {
            programs.maps.forget(cookie);
        }
    }

    fn track(&self, sockets: &[(u64, SockActivity)]) -> usize {
        let mut programs = crate::locks::lock(self);
        let mut added = 0;
        for (cookie, entry) in sockets {
            match programs.maps.seed(*cookie, entry) {
                Ok(true) => added += 1,
                Ok(false) => {}
                // Full (no free slot) or refused: the next read tries again.
                Err(_) => break,
            }
        }
        added
    }
}

/// Fixed counters and hooks (tests, benchmarks): what a scan of a vector reports.
#[derive(Clone, Debug, Default)]
pub struct FixedStatus {
    pub counters: KernelCounters,
    pub hooks: Vec<HookStatus>,
    pub capacity: u32,
}

impl KernelStatus for FixedStatus {
    fn counters(&self) -> Result<KernelCounters, BpfError> {
        Ok(self.counters.clone())
    }

    fn hooks(&self) -> Vec<HookStatus> {
        self.hooks.clone()
    }

    fn table_capacity(&self) -> u32 {
        self.capacity
    }

    /// A fixed table keeps its entries.
    fn forget(&self, _cookies: &[u64]) {}
}
