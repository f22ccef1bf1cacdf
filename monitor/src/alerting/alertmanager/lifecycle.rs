//! What has been sent to Alertmanager, for any kind of alert: the firing ones by key, with when
//! each started (re-sent every scan), and the resolved ones not yet delivered (re-sent until a
//! POST succeeds, so a failed POST does not leave an alert firing until it expires).

use std::{collections::HashMap, hash::Hash, time::SystemTime};

/// Firing and resolved alerts of one kind, each `(value, when it started firing)`, by key.
#[derive(Debug)]
pub(in crate::alerting) struct Lifecycle<K, V> {
    firing: HashMap<K, (V, SystemTime)>,
    resolved: HashMap<K, (V, SystemTime)>,
}

impl<K, V> Default for Lifecycle<K, V> {
    fn default() -> Self {
        Self {
            firing: HashMap::new(),
            resolved: HashMap::new(),
        }
    }
}

impl<K: Hash + Ord, V> Lifecycle<K, V> {
    /// Makes `current` the firing alerts as of `now`: a key that was firing keeps its start
    /// (and `carry` folds its previous value into the new one), a new key starts now, and a
    /// key that is no longer there becomes resolved until [`delivered`](Self::delivered).
    pub(in crate::alerting) fn update(
        &mut self,
        current: impl IntoIterator<Item = (K, V)>,
        now: SystemTime,
        mut carry: impl FnMut(&mut V, V),
    ) {
        let mut firing = HashMap::new();
        for (key, mut value) in current {
            self.resolved.remove(&key);
            let started = match self.firing.remove(&key) {
                Some((previous, started)) => {
                    carry(&mut value, previous);
                    started
                }
                None => now,
            };
            firing.insert(key, (value, started));
        }
        self.resolved.extend(self.firing.drain());
        self.firing = firing;
    }

    /// The firing alerts in key order, so every POST lists them the same way.
    pub(in crate::alerting) fn firing(&self) -> Vec<(&V, SystemTime)> {
        in_key_order(&self.firing)
    }

    /// The resolved alerts not yet delivered, in key order.
    pub(in crate::alerting) fn resolved(&self) -> Vec<(&V, SystemTime)> {
        in_key_order(&self.resolved)
    }

    /// The last batch reached Alertmanager: resolved alerts need not be sent again.
    pub(in crate::alerting) fn delivered(&mut self) {
        self.resolved.clear();
    }
}

fn in_key_order<K: Ord, V>(map: &HashMap<K, (V, SystemTime)>) -> Vec<(&V, SystemTime)> {
    let mut all: Vec<_> = map.iter().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.into_iter().map(|(_, (v, t))| (v, *t)).collect()
}
