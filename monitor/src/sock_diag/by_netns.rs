//! The per-namespace netlink sockets of [`SocketQueries`](super::SocketQueries), each with when
//! it was last used. A socket holds its network namespace alive: a deleted pod's namespace is
//! not freed while the agent keeps a socket opened in it, so the owners close the sockets they
//! have not used for a while ([`ByNetns::close_unused_since`]).

use std::{
    collections::{HashMap, hash_map::Entry},
    time::Instant,
};

/// `T` (a socket) per network namespace inode, with the instant of its last use.
#[derive(Debug)]
pub(super) struct ByNetns<T> {
    open: HashMap<u32, (T, Instant)>,
}

impl<T> Default for ByNetns<T> {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
        }
    }
}

impl<T> ByNetns<T> {
    /// Namespace `netns`'s `T`, opened with `open` when there is none; marked used at `now`.
    ///
    /// # Errors
    /// `open`'s error; nothing is kept then.
    pub(super) fn get_or_open<E>(
        &mut self,
        netns: u32,
        now: Instant,
        open: impl FnOnce() -> Result<T, E>,
    ) -> Result<&T, E> {
        let (value, used) = match self.open.entry(netns) {
            Entry::Occupied(kept) => kept.into_mut(),
            Entry::Vacant(slot) => slot.insert((open()?, now)),
        };
        *used = now;
        Ok(value)
    }

    /// Drops namespace `netns`'s `T`, if any.
    pub(super) fn forget(&mut self, netns: u32) {
        self.open.remove(&netns);
    }

    /// Drops every `T` last used before `cutoff`; returns how many.
    pub(super) fn close_unused_since(&mut self, cutoff: Instant) -> usize {
        let before = self.open.len();
        self.open.retain(|_, (_, used)| *used >= cutoff);
        before - self.open.len()
    }

    /// How many are open.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests;
