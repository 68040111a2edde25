//! Backedges: the dependents registered on one dependency.
//!
//! # The insert-versus-invalidate protocol
//!
//! A compilation running in world `w` reads dependencies that a concurrent mutation may invalidate
//! at `w' > w` before the compilation publishes its result. The rule ([`crate::semantics`] §7) is
//! that the result must then be published with `max <= w'`. Both sides go through the dependency's
//! lock:
//!
//! - the **invalidator** first lowers the dependency's validity to `w'`, then
//!   [`EdgeSet::take`]s the dependents under the lock and lowers each of them;
//! - the **publisher** [`EdgeSet::register`]s its result under the same lock and, still under it,
//!   reads the dependency's current `max` and lowers its own `max` to it.
//!
//! The lock orders the two. If the publisher came first, the invalidator finds it in the set; if
//! the invalidator came first, the publisher reads the lowered `max`. Either way the result ends
//! with `max <= w'`, and no reader in a world `>= w'` can take it. The loom model
//! `edges_register_vs_invalidate` checks this interleaving by interleaving.
//!
//! Registration is O(1) amortized: entries are pushed, and the set is compacted (dropping
//! dependents that are already invalid, which further invalidation cannot affect) only when it
//! has doubled since the last compaction.

use crate::sync::Mutex;

/// The dependents of one dependency.
#[derive(Debug)]
pub struct EdgeSet<T> {
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    items: Vec<T>,
    compact_at: usize,
}

const MIN_COMPACT: usize = 8;

impl<T> Default for EdgeSet<T> {
    fn default() -> Self {
        EdgeSet::new()
    }
}

impl<T> EdgeSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        EdgeSet {
            inner: Mutex::new(Inner {
                items: Vec::new(),
                compact_at: MIN_COMPACT,
            }),
        }
    }

    /// Registers `item` and, under the same lock, calls `read_max` to read the dependency's
    /// current upper bound, which the caller applies to `item`. `is_dead` tells which entries a
    /// compaction may drop.
    pub fn register<R>(
        &self,
        item: T,
        read_max: impl FnOnce() -> R,
        is_dead: impl Fn(&T) -> bool,
    ) -> R {
        let mut inner = self.inner.lock();
        if inner.items.len() >= inner.compact_at {
            inner.items.retain(|d| !is_dead(d));
            inner.compact_at = (inner.items.len() * 2).max(MIN_COMPACT);
        }
        inner.items.push(item);
        read_max()
    }

    /// Removes and returns the dependents that `affected` selects (for an invalidation at `w'`:
    /// those computed in a world before `w'`); the others stay registered.
    pub fn take(&self, affected: impl Fn(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        self.take_into(affected, &mut out);
        out
    }

    /// Like [`EdgeSet::take`], appending to `out`. The invalidation walk reuses one buffer for
    /// every node it visits: a fresh vector per node showed in the walk as `malloc`/`free`
    /// (`benches/invalidation`).
    pub fn take_into(&self, affected: impl Fn(&T) -> bool, out: &mut Vec<T>) {
        let mut inner = self.inner.lock();
        if inner.items.is_empty() {
            return;
        }
        if inner.items.iter().all(&affected) {
            inner.compact_at = MIN_COMPACT;
            if out.is_empty() {
                // Swapping hands the set the buffer's spare capacity for its next registrations.
                std::mem::swap(&mut inner.items, out);
            } else {
                out.append(&mut inner.items);
            }
            return;
        }
        let items = std::mem::take(&mut inner.items);
        for item in items {
            if affected(&item) {
                out.push(item);
            } else {
                inner.items.push(item);
            }
        }
    }

    /// Drops the entries `is_dead` selects; used by reclamation.
    pub fn prune(&self, is_dead: impl Fn(&T) -> bool) {
        let mut inner = self.inner.lock();
        inner.items.retain(|d| !is_dead(d));
        inner.compact_at = (inner.items.len() * 2).max(MIN_COMPACT);
    }

    /// Like [`EdgeSet::prune`], but leaves sets of at most a few entries alone: they cost little
    /// memory, and checking every entry of every small set made a reclamation pass cost a
    /// reference-count update per edge in the engine.
    pub fn prune_large(&self, is_dead: impl Fn(&T) -> bool) {
        let mut inner = self.inner.lock();
        if inner.items.len() > MIN_COMPACT {
            inner.items.retain(|d| !is_dead(d));
            inner.compact_at = (inner.items.len() * 2).max(MIN_COMPACT);
        }
    }

    /// The number of registered dependents.
    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    /// Whether no dependent is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::EdgeSet;

    fn set(items: &[u64]) -> EdgeSet<u64> {
        let s = EdgeSet::new();
        for &i in items {
            s.register(i, || (), |_| false);
        }
        s
    }

    #[test]
    fn take_into_moves_the_selected_and_keeps_the_rest() {
        let s = set(&[1, 5, 2, 6, 3]);
        let mut out = vec![9];
        s.take_into(|&i| i < 4, &mut out);
        assert_eq!(out, [9, 1, 2, 3], "appended after what the buffer held");
        assert_eq!(s.take(|_| true), [5, 6]);
        assert!(s.is_empty());
    }

    #[test]
    fn take_into_an_empty_buffer_takes_everything_and_the_set_stays_usable() {
        let s = set(&[1, 2, 3]);
        let mut out = Vec::with_capacity(64);
        s.take_into(|_| true, &mut out);
        assert_eq!(out, [1, 2, 3]);
        assert!(s.is_empty());
        s.register(7, || (), |_| false);
        assert_eq!(s.take(|_| true), [7]);
    }
}
