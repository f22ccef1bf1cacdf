//! `[forensics] stacks`: the user-space call stack that opened each suspect connection, in
//! `/connections` (`stack`) and `check --stack`.
//!
//! The kernel programs record a stack id per connection (`crate::bpf::stacks`); this feature
//! follows the scans: after each one it symbolizes the stacks of that scan's suspects (on the
//! scan thread, which may read other processes' mappings), while their processes live, caches
//! them per (pid, stack), and shows them on those connections until the next scan. It also
//! prunes the kernel's entries of connections that are gone.

mod proc_maps;
mod symbolize;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use monitor_common::stacks::StackOrigin;

use self::proc_maps::Mappings;
use crate::{
    bpf::stacks::StackTables,
    model::{CallStack, Connection},
    scan::{Annotator, Feature, ScanPass},
    verdict::Policy,
};

/// How often the kernel maps are swept for entries of connections that are gone: the programs
/// delete a connection's entry as it closes, so a sweep only finds what a lost event (or an
/// accepted descriptor closed before a pass joined it) left behind, and it walks every entry
/// through the map syscalls.
const PRUNE_EVERY: Duration = Duration::from_mins(1);

/// A symbolized stack is the same for every connection of one process opened from the same
/// stack and caller: (tgid, stack id, the caller put back from the stack words or 0).
type StackKey = (u32, u32, u64);

/// The feature: the kernel's stack maps, the stacks shown, and the symbolized ones.
pub struct Stacks {
    tables: Mutex<StackTables>,
    /// The last scan's suspects' stacks, by cookie: what every pass writes into connections.
    shown: RwLock<Arc<HashMap<u64, Arc<CallStack>>>>,
    /// Symbolized stacks; entries of processes that are gone are dropped at each sweep.
    symbolized: Mutex<HashMap<StackKey, Arc<CallStack>>>,
    /// When the kernel maps were last swept ([`PRUNE_EVERY`]).
    pruned: Mutex<Instant>,
}

impl Stacks {
    /// The feature over the stack maps of the loaded programs
    /// ([`Programs::stacks`](crate::bpf::Programs::stacks)).
    #[must_use]
    pub fn new(tables: StackTables) -> Self {
        Self {
            tables: Mutex::new(tables),
            shown: RwLock::default(),
            symbolized: Mutex::default(),
            pruned: Mutex::new(Instant::now()),
        }
    }

    /// The symbolized stack recorded for `cookie`; None when none was recorded or the process
    /// has gone (its mappings cannot be read any more).
    /// `maps` keeps each process's mappings for the rest of the scan (one read per process).
    fn resolve(
        &self,
        cookie: u64,
        tables: &StackTables,
        maps: &mut HashMap<u32, Mappings>,
    ) -> Option<Arc<CallStack>> {
        let origin = tables.origin(cookie)?;
        let maps = maps
            .entry(origin.tgid)
            .or_insert_with(|| Mappings::of(origin.tgid));
        let addresses = tables.addresses(origin.stack_id)?;
        let addresses = symbolize::with_skipped_caller(&addresses, &origin.near_sp, maps);
        let caller = caller_of(&addresses, &origin);
        let key = (origin.tgid, origin.stack_id, caller);
        let mut symbolized = crate::locks::lock(&self.symbolized);
        if let Some(stack) = symbolized.get(&key) {
            return Some(Arc::clone(stack));
        }
        if *maps == Mappings::default() {
            return None;
        }
        let stack = Arc::new(symbolize::symbolize(origin.tgid, &addresses, maps));
        symbolized.insert(key, Arc::clone(&stack));
        Some(stack)
    }
}

/// The address [`symbolize::with_skipped_caller`] put back (0 when none): part of the key,
/// as one stack id can come from wrappers called by different functions.
fn caller_of(addresses: &[u64], origin: &StackOrigin) -> u64 {
    addresses
        .get(1)
        .copied()
        .filter(|a| origin.near_sp.contains(a))
        .unwrap_or(0)
}

impl Feature for Stacks {
    fn start_scan(&self) -> Option<Box<dyn ScanPass + '_>> {
        Some(Box::new(StackScan {
            stacks: self,
            // Every live cookie, only for the scans that end in a sweep.
            live: (crate::locks::lock(&self.pruned).elapsed() >= PRUNE_EVERY).then(HashSet::new),
            suspects: Vec::new(),
        }))
    }

    fn annotator(&self) -> Option<Box<dyn Annotator + '_>> {
        Some(Box::new(Shown(Arc::clone(&crate::locks::read(
            &self.shown,
        )))))
    }
}

/// One pass's view: the stacks of the last scan's suspects.
struct Shown(Arc<HashMap<u64, Arc<CallStack>>>);

impl Annotator for Shown {
    fn annotate(&self, c: &mut Connection, _now_ns: u64, _policy: &Policy) {
        c.stack = self.0.get(&c.cookie).cloned();
    }
}

/// One scan: every live cookie (when it ends in a sweep) and the suspects.
struct StackScan<'a> {
    stacks: &'a Stacks,
    live: Option<HashSet<u64>>,
    suspects: Vec<u64>,
}

impl ScanPass for StackScan<'_> {
    fn observe(&mut self, c: &Connection, _policy: &Policy) {
        if let Some(live) = &mut self.live {
            live.insert(c.cookie);
        }
        if !c.suspect.is_empty() {
            self.suspects.push(c.cookie);
        }
    }

    fn finish(self: Box<Self>) {
        let stacks = self.stacks;
        let mut tables = crate::locks::lock(&stacks.tables);
        // A suspect the last scan showed keeps its stack: no new read of its mappings.
        let before = Arc::clone(&crate::locks::read(&stacks.shown));
        let mut maps = HashMap::new();
        let shown: HashMap<u64, Arc<CallStack>> = self
            .suspects
            .iter()
            .filter_map(|&cookie| {
                let known = before.get(&cookie).cloned();
                let stack = known.or_else(|| stacks.resolve(cookie, &tables, &mut maps))?;
                Some((cookie, stack))
            })
            .collect();
        *crate::locks::write(&stacks.shown) = Arc::new(shown);
        let Some(live) = self.live else {
            return;
        };
        *crate::locks::lock(&stacks.pruned) = Instant::now();
        let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        let removed = tables.prune(&live, alive);
        drop(tables);
        crate::locks::lock(&stacks.symbolized).retain(|&(pid, _, _), _| alive(pid));
        if removed > 0 {
            tracing::debug!(removed, "stack entries of closed connections removed");
        }
    }
}
