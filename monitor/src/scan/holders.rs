//! Every held socket's kernel state and holders, from one pass of the `iter/task_file` program
//! over every process's descriptors (all network namespaces at once, at each scan that is due:
//! [`HeldPacer`]), and how a connection's `pid`, `comm` and `holders` follow from it (owners are
//! the holders). What the socket's own values change in a connection is [`super::held_state`].
//!
//! Where the kernel has the slot walk ([`SlotWalker`]), walks between those passes refresh the
//! values of every tracked socket (orphans and the accept queue included) and leave the holders
//! as the last descriptor pass found them ([`HeldSockets::refresh`]), so the descriptor pass,
//! four times as costly a socket, can come less often.
//!
//! The owner of a socket several processes hold is the lowest pid among them: deterministic, and
//! stable while the holder set is (a process that joins by `fork` or descriptor passing has a
//! higher pid than its parent, in practice); it changes only when the lowest holder lets go.

use std::time::{Duration, Instant};

use monitor_common::{
    holders::{HS_DEAD, HeldSocket, NO_SLOT},
    tcp_state,
};

use self::{
    slot::{HS_EXTRAS, HeldExtras, HeldSlot},
    slot_finder::SlotFinder,
};
use super::{kernel_state::FastMap, processes::ProcessCache};
use crate::{
    bpf::{BpfError, SocketSource, task_file::TaskFileReader, walk::SlotWalker},
    clock,
    model::{Connection, Holder, Holders},
};

/// Every held socket the passes saw, by its slot in the socket table, so a scan finds each
/// socket's values in table order without a lookup. Passes refill it in place
/// ([`refill`](Self::refill)): a socket no descriptor refers to any more keeps its last
/// values, dated by the pass that read them, and counts as unseen.
#[derive(Clone, Debug, Default)]
pub struct HeldSockets {
    /// Indexed by table slot ([`HeldSocket::slot`]); grown to the highest slot seen.
    slots: Vec<HeldSlot>,
    /// The extras of the slots whose flags have [`HS_EXTRAS`], by slot.
    extras: FastMap<u32, HeldExtras>,
    /// The sockets held by more than one process, by slot: every holder, ascending and
    /// distinct.
    shared: FastMap<u32, Vec<u32>>,
    /// `CLOCK_MONOTONIC` (ns) when the pass being filled (or the last one) began.
    began_ns: u64,
    /// When the last complete descriptor pass began: entries read since (by it or by a walk
    /// after it) are current. A pass that failed half-way leaves it at the pass before, so the
    /// sockets it did not reach keep the values and holders of that one.
    current_from_ns: u64,
    /// When the last complete walk began (None before the first, or without the walk): an
    /// entry read since is current too (an orphan, which no descriptor pass sees).
    walked_from_ns: Option<u64>,
    /// Each record's slot, from the table as a pass begins; looked up again as it ends for
    /// the records it did not place ([`unplaced`](Self::unplaced)).
    slots_of: SlotFinder,
    /// This pass's records of sockets with a cookie, not `CLOSE`, and not in the table as the
    /// pass began: most were added to the table during the pass (a table pass at 100k sockets
    /// takes a few hundred milliseconds); the rest the table missed.
    unplaced: Vec<HeldSocket>,
}

/// [`HeldSocket::flags`] bit the agent sets (the program never does): more than one process
/// holds the socket, its holders are in [`HeldSockets::shared`].
const HS_SHARED: u8 = 1 << 7;

/// One socket of a pass: its values, when the pass read them, and by when its peer was last
/// heard from where no kernel time says so.
#[derive(Clone, Copy, Debug)]
pub struct HeldView {
    /// The record as the pass read it, but for what the agent does not keep (see
    /// `slot::HeldSlot::record`: sequence numbers rebased, unused fields 0).
    pub sample: HeldSocket,
    /// `CLOCK_MONOTONIC` ns when the pass began.
    pub read_ns: u64,
    /// `CLOCK_MONOTONIC` ns; see [`HeldSockets::refill`].
    pub heard_ns: Option<u64>,
}

/// What one pass read and what it cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeldPass {
    /// Distinct sockets the table tracks that the pass saw.
    pub sockets: usize,
    /// Descriptors of TCP sockets the table does not track (cookie 0, or not indexed).
    pub untracked: usize,
    /// Of those, the descriptors of sockets the table missed: a cookie (something asked for
    /// it: the programs' hooks did when the table had no room) and not `CLOSE` (never tracked).
    pub missed: usize,
    /// Wall time of the pass, grouping included.
    pub took: Duration,
}

impl HeldSockets {
    /// Reads every process's TCP socket descriptors once with `reader`, into the slots of the
    /// sockets the table tracks. A peer heard through a segment that changed no time the kernel
    /// keeps (`segs_in` grew since the slot's last pass while `rcv_tstamp` did not) is dated at
    /// this pass, the nearest bound there is (a silence is then never overstated); otherwise the
    /// slot keeps the date it had.
    ///
    /// Each record's slot comes from `table` (by cookie, in one sweep before the read).
    ///
    /// # Errors
    /// As [`TaskFileReader::for_each`]: the iterator could not be created or read. The sockets
    /// the pass reached have its values; the others keep the last complete pass's.
    pub fn refill(
        &mut self,
        reader: &TaskFileReader,
        table: &dyn SocketSource,
    ) -> Result<HeldPass, BpfError> {
        let started = Instant::now();
        let mut pass = HeldPass::default();
        self.slots_of.sweep(table);
        self.begin(clock::monotonic_now_ns());
        reader.for_each(|record| self.add(record, &mut pass))?;
        if !self.unplaced.is_empty() {
            self.slots_of.look_again(table);
            self.place_the_rest(&mut pass);
        }
        self.finish();
        pass.took = started.elapsed();
        Ok(pass)
    }

    /// Refreshes the values of every socket `walker` reaches (each record names its slot),
    /// keeping each one's holders from the last descriptor pass, unless the slot holds another
    /// socket now or the socket is an orphan (`HS_DEAD`): it then has none. A socket the walk
    /// does not reach (no address known yet: seeded by the agent and not yet visited by a table
    /// refresh) keeps the values of the pass that last read it.
    ///
    /// # Errors
    /// As [`SlotWalker::for_each`]: the sockets reached before have the walk's values.
    pub fn refresh(&mut self, walker: &SlotWalker) -> Result<HeldPass, BpfError> {
        let started = Instant::now();
        let mut pass = HeldPass::default();
        self.begin_walk(clock::monotonic_now_ns());
        walker.for_each(|record| self.place_values(record, &mut pass))?;
        self.walked_from_ns = Some(self.began_ns);
        pass.took = started.elapsed();
        Ok(pass)
    }

    /// A walk over these records, begun at `read_ns` (tests).
    pub fn walk_of(&mut self, records: &[HeldSocket], read_ns: u64) -> HeldPass {
        let mut pass = HeldPass::default();
        self.begin_walk(read_ns);
        for record in records {
            self.place_values(record, &mut pass);
        }
        self.walked_from_ns = Some(self.began_ns);
        pass
    }

    /// One pass over these records, begun at `read_ns`, each in the slot its `slot` field
    /// names (tests).
    pub fn pass_of(&mut self, records: &[HeldSocket], read_ns: u64) -> HeldPass {
        let mut pass = HeldPass::default();
        self.slots_of.sweep_pairs(
            records
                .iter()
                .filter(|r| r.cookie != 0 && r.slot != NO_SLOT)
                .map(|r| (r.slot, r.cookie)),
        );
        self.begin(read_ns);
        for record in records {
            self.add(record, &mut pass);
        }
        self.place_the_rest(&mut pass);
        self.finish();
        pass
    }

    /// The socket `cookie` in table slot `slot` as the last pass saw it; None when that pass
    /// saw no descriptor of it.
    #[must_use]
    pub fn view(&self, slot: u32, cookie: u64) -> Option<HeldView> {
        let held = self.current(slot, cookie)?;
        let extras = self.extras_of(slot, held);
        let heard_ns = extras.map_or(0, |e| e.heard_ns);
        Some(HeldView {
            sample: held.record(extras, slot),
            read_ns: held.read_ns,
            heard_ns: (heard_ns != 0).then_some(heard_ns),
        })
    }

    fn extras_of(&self, slot: u32, held: &HeldSlot) -> Option<&HeldExtras> {
        (held.flags & HS_EXTRAS != 0)
            .then(|| self.extras.get(&slot))
            .flatten()
    }

    /// The pids holding the socket `cookie` in table slot `slot`, ascending; None when the
    /// last pass saw no descriptor of it.
    #[must_use]
    pub fn of(&self, slot: u32, cookie: u64) -> Option<&[u32]> {
        let held = self.current(slot, cookie).filter(|held| held.tgid != 0)?;
        if held.flags & HS_SHARED != 0
            && let Some(pids) = self.shared.get(&slot)
        {
            return Some(pids);
        }
        Some(std::slice::from_ref(&held.tgid))
    }

    fn current(&self, slot: u32, cookie: u64) -> Option<&HeldSlot> {
        let held = self.slots.get(slot as usize)?;
        // Read by the last complete pass of either kind, or since (by the last walk alone
        // before the first descriptor pass completes).
        let from = match (self.walked_from_ns, self.current_from_ns) {
            (Some(walked), 0) => walked,
            (Some(walked), described) => walked.min(described),
            (None, described) => described,
        };
        (cookie != 0 && held.cookie == cookie && held.read_ns >= from).then_some(held)
    }

    fn begin(&mut self, read_ns: u64) {
        self.begin_walk(read_ns);
        self.shared.clear();
        self.unplaced.clear();
    }

    fn begin_walk(&mut self, read_ns: u64) {
        // Strictly later than the last pass, so its entries are never taken for this one's.
        self.began_ns = read_ns.max(self.began_ns + 1);
    }

    /// A walk's record: the values, with the holders the slot had when it is the same socket.
    fn place_values(&mut self, record: &HeldSocket, pass: &mut HeldPass) {
        let slot = record.slot;
        let kept = self
            .slots
            .get(slot as usize)
            .filter(|held| held.cookie == record.cookie && record.flags & HS_DEAD == 0)
            .map(|held| (held.tgid, held.flags & HS_SHARED));
        self.place(slot, record, pass);
        let held = &mut self.slots[slot as usize];
        match kept {
            Some((tgid, shared)) => {
                held.tgid = tgid;
                held.flags |= shared;
            }
            None => {
                self.shared.remove(&slot);
            }
        }
    }

    fn add(&mut self, record: &HeldSocket, pass: &mut HeldPass) {
        let Some(slot) = self.slots_of.find(record.cookie) else {
            if record.cookie != 0 && record.state != tcp_state::CLOSE {
                self.unplaced.push(*record);
            } else {
                pass.untracked += 1;
            }
            return;
        };
        self.place(slot, record, pass);
    }

    /// The records the table did not have as the pass began: in their slots if it has them
    /// now, else untracked and missed.
    fn place_the_rest(&mut self, pass: &mut HeldPass) {
        for record in std::mem::take(&mut self.unplaced) {
            if let Some(slot) = self.slots_of.find(record.cookie) {
                self.place(slot, &record, pass);
            } else {
                pass.untracked += 1;
                pass.missed += 1;
            }
        }
    }

    fn place(&mut self, slot: u32, record: &HeldSocket, pass: &mut HeldPass) {
        let index = slot as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, HeldSlot::default());
        }
        let held = &mut self.slots[index];
        let same_socket = held.cookie == record.cookie;
        if same_socket && held.read_ns == self.began_ns {
            // Another descriptor of a socket this pass already read.
            if record.tgid != held.tgid {
                held.flags |= HS_SHARED;
                self.shared
                    .entry(slot)
                    .or_insert_with(|| vec![held.tgid])
                    .push(record.tgid);
            }
            return;
        }
        let had_extras = held.flags & HS_EXTRAS != 0;
        let heard_ns = if !same_socket {
            0
        } else if record.segs_in != held.segs_in && record.rcv_tstamp == held.rcv_tstamp {
            self.began_ns
        } else if had_extras {
            self.extras.get(&slot).map_or(0, |e| e.heard_ns)
        } else {
            0
        };
        *held = HeldSlot::of(record, self.began_ns);
        held.flags &= !(HS_SHARED | HS_EXTRAS);
        let extras = HeldExtras::of(record, heard_ns);
        if extras.any() {
            held.flags |= HS_EXTRAS;
            self.extras.insert(slot, extras);
        } else if had_extras {
            self.extras.remove(&slot);
        }
        pass.sockets += 1;
    }

    /// Sorts each shared socket's holders (the lowest is the owner) and makes the pass
    /// current.
    fn finish(&mut self) {
        for pids in self.shared.values_mut() {
            pids.sort_unstable();
            pids.dedup();
        }
        self.current_from_ns = self.began_ns;
        self.slots_of.release();
        // Holders are this pass's: a socket it did not see has none now (walks keep them).
        for held in &mut self.slots {
            if held.read_ns != self.began_ns {
                held.tgid = 0;
                held.flags &= !HS_SHARED;
            }
        }
    }
}

/// Gives `c` (in table slot `slot`) its holders and, when it has any, the lowest as its owner
/// (`pid`). `index`: the last pass (None before the first, or without the program). A socket no descriptor refers to
/// has no holders when it says why (`orphan`, or `in_accept_queue`; the caller then gives it
/// its listener's owner); any other socket the pass did not see keeps the owner the hooks saw
/// and unknown holders.
pub(crate) fn attribute(
    c: &mut Connection,
    index: Option<&HeldSockets>,
    slot: u32,
    in_accept_queue: bool,
) {
    let Some(index) = index else { return };
    match index.of(slot, c.cookie) {
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

mod slot;
mod slot_finder;
#[cfg(test)]
mod tests;

/// When the next pass is due: passes take at most 1/[`HELD_READ_SHARE`] of a core (the CPU time
/// of the last pass, times the share, must have passed since it began), but one is due at the
/// latest [`HELD_READ_MAX_AGE`] after the last, and they come at most once a scan (the scan runs
/// them): every scan on a host with tens of thousands of sockets, every third scan at the
/// default 5 s interval on one with 100k connections (BENCHMARKS.md has the cost per level).
/// Scans come every interval give or take a little, so the longest wait counts as reached
/// from half an interval before it ([`with_scan_interval`](Self::with_scan_interval)): a pass
/// is then never put off to the scan after, and a value a scan judges with is never older than
/// [`HELD_READ_MAX_AGE`]. Also counts the passes for `/metrics`.
#[derive(Debug)]
pub struct HeldPacer {
    /// When the last pass began, and how long from then the next must wait.
    last: Option<(Instant, Duration)>,
    /// Half the scan interval: how early [`HELD_READ_MAX_AGE`] counts as reached.
    slack: Duration,
    /// Passes completed, and their wall time.
    pub(crate) reads: super::summary::HeldReads,
    /// When a pass last asked for a kernel read of every namespace.
    asked_read: Option<Instant>,
    /// Passes take at most 1/this of a core ([`HELD_READ_SHARE`] unless [`paced`](Self::paced)).
    share: u32,
    /// The longest wait between two passes ([`HELD_READ_MAX_AGE`] unless
    /// [`paced`](Self::paced)).
    max_age: Duration,
    /// Passes that failed in a row (the scanner's to keep: see `Scanner::walking_slots`).
    pub(crate) failures: u32,
}

/// Passes over every held socket take at most 1/this of a core (1%), unless
/// [`HELD_READ_MAX_AGE`] calls for one sooner.
pub const HELD_READ_SHARE: u32 = 100;

/// The longest wait between two passes: no held socket's values are older than this (plus the
/// pass's own duration).
pub const HELD_READ_MAX_AGE: Duration = Duration::from_secs(15);

/// Where the slot walk refreshes every socket's values ([`HeldSockets::refresh`]), descriptor
/// passes, which then only have the holders to bring, take at most 1/this of a core (0.25%)...
pub const HOLDERS_READ_SHARE: u32 = 400;

/// ...and come at least this often: at 100k connections, where a pass costs about 160 ms, about
/// once a minute; every scan up to about 5k connections (BENCHMARKS.md has the cost per level).
pub const HOLDERS_READ_MAX_AGE: Duration = Duration::from_mins(1);

/// Walks take at most 1/this of a core (0.25%), and come at least every [`HELD_READ_MAX_AGE`]:
/// every scan up to about 20k connections, every second or third above (a walk at 100k
/// connections costs about 40 ms, placement included).
pub const WALK_SHARE: u32 = 400;

impl Default for HeldPacer {
    /// Paced by [`HELD_READ_SHARE`] and [`HELD_READ_MAX_AGE`], with no slack.
    fn default() -> Self {
        Self {
            last: None,
            slack: Duration::ZERO,
            reads: super::summary::HeldReads::default(),
            asked_read: None,
            share: HELD_READ_SHARE,
            max_age: HELD_READ_MAX_AGE,
            failures: 0,
        }
    }
}

impl HeldPacer {
    /// A pacer for scans every `interval` (the agent's `scan_interval`).
    #[must_use]
    pub fn with_scan_interval(interval: Duration) -> Self {
        Self {
            slack: interval / 2,
            ..Self::default()
        }
    }

    /// The same pacer with passes at most 1/`share` of a core and at least every `max_age`.
    #[must_use]
    pub fn paced(mut self, share: u32, max_age: Duration) -> Self {
        self.pace(share, max_age);
        self
    }

    /// From now on, passes at most 1/`share` of a core and at least every `max_age` (the wait
    /// the last pass set stays as it was computed).
    pub fn pace(&mut self, share: u32, max_age: Duration) {
        (self.share, self.max_age) = (share, max_age);
    }

    /// Whether a pass is due at `now`.
    #[must_use]
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|(began, wait)| {
            let elapsed = now.duration_since(began);
            elapsed >= wait || elapsed + self.slack >= self.max_age
        })
    }

    /// Whether a pass that found sockets the table missed (see [`HeldPass::missed`]) may ask
    /// for a kernel read of every namespace now, which adds them while the table has room: at
    /// most once per [`HELD_READ_MAX_AGE`], so a table that stays full does not turn the paced
    /// read into one per scan. Counts the ask when it returns true.
    pub fn ask_for_read(&mut self, now: Instant) -> bool {
        let due = self
            .asked_read
            .is_none_or(|at| now.duration_since(at) >= HELD_READ_MAX_AGE);
        if due {
            self.asked_read = Some(now);
        }
        due
    }

    /// Runs `pass` when one is due, and records it ([`record`](Self::record)), paced by
    /// everything it cost this thread (the read and filling the slots): when it began, the CPU
    /// time it used and what it returned; None when none was due.
    pub fn run_if_due(
        &mut self,
        pass: impl FnOnce() -> Result<HeldPass, BpfError>,
    ) -> Option<(Instant, Duration, Result<HeldPass, BpfError>)> {
        let began = Instant::now();
        if !self.due(began) {
            return None;
        }
        let cpu_started = clock::thread_cpu_time();
        let result = pass();
        let cpu = clock::thread_cpu_time().saturating_sub(cpu_started);
        self.record(began, cpu, result.as_ref().ok().map(|pass| pass.took));
        Some((began, cpu, result))
    }

    /// Records a pass that began at `began` and used `cpu` of CPU time; `took`: its wall time
    /// when it completed.
    pub fn record(&mut self, began: Instant, cpu: Duration, took: Option<Duration>) {
        self.last = Some((began, cpu * self.share));
        if let Some(took) = took {
            self.reads.total += 1;
            self.reads.seconds += took.as_secs_f64();
        }
    }
}
