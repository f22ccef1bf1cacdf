//! Every held socket's kernel state and holders, from one pass of the `iter/task_file` program
//! over every process's descriptors (all network namespaces at once, at each scan that is due:
//! [`HeldPacer`]), and how a connection's `pid`, `comm` and `holders` follow from it (owners are
//! the holders). What the socket's own values change in a connection is [`super::held_state`].
//!
//! The owner of a socket several processes hold is the lowest pid among them: deterministic, and
//! stable while the holder set is (a process that joins by `fork` or descriptor passing has a
//! higher pid than its parent, in practice); it changes only when the lowest holder lets go.

use std::time::{Duration, Instant};

use monitor_common::holders::HeldSocket;

use super::{kernel_state::FastMap, processes::ProcessCache};
use crate::{
    bpf::{BpfError, task_file::TaskFileReader},
    clock,
    model::{Connection, Holder, Holders},
};

/// Every socket one pass saw, by socket cookie: its holders and its kernel values. Sockets whose
/// cookie the kernel has not made yet (cookie 0: nothing ever asked for it, so the agent does
/// not track them) are left out.
#[derive(Clone, Debug, Default)]
pub struct HeldSockets {
    /// Each socket's lowest holding pid (the owner).
    first: FastMap<u64, u32>,
    /// The sockets held by more than one process: every holder, ascending and distinct.
    shared: FastMap<u64, Vec<u32>>,
    /// Each socket's own values, from its first visit in the pass (the visits of one socket
    /// through several descriptors are microseconds apart).
    samples: FastMap<u64, HeldSocket>,
    /// `CLOCK_MONOTONIC` (ns) when the pass began: the samples are no older than this.
    pub read_ns: u64,
    /// By when the peer was last heard from through a segment that changed no time the kernel
    /// keeps ([`carry_from`](Self::carry_from)), by cookie, `CLOCK_MONOTONIC` ns.
    heard: FastMap<u64, u64>,
}

/// One socket of a pass: its values, when the pass read them, and by when its peer was last
/// heard from where no kernel time says so.
#[derive(Clone, Copy, Debug)]
pub struct HeldView<'a> {
    pub sample: &'a HeldSocket,
    /// `CLOCK_MONOTONIC` ns when the pass began.
    pub read_ns: u64,
    /// `CLOCK_MONOTONIC` ns; see [`HeldSockets::carry_from`].
    pub heard_ns: Option<u64>,
}

/// What one pass read and what it cost.
#[derive(Clone, Debug, Default)]
pub struct HeldPass {
    pub index: HeldSockets,
    /// Distinct sockets seen (with a cookie).
    pub sockets: usize,
    /// Wall time of the pass, grouping included.
    pub took: Duration,
}

impl HeldSockets {
    /// Reads every process's TCP socket descriptors once with `reader`.
    ///
    /// # Errors
    /// As [`TaskFileReader::for_each`]: the iterator could not be created or read (nothing of a
    /// partial pass is kept: a socket missing from it would lose its holders).
    pub fn read(reader: &TaskFileReader) -> Result<HeldPass, BpfError> {
        let started = Instant::now();
        let mut index = Self {
            read_ns: clock::monotonic_now_ns(),
            ..Self::default()
        };
        reader.for_each(|record| index.add(record))?;
        index.finish();
        Ok(HeldPass {
            sockets: index.first.len(),
            index,
            took: started.elapsed(),
        })
    }

    /// The socket `cookie` as the pass saw it; None when it saw no descriptor of it.
    #[must_use]
    pub fn view(&self, cookie: u64) -> Option<HeldView<'_>> {
        Some(HeldView {
            sample: self.samples.get(&cookie)?,
            read_ns: self.read_ns,
            heard_ns: self.heard.get(&cookie).copied(),
        })
    }

    /// Carries over from the `previous` pass what no single pass shows: a segment from the
    /// peer that the kernel records in no time it keeps (a keepalive probe is acknowledged and
    /// dropped as out of window: `segs_in` grows, `rcv_tstamp` does not). Such a socket was
    /// heard from by this pass, the nearest bound there is (a silence is then never
    /// overstated); the others keep what the previous pass recorded.
    pub fn carry_from(&mut self, previous: &HeldSockets) {
        for (cookie, now) in &self.samples {
            let Some(before) = previous.samples.get(cookie) else {
                continue;
            };
            if now.segs_in != before.segs_in && now.rcv_tstamp == before.rcv_tstamp {
                self.heard.insert(*cookie, self.read_ns);
            } else if let Some(&at) = previous.heard.get(cookie) {
                self.heard.insert(*cookie, at);
            }
        }
    }

    /// The index of these records (tests).
    #[must_use]
    pub fn of_records(records: &[HeldSocket]) -> Self {
        let mut index = Self::default();
        for record in records {
            index.add(record);
        }
        index.finish();
        index
    }

    fn add(&mut self, record: &HeldSocket) {
        if record.cookie == 0 {
            return;
        }
        let (cookie, pid) = (record.cookie, record.tgid);
        self.samples.entry(cookie).or_insert(*record);
        let first = *self.first.entry(cookie).or_insert(pid);
        if first != pid {
            self.shared
                .entry(cookie)
                .or_insert_with(|| vec![first])
                .push(pid);
        }
    }

    /// Sorts each shared socket's holders and makes the lowest the owner.
    fn finish(&mut self) {
        for (cookie, pids) in &mut self.shared {
            pids.sort_unstable();
            pids.dedup();
            self.first.insert(*cookie, pids[0]);
        }
        self.shared.retain(|_, pids| pids.len() > 1);
    }

    /// The pids holding the socket `cookie`, ascending; None when the pass saw no descriptor
    /// of it.
    #[must_use]
    pub fn of(&self, cookie: u64) -> Option<&[u32]> {
        if let Some(pids) = self.shared.get(&cookie) {
            return Some(pids);
        }
        self.first.get(&cookie).map(std::slice::from_ref)
    }
}

/// Gives `c` its holders and, when it has any, the lowest as its owner (`pid`). `index`: the
/// last pass (None before the first, or without the program). A socket no descriptor refers to
/// has no holders when it says why (`orphan`, or `in_accept_queue`; the caller then gives it
/// its listener's owner); any other socket the pass did not see keeps the owner the hooks saw
/// and unknown holders.
pub(crate) fn attribute(c: &mut Connection, index: Option<&HeldSockets>, in_accept_queue: bool) {
    let Some(index) = index else { return };
    match index.of(c.cookie) {
        Some(pids) => {
            c.pid = pids.first().copied();
            let holder = |&pid: &u32| Holder { pid, comm: None };
            c.holders = match pids {
                [one] => Holders::One(holder(one)),
                many => Holders::Many(many.iter().map(holder).collect()),
            };
        }
        None if c.orphan || in_accept_queue => c.holders = Holders::Many(Vec::new()),
        None => {}
    }
}

/// Fills in the holders' names from `/proc` (`owner`'s is already known: `comm`).
pub(crate) fn name_holders(c: &mut Connection, processes: &mut ProcessCache) {
    let (owner, comm) = (c.pid, c.comm);
    let name = |holder: &mut Holder, processes: &mut ProcessCache| {
        holder.comm = if Some(holder.pid) == owner {
            comm
        } else {
            processes.info(holder.pid).name
        };
    };
    match &mut c.holders {
        Holders::Unknown => {}
        Holders::One(holder) => name(holder, processes),
        Holders::Many(holders) => holders.iter_mut().for_each(|h| name(h, processes)),
    }
}

#[cfg(test)]
mod tests;

/// When the next pass is due: passes take at most 1/[`HELD_READ_SHARE`] of a core (the CPU time
/// of the last pass, times the share, must have passed since it began), and come at most once a
/// scan (the scan runs them): every scan on a host with a few thousand sockets, less often as
/// a pass grows (BENCHMARKS.md has the cost per level).
#[derive(Debug, Default)]
pub struct HeldPacer {
    /// When the last pass began, and how long from then the next must wait.
    last: Option<(Instant, Duration)>,
}

/// Passes over every held socket take at most 1/this of a core (1%).
pub const HELD_READ_SHARE: u32 = 100;

impl HeldPacer {
    /// Whether a pass is due at `now`.
    #[must_use]
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(began, wait)| now.duration_since(began) >= wait)
    }

    /// Records a pass that began at `began` and used `cpu` of CPU time.
    pub fn record(&mut self, began: Instant, cpu: Duration) {
        self.last = Some((began, cpu * HELD_READ_SHARE));
    }
}
