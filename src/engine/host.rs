//! What a code cache uses of its engine. The caches sit above the engine and reach it only
//! through these methods, never through its fields.

use super::{Engine, EngineInner};
use crate::dispatch::{Call, DispatchNode, Lookup};
use crate::error::Error;
use crate::graph::{walk, Graph, NodeRef};
use crate::methods::{Function, TableStack};
use crate::raw::job::WaitGraph;
use crate::stats::{Counter, Stats};
use crate::sync::{Arc, Weak};
use crate::types::Lattice;

/// Dropped code instances whose nodes a failing compilation frees when it finds that many
/// waiting: a chunk table's worth of 64 chunks.
const RECYCLE_BACKLOG: usize = 64 * crate::graph::nodes::CHUNK;

/// What a code cache offers the engine's reclamation and census.
pub(crate) trait CacheMaintenance: Send + Sync {
    /// Drops what no world at or after `horizon` can see; returns how many entries it dropped.
    fn reclaim(&self, horizon: u64) -> usize;
    /// `(slots, code instances)`.
    fn census(&self) -> (usize, usize);
}

impl<L: Lattice> Engine<L> {
    /// Makes a cache part of the engine's reclamation and census, for as long as it lives.
    /// Caches dropped since are forgotten as the list grows, so that creating and dropping
    /// caches does not accumulate entries until a reclamation.
    pub(crate) fn register_cache(&self, cache: Weak<dyn CacheMaintenance>) {
        let mut caches = self.inner.caches.lock();
        if caches.len() >= 8 && caches.len().is_power_of_two() {
            caches.retain(|c| c.strong_count() > 0);
        }
        caches.push(cache);
    }

    /// Checks that `stack` is one of this engine's stacks.
    pub(crate) fn check_stack(&self, stack: TableStack) -> Result<(), Error> {
        let guard = self.enter();
        self.inner.tables.stack_in(stack, &guard).map(|_| ())
    }

    /// A reclamation guard for reading the engine's lock-free maps (and the caches', which share
    /// its collector) outside a pinned world.
    pub(crate) fn enter(&self) -> seize::LocalGuard<'_> {
        self.inner.collector.enter()
    }

    /// The engine's collector, for the maps of a new cache.
    pub(crate) fn collector(&self) -> &Arc<seize::Collector> {
        &self.inner.collector
    }

    /// Whether `f` is one of this engine's functions.
    pub(crate) fn owns(&self, f: Function) -> bool {
        f.engine == self.inner.id
    }

    pub(crate) fn counters(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// Who waits on whose compilation, for cycle detection.
    pub(crate) fn waits(&self) -> &WaitGraph {
        &self.inner.waits
    }

    /// The dependency graph of the engine's code instances.
    pub(crate) fn graph(&self) -> &Arc<Graph> {
        &self.inner.graph
    }

    /// Ends the node of a compilation that failed after something registered on it: keeps it
    /// open, marked failed, if a dependent that could still be invalidated needs it (returns
    /// `true`), or closes it (see [`Graph::end_failed`]). Under the writer lock, so that a walk
    /// counts and passes through the node in full or not at all.
    pub(crate) fn end_failed(&self, node: NodeRef) -> bool {
        let writer = self.inner.writer.lock();
        self.inner.graph.end_failed(node, &writer)
    }

    /// Frees the nodes of dropped code instances if many wait. Mutations and reclamation free
    /// them as they go; a workload whose compilations keep failing without any mutation would
    /// otherwise grow the graph by a node per failure.
    pub(crate) fn recycle_if_backlog(&self) {
        let graph = &self.inner.graph;
        if graph.dropped_backlog() >= RECYCLE_BACKLOG {
            let _writer = self.inner.writer.lock();
            graph.recycle();
        }
    }

    /// Invalidates what depends on `node`, which its compilation has just closed at `world` (a
    /// dependency it recorded was invalidated after it read it, or its method was deleted): the
    /// same walk a mutation makes, under the writer lock, so that it never overlaps a mutation's
    /// or a reclamation's (see `crate::graph::nodes` for why walks must not).
    pub(crate) fn invalidate_from(&self, node: NodeRef, world: u64) {
        let inner: &EngineInner<L> = &self.inner;
        let writer = inner.writer.lock();
        let mut lowered = walk::Lowered::default();
        walk::propagate(&inner.graph, vec![node], world, &mut lowered);
        // Nodes of instances dropped meanwhile can be freed under the lock.
        inner.graph.recycle();
        drop(writer);
        let n = 1 + lowered.count;
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "compiler_caching::invalidation",
            world,
            invalidated = n,
            "closed while compiling: a dependency was invalidated after it was read"
        );
        inner.stats.add(Counter::Invalidated, n as u64);
        inner.note_garbage(n);
    }

    /// Dispatches on behalf of a compilation running in `world` (which its caller has pinned),
    /// counting the hit or the miss.
    pub(crate) fn dispatch_for_compilation<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
    ) -> Result<&'g Arc<DispatchNode<L>>, Error> {
        let inner: &EngineInner<L> = &self.inner;
        let call = Call {
            world,
            stack,
            f,
            args,
        };
        let lookup = inner
            .dispatcher
            .dispatch(seize, &inner.tables, &inner.lattice, call, None)?;
        match lookup {
            Lookup::Hit(_) => inner.stats.add(Counter::DispatchHit, 1),
            Lookup::Miss(node) => inner.count_dispatch_miss(node),
        }
        Ok(lookup.node())
    }
}
