//! Which table slot each record of a pass over the held sockets belongs to. The program leaves
//! that to the agent (a lookup in the kernel's socket index costs a visit two cache misses);
//! here most records cost a comparison: a pass visits the descriptors in the same order as the
//! last one (processes by pid, descriptors by number), so the next record is predicted by where
//! the last pass found the same socket. Only a record the order does not predict (a socket
//! opened or moved since) is looked up by cookie. Pure: the table comes in through
//! [`SocketSource::for_each_cookie`].

use super::super::kernel_state::FastMap;
use crate::bpf::SocketSource;

/// How far ahead of the expected record the last pass's order is searched: sockets closed since
/// are skipped over this way without a lookup.
const LOOKAHEAD: usize = 8;

/// Finds records' slots for one pass at a time ([`sweep`](Self::sweep), then
/// [`find`](Self::find) per record in visit order).
#[derive(Clone, Debug, Default)]
pub(super) struct SlotFinder {
    /// The table's cookie in each slot (0: free), swept as the pass began.
    cookie_at: Vec<u64>,
    /// Cookie → slot, built from `cookie_at` the first time a pass needs a lookup, and
    /// dropped when the pass ends (megabytes at 100k sockets, needed only on a host whose
    /// sockets changed since the last pass).
    by_cookie: FastMap<u64, u32>,
    /// Whether `by_cookie` is this pass's.
    by_cookie_built: bool,
    /// The slots the last pass found, in visit order.
    last_order: Vec<u32>,
    /// The slots this pass found so far, in visit order.
    order: Vec<u32>,
    /// Where in `last_order` the next record is expected.
    cursor: usize,
}

impl SlotFinder {
    /// Starts a pass: takes every tracked socket's slot from `table`.
    pub(super) fn sweep(&mut self, table: &dyn SocketSource) {
        self.look_again(table);
        self.follow_the_last_order();
    }

    /// Starts a pass over a table that holds exactly these `(slot, cookie)` pairs (tests).
    pub(super) fn sweep_pairs(&mut self, pairs: impl IntoIterator<Item = (u32, u64)>) {
        self.finish();
        self.cookie_at.clear();
        for (slot, cookie) in pairs {
            self.set(slot, cookie);
        }
        self.follow_the_last_order();
    }

    /// Takes the table's slots again, for the records [`find`](Self::find) did not place:
    /// the order followed so far stays.
    pub(super) fn look_again(&mut self, table: &dyn SocketSource) {
        self.finish();
        self.cookie_at.clear();
        table.for_each_cookie(&mut |slot, cookie| self.set(slot, cookie));
    }

    /// The slot of the socket `cookie` (the next record of the pass); None when the table did
    /// not track it as the pass began, or the cookie is 0.
    pub(super) fn find(&mut self, cookie: u64) -> Option<u32> {
        if cookie == 0 {
            return None;
        }
        let slot = self.predicted(cookie).or_else(|| self.looked_up(cookie))?;
        self.order.push(slot);
        Some(slot)
    }

    fn set(&mut self, slot: u32, cookie: u64) {
        let index = slot as usize;
        if index >= self.cookie_at.len() {
            self.cookie_at.resize(index + 1, 0);
        }
        self.cookie_at[index] = cookie;
    }

    /// Ends the pass: frees the lookup table, if one was built.
    pub(super) fn finish(&mut self) {
        self.by_cookie = FastMap::default();
        self.by_cookie_built = false;
    }

    /// Ends the pass and frees what only a pass needs: the lookup table, the table's cookies
    /// as the pass began, and the last pass's order (this pass's is kept for the next). Between
    /// passes (a minute apart at 100k connections) that is 2.4 MB less at 200k sockets.
    pub(super) fn release(&mut self) {
        self.finish();
        self.cookie_at = Vec::new();
        self.last_order = Vec::new();
    }

    /// Makes the order the pass so far followed the one the next pass predicts from.
    fn follow_the_last_order(&mut self) {
        std::mem::swap(&mut self.last_order, &mut self.order);
        self.order.clear();
        self.cursor = 0;
    }

    fn cookie_in(&self, slot: u32) -> u64 {
        self.cookie_at.get(slot as usize).copied().unwrap_or(0)
    }

    /// Where the last pass's order says the socket is, if the table still has it there.
    fn predicted(&mut self, cookie: u64) -> Option<u32> {
        let ahead = self.last_order.get(self.cursor..)?;
        let (skipped, &slot) = ahead
            .iter()
            .take(LOOKAHEAD)
            .enumerate()
            .find(|&(_, &slot)| self.cookie_in(slot) == cookie)?;
        self.cursor += skipped + 1;
        Some(slot)
    }

    fn looked_up(&mut self, cookie: u64) -> Option<u32> {
        if !self.by_cookie_built {
            self.by_cookie.extend(
                (0u32..)
                    .zip(&self.cookie_at)
                    .filter(|&(_, &cookie)| cookie != 0)
                    .map(|(slot, &cookie)| (cookie, slot)),
            );
            self.by_cookie_built = true;
        }
        self.by_cookie.get(&cookie).copied()
    }

    /// Whether the last record needed a lookup by cookie (tests).
    #[cfg(test)]
    pub(super) fn looked_up_this_pass(&self) -> bool {
        self.by_cookie_built
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finder(pairs: &[(u32, u64)]) -> SlotFinder {
        let mut finder = SlotFinder::default();
        finder.sweep_pairs(pairs.iter().copied());
        finder
    }

    #[test]
    fn the_first_pass_looks_up_and_the_next_follows_its_order() {
        let table = [(5, 50), (2, 20), (9, 90)];
        let mut f = finder(&table);
        let first: Vec<_> = [90, 20, 50, 77].map(|c| f.find(c)).into();
        assert_eq!(
            first,
            [Some(9), Some(2), Some(5), None],
            "77 is not tracked"
        );
        assert!(f.looked_up_this_pass());
        f.release();
        f.sweep_pairs(table);
        let second: Vec<_> = [90, 20, 50].map(|c| f.find(c)).into();
        assert_eq!(second, [Some(9), Some(2), Some(5)]);
        assert!(!f.looked_up_this_pass(), "every record predicted");
    }

    #[test]
    fn closed_sockets_are_skipped_and_new_ones_looked_up() {
        let mut f = finder(&[(1, 10), (2, 20), (3, 30)]);
        for cookie in [10, 20, 30] {
            f.find(cookie);
        }
        // 20 closed (its slot now free), 40 opened in slot 4 and visited between the others.
        f.sweep_pairs([(1, 10), (3, 30), (4, 40)]);
        assert_eq!(f.find(10), Some(1));
        assert!(!f.looked_up_this_pass());
        assert_eq!(f.find(40), Some(4));
        assert!(f.looked_up_this_pass(), "not in the last pass's order");
        assert_eq!(f.find(30), Some(3), "past the closed one");
        assert_eq!(f.find(20), None, "no longer in the table");
    }

    #[test]
    fn a_socket_the_table_moved_is_found_where_it_is_now() {
        let mut f = finder(&[(1, 10), (2, 20)]);
        f.find(10);
        f.find(20);
        f.sweep_pairs([(1, 10), (7, 20)]);
        assert_eq!(f.find(10), Some(1));
        assert_eq!(f.find(20), Some(7), "not the slot the order predicted");
        assert_eq!(f.find(0), None);
    }
}
