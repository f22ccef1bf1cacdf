//! Owners are the holders: which processes hold each tracked socket now, from one pass of the
//! `iter/task_file` program over every process's descriptors (all network namespaces at once),
//! and how a connection's `pid`, `comm` and `holders` follow from it.
//!
//! The owner of a socket several processes hold is the lowest pid among them: deterministic, and
//! stable while the holder set is (a process that joins by `fork` or descriptor passing has a
//! higher pid than its parent, in practice); it changes only when the lowest holder lets go.

use std::time::{Duration, Instant};

use monitor_common::holders::HeldSocket;

use super::{kernel_state::FastMap, processes::ProcessCache};
use crate::{
    bpf::{BpfError, task_file::TaskFileReader},
    model::{Connection, Holder, Holders},
};

/// The holders of every socket one pass saw, by socket cookie. Sockets whose cookie the kernel
/// has not made yet (cookie 0: nothing ever asked for it, so the agent does not track them) are
/// left out.
#[derive(Clone, Debug, Default)]
pub struct HolderIndex {
    /// Each socket's lowest holding pid (the owner).
    first: FastMap<u64, u32>,
    /// The sockets held by more than one process: every holder, ascending and distinct.
    shared: FastMap<u64, Vec<u32>>,
}

/// What one pass read and what it cost.
#[derive(Clone, Debug, Default)]
pub struct HolderPass {
    pub index: HolderIndex,
    /// Distinct sockets seen (with a cookie).
    pub sockets: usize,
    /// Wall time of the pass, grouping included.
    pub took: Duration,
}

impl HolderIndex {
    /// Reads every process's TCP socket descriptors once with `reader`.
    ///
    /// # Errors
    /// As [`TaskFileReader::for_each`]: the iterator could not be created or read (nothing of a
    /// partial pass is kept: a socket missing from it would lose its holders).
    pub fn read(reader: &TaskFileReader) -> Result<HolderPass, BpfError> {
        let started = Instant::now();
        let mut index = Self::default();
        reader.for_each(|record| index.add(record))?;
        index.finish();
        Ok(HolderPass {
            sockets: index.first.len(),
            index,
            took: started.elapsed(),
        })
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
pub(crate) fn attribute(c: &mut Connection, index: Option<&HolderIndex>, in_accept_queue: bool) {
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
