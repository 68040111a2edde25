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
//!   [`EdgeSet::take`]s the dependents under the lock and lowers each of them (or lowers them
//!   where they are, under the lock, with [`EdgeSet::for_each`], as the walk does);
//! - the **publisher** [`EdgeSet::register`]s its result under the same lock and, still under it,
//!   reads the dependency's current `max` and lowers its own `max` to it.
//!
//! The lock orders the two. If the publisher came first, the invalidator finds it in the set; if
//! the invalidator came first, the publisher reads the lowered `max`. Either way the result ends
//! with `max <= w'`, and no reader in a world `>= w'` can take it. The loom model
//! `edges_register_vs_invalidate` checks this interleaving by interleaving.
//!
//! # Skipping sets nothing ever registered on
//!
//! Most code instances have no dependents (the leaves of a call graph: half the nodes of a binary
//! tree), and locking their empty sets was a large part of a walk. So a set also records, in an
//! atomic flag outside its lock, whether anything was registered since it was made or cleared,
//! and the walk skips a dependent whose set says not, without locking it
//! ([`EdgeSet::may_have_entries`]). That is the store-buffering pattern, decided by sequentially
//! consistent operations rather than by the lock:
//!
//! - the **publisher** sets the flag, issues a sequentially consistent fence, then reads the
//!   dependency's `max`;
//! - the **invalidator** lowers the dependency's `max` with a sequentially consistent
//!   read-modify-write, then reads the flag with a sequentially consistent load.
//!
//! The fence and the invalidator's two operations fall in one total order. If the fence comes
//! before the flag's load, the load sees the flag set and the walk locks the set as above; if the
//! load comes first, so does the lowering, and the publisher's read after the fence sees it. A
//! publisher that finds the flag already set writes nothing, but the registration that set it is
//! ordered before its own fence by the lock, which gives the same order. On x86 the invalidator's
//! side costs nothing (its read-modify-write is a full barrier already, and a sequentially
//! consistent load is a plain load); the publisher pays one fence per registration. Loom cannot
//! model sequentially consistent loads and read-modify-writes (it treats them as
//! acquire-release), so under loom the invalidator's side issues the equivalent fence before its
//! load; the loom model `edges_register_vs_skipped_set` checks the race through it.
//!
//! Registration is O(1) amortized: entries are pushed, and the set is compacted (dropping the
//! entries its owner's predicate calls dead) only when it has doubled since the last compaction.
//!
//! The first [`INLINE`] entries live inside the set: most dependencies have a handful of
//! dependents, and a code instance's node (which embeds its set) then stays within two cache
//! lines with no allocation of its own.

use smallvec::SmallVec;

use crate::sync::{AtomicBool, Mutex, Ordering};

/// Entries kept without an allocation (with the flag beside the lock, a code instance's node
/// still fits in two cache lines).
pub const INLINE: usize = 6;

/// The dependents of one dependency.
#[derive(Debug)]
pub struct EdgeSet<T> {
    inner: Mutex<Inner<T>>,
    /// Whether anything was registered since the set was made or last cleared (see the module
    /// docs): set by registrations, cleared only by [`EdgeSet::clear_then`].
    registered: AtomicBool,
}

#[derive(Debug)]
struct Inner<T> {
    items: SmallVec<[T; INLINE]>,
    /// The length at which the next registration compacts first (`u32` keeps the set small; a
    /// longer list only compacts at every `u32::MAX` registrations, still amortized).
    compact_at: u32,
}

const MIN_COMPACT: u32 = 8;

impl<T> Inner<T> {
    fn compacted(&mut self, keep: impl FnMut(&T) -> bool) {
        retain(&mut self.items, keep);
        self.compact_at = next_compaction(self.items.len());
    }
}

fn next_compaction(len: usize) -> u32 {
    u32::try_from(len.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(MIN_COMPACT)
}

/// `SmallVec::retain`, but over the slice once: the generic one rechecks where the items live on
/// every access, and this is the invalidation walk's innermost loop.
fn retain<T>(items: &mut SmallVec<[T; INLINE]>, mut keep: impl FnMut(&T) -> bool) {
    let slice = items.as_mut_slice();
    let mut kept = 0;
    for i in 0..slice.len() {
        if keep(&slice[i]) {
            slice.swap(kept, i);
            kept += 1;
        }
    }
    items.truncate(kept);
}

impl<T: Clone> Default for EdgeSet<T> {
    fn default() -> Self {
        EdgeSet::new()
    }
}

impl<T: Clone> EdgeSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        EdgeSet {
            inner: Mutex::new(Inner {
                items: SmallVec::new(),
                compact_at: MIN_COMPACT,
            }),
            registered: AtomicBool::new(false),
        }
    }

    /// Registers `item` and, under the same lock, calls `read_max` to read the dependency's
    /// current upper bound, which the caller applies to `item`. `is_dead` tells which entries a
    /// compaction may drop.
    ///
    /// `read_max` runs after a sequentially consistent fence, so that a walk skipping this set
    /// because it found nothing registered has lowered the bound `read_max` reads (see the
    /// module docs).
    pub fn register<R>(
        &self,
        item: T,
        read_max: impl FnOnce() -> R,
        is_dead: impl Fn(&T) -> bool,
    ) -> R {
        let mut inner = self.inner.lock();
        if inner.items.len() >= inner.compact_at as usize {
            inner.compacted(|d| !is_dead(d));
        }
        inner.items.push(item);
        if !self.registered.load(Ordering::Relaxed) {
            self.registered.store(true, Ordering::Relaxed);
        }
        crate::sync::fence(Ordering::SeqCst);
        read_max()
    }

    /// Whether anything may be registered: `false` only if nothing was since the set was made
    /// or cleared. The caller must have lowered the dependency's bound with a sequentially
    /// consistent read-modify-write first; then a registration this call does not see reads the
    /// lowered bound (see the module docs), and the caller may skip the set.
    #[inline]
    pub fn may_have_entries(&self) -> bool {
        // Loom models sequentially consistent loads as acquiring ones; the fence gives the model
        // the order the load has outside it.
        #[cfg(loom)]
        crate::sync::fence(Ordering::SeqCst);
        self.registered.load(Ordering::SeqCst)
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
            out.extend(std::mem::take(&mut inner.items));
            return;
        }
        retain(&mut inner.items, |item| {
            if affected(item) {
                out.push(item.clone());
                false
            } else {
                true
            }
        });
    }

    /// Empties the set and runs `then` before letting go of its lock (entries are dropped after).
    pub fn clear_then(&self, then: impl FnOnce()) {
        let mut inner = self.inner.lock();
        let items = std::mem::take(&mut inner.items);
        inner.compact_at = MIN_COMPACT;
        self.registered.store(false, Ordering::SeqCst);
        then();
        drop(inner);
        drop(items);
    }

    /// Visits every entry under the lock, in place: `visit` says whether to keep it.
    pub fn visit(&self, visit: impl FnMut(&T) -> bool) {
        let mut inner = self.inner.lock();
        if !inner.items.is_empty() {
            retain(&mut inner.items, visit);
        }
    }

    /// Visits every entry under the lock, keeping them all: the walk, which lowers the
    /// dependents from inside `visit` and leaves their entries for a walk at an older world
    /// (this is [`EdgeSet::take`]'s protocol with nothing taken).
    #[inline]
    pub fn for_each(&self, visit: impl FnMut(&T)) {
        let inner = self.inner.lock();
        inner.items.iter().for_each(visit);
    }

    /// Drops the entries `is_dead` selects; used by reclamation.
    pub fn prune(&self, is_dead: impl Fn(&T) -> bool) {
        self.inner.lock().compacted(|d| !is_dead(d));
    }

    /// Like [`EdgeSet::prune`], but leaves sets of at most a few entries alone: they cost little
    /// memory, and checking every entry of every small set made a reclamation pass cost a
    /// reference-count update per edge in the engine.
    pub fn prune_large(&self, is_dead: impl Fn(&T) -> bool) {
        let mut inner = self.inner.lock();
        if inner.items.len() > MIN_COMPACT as usize {
            inner.compacted(|d| !is_dead(d));
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
