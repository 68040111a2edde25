//! Retention: which worlds can still be asked about, and reclaiming what none of them can see.
//!
//! A reader that works in a world pins it with a [`Guard`](crate::Guard). Reclamation computes the
//! *horizon*: the oldest world that is pinned, or the current world if none older is. Everything
//! whose validity ends at or before the horizon — replaced and deleted methods, dispatch results,
//! code instances — can never be returned again and is dropped from the engine's structures.
//!
//! Dropping an entry from a structure is not the same as freeing it: a reader may hold a reference
//! obtained under its guard. Memory safety rests on the guard's epoch-based protection (seize,
//! through papaya) and on reference counts, never on timing: an entry removed from a map is freed
//! only once every guard that could have seen it has been dropped.
//!
//! Reclamation runs by itself after a mutation once enough garbage has accumulated (more than
//! `RECLAIM_MIN_GARBAGE` entries and more than what survived the last reclamation), so memory stays
//! within about twice what is live under any rate of redefinition, and each reclamation's cost — a
//! pass over the survivors — is spread over at least as many units of garbage: a definition's
//! amortized share stays the same however many entries are cached.
//! [`Engine::reclaim`](crate::Engine::reclaim) runs one on demand.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Engine, EngineInner};
use crate::dispatch::DispatchNode;
use crate::stats::Counter;
use crate::sync::{Arc, Ordering, Weak};
use crate::types::Lattice;
use crate::world::OPEN;

/// Garbage entries below which automatic reclamation never runs.
const RECLAIM_MIN_GARBAGE: usize = 1024;

/// What a reclamation dropped, and what is live afterwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Census {
    /// Methods kept in the method tables (live ones and those a pinned world can see).
    pub methods: usize,
    /// Entries in the dispatch caches.
    pub dispatch_entries: usize,
    /// Code-cache slots `(method instance, owner)` across all caches.
    pub slots: usize,
    /// Code instances across all caches.
    pub code_instances: usize,
}

impl Census {
    /// All entries counted.
    pub fn total(&self) -> usize {
        self.methods + self.dispatch_entries + self.slots + self.code_instances
    }
}

impl<L: Lattice> Engine<L> {
    /// Drops everything that no pinned world and not the current world can see (see
    /// [`crate::semantics`] §8) and returns what is live afterwards. Runs by itself after
    /// mutations once enough garbage has accumulated.
    pub fn reclaim(&self) -> Census {
        let inner = &*self.inner;
        let _writer = inner.writer.lock();
        let horizon = inner.pins.horizon(|| inner.world.current().get());
        inner.garbage.store(0, Ordering::Relaxed);
        let (mut dropped, dispatch_entries) = inner.dispatcher.reclaim(horizon, &inner.graph);
        let mut methods = 0;
        inner.tables.for_each_function(|func| {
            let lists = func.lists.load();
            let before = lists.len();
            match lists.visible_from(horizon) {
                Some(pruned) => {
                    let after = pruned.len();
                    // Dropping whole lineages moves the others: index them anew.
                    func.reindex(&pruned);
                    func.lists.store(Arc::new(pruned));
                    dropped += before - after;
                    methods += after;
                }
                None => methods += before,
            }
        });
        let (mut slots, mut code_instances) = (0, 0);
        for cache in inner.live_caches() {
            dropped += cache.reclaim(horizon);
            let (s, c) = cache.census();
            slots += s;
            code_instances += c;
        }
        inner.stats.add(Counter::Reclaimed, dropped as u64);
        // No walk runs while the writer lock is held: nodes freed so far can be reused.
        inner.graph.recycle();
        let census = Census {
            methods,
            dispatch_entries,
            slots,
            code_instances,
        };
        inner
            .reclaim_survivors
            .store(census.total(), Ordering::Relaxed);
        census
    }

    /// What is currently held: methods, dispatch entries, code-cache slots and code instances.
    pub fn census(&self) -> Census {
        let inner = &*self.inner;
        let mut methods = 0;
        inner
            .tables
            .for_each_function(|func| methods += func.lists.load().len());
        let (mut slots, mut code_instances) = (0, 0);
        for cache in inner.live_caches() {
            let (s, c) = cache.census();
            slots += s;
            code_instances += c;
        }
        Census {
            methods,
            dispatch_entries: inner.dispatcher.len(),
            slots,
            code_instances,
        }
    }

    /// Turns automatic reclamation after mutations on (the default) or off. With it off, memory
    /// grows with every invalidated entry until [`Engine::reclaim`] is called; an embedder that
    /// wants mutations to pay only for their invalidation walk can reclaim at a time of its own
    /// choosing instead.
    pub fn set_auto_reclaim(&self, on: bool) {
        self.inner.auto_reclaim.store(on, Ordering::Relaxed);
    }

    /// Reclaims if enough garbage has accumulated since the last reclamation: more than a fixed
    /// minimum and more than the last reclamation kept, so that a reclamation's pass over what is
    /// live is paid for by at least as much garbage.
    pub(super) fn after_mutation(&self, garbage: usize) {
        let inner = &*self.inner;
        let garbage = inner.garbage.fetch_add(garbage, Ordering::Relaxed) + garbage;
        let survivors = inner.reclaim_survivors.load(Ordering::Relaxed);
        if garbage > RECLAIM_MIN_GARBAGE
            && garbage > survivors
            && inner.auto_reclaim.load(Ordering::Relaxed)
        {
            // The mutation has taken effect; a panicking destructor of something reclamation
            // frees must not make it look as if it had not (the caller would see a panic from
            // `add_method`). It is counted instead, and the next reclamation frees the rest.
            if catch_unwind(AssertUnwindSafe(|| self.reclaim())).is_err() {
                inner.stats.add(Counter::UserCodePanic, 1);
            }
        }
    }
}

impl<L: Lattice> EngineInner<L> {
    /// Counts entries invalidated outside a mutation's own accounting.
    pub(crate) fn note_garbage(&self, n: usize) {
        self.garbage.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a dispatch miss. An answer cached for an older world that a mutation had changed
    /// (its range closed from the start) is garbage once that world is unpinned, and in no
    /// mutation's tally: it counts toward automatic reclamation here, or a reader of an old world
    /// could cache any number of answers that no reclamation was ever due for.
    pub(crate) fn count_dispatch_miss(&self, node: &DispatchNode<L>) {
        self.stats.add(Counter::DispatchMiss, 1);
        if node.validity.max() != OPEN {
            self.note_garbage(1);
        }
    }

    /// Drops what an engine operation let go of, once the operation is complete. Their
    /// destructors are user code (phase results, sources, keys); a panic in one is caught and
    /// counted in [`StatsSnapshot::user_code_panics`](crate::StatsSnapshot::user_code_panics),
    /// so that it cannot undo or hide an operation that has already taken effect.
    pub(crate) fn release<T>(&self, released: T) {
        if catch_unwind(AssertUnwindSafe(move || drop(released))).is_err() {
            self.stats.add(Counter::UserCodePanic, 1);
        }
    }

    /// The code caches still alive, forgetting those dropped.
    fn live_caches(&self) -> Vec<Arc<dyn super::CacheMaintenance>> {
        let mut caches = self.caches.lock();
        caches.retain(|c| c.strong_count() > 0);
        caches.iter().filter_map(Weak::upgrade).collect()
    }
}
