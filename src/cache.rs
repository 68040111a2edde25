//! The code cache: code instances per `(method instance, owner)`, each valid over a world range.
//!
//! A [`CompilerCache`] is one owner tag with one compiler; its owner key (`Compiler::Key`: an
//! optimization level, a target device, ...) partitions it further. Different caches, and
//! different keys of one cache, never share entries.
//!
//! Each `(method instance, key)` has a *slot*. The slot's versions — at most one valid in any
//! world — are published as an immutable list in a lock-free hash map (papaya), replaced whole
//! whenever a version is added or dropped. A hit is therefore one hash-map probe, a scan of the
//! (almost always one-element) list, and two atomic loads: no lock, no allocation, no reference
//! count touched. The slot also holds the in-flight compilation job (see [`crate::raw::job`]) and
//! the backedges of everything compiled against its results.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::compile::{Compiler, JobOutcome};
use crate::engine::{CacheMaintenance, Engine};
use crate::instance::MethodInstance;
use crate::invalidate::{
    self, Cause, CiCore, DepRef, Dependent, Edge, Edges, Invalidation, SlotNode,
};
use crate::raw::slot::SlotCell;
use crate::types::Lattice;
use crate::world::{World, WorldRange};
use crate::{DefaultLattice, TableStack};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cache of compiled code for one compiler, identified by its owner tag, bound to a table stack.
///
/// The seed API's `CompilerCache(tag)` is [`CompilerCache::new`], `CompilerCache(tag, mt)` is
/// [`CompilerCache::with_stack`], and `CompilerCache{K}(tag)` is a compiler whose
/// [`Compiler::Key`] is `K`. Cloning shares the cache.
pub struct CompilerCache<C: Compiler<L>, L: Lattice = DefaultLattice> {
    pub(crate) inner: Arc<CacheInner<C, L>>,
}

impl<C: Compiler<L>, L: Lattice> Clone for CompilerCache<C, L> {
    fn clone(&self) -> Self {
        CompilerCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct CacheInner<C: Compiler<L>, L: Lattice> {
    pub(crate) engine: Engine<L>,
    pub(crate) tag: Arc<str>,
    pub(crate) compiler: C,
    pub(crate) stack: TableStack,
    pub(crate) slots: papaya::HashMap<SlotKey<C::Key>, SlotEntry<C, L>, rustc_hash::FxBuildHasher>,
}

impl<C: Compiler<L>, L: Lattice> CompilerCache<C, L> {
    /// A cache owned by `tag`, compiling with `compiler`, dispatching through the global table.
    pub fn new(engine: &Engine<L>, tag: &str, compiler: C) -> Self {
        CompilerCache::with_stack(engine, tag, engine.global_stack(), compiler)
    }

    /// A cache whose compilations dispatch through `stack` (for example `[overlay, global]`).
    pub fn with_stack(engine: &Engine<L>, tag: &str, stack: TableStack, compiler: C) -> Self {
        let inner = Arc::new(CacheInner {
            engine: engine.clone(),
            tag: tag.into(),
            compiler,
            stack,
            slots: crate::engine::shared_map(&engine.inner.collector),
        });
        let weak: std::sync::Weak<dyn CacheMaintenance> =
            Arc::downgrade(&(Arc::clone(&inner) as Arc<dyn CacheMaintenance>));
        engine.register_cache(weak);
        CompilerCache { inner }
    }

    /// The owner tag.
    pub fn tag(&self) -> &str {
        &self.inner.tag
    }

    /// The table stack compilations dispatch through.
    pub fn stack(&self) -> TableStack {
        self.inner.stack
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<L> {
        &self.inner.engine
    }

    /// The compiler.
    pub fn compiler(&self) -> &C {
        &self.inner.compiler
    }

    /// Every version held for `(mi, key)`, oldest first, whatever their phases.
    pub fn versions(&self, mi: &MethodInstance<L>, key: &C::Key) -> Vec<CodeInstance<C, L>> {
        let guard = self.inner.engine.inner.collector.enter();
        match self.inner.slots.get(
            &SlotQuery {
                mi: mi.address(),
                key,
            },
            &guard,
        ) {
            Some(entry) => entry.versions.iter().cloned().map(CodeInstance).collect(),
            None => Vec::new(),
        }
    }
}

impl<C: Compiler<L>, L: Lattice> fmt::Debug for CompilerCache<C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompilerCache")
            .field("tag", &self.inner.tag)
            .field("slots", &self.inner.slots.len())
            .finish()
    }
}

pub(crate) struct SlotKey<K> {
    pub(crate) mi: usize,
    pub(crate) key: K,
}

pub(crate) struct SlotQuery<'a, K> {
    pub(crate) mi: usize,
    pub(crate) key: &'a K,
}

impl<K: Hash> Hash for SlotKey<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        SlotQuery {
            mi: self.mi,
            key: &self.key,
        }
        .hash(state)
    }
}

impl<K: Hash> Hash for SlotQuery<'_, K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.mi);
        self.key.hash(state);
    }
}

impl<K: Eq> PartialEq for SlotKey<K> {
    fn eq(&self, other: &Self) -> bool {
        self.mi == other.mi && self.key == other.key
    }
}
impl<K: Eq> Eq for SlotKey<K> {}

impl<K: Eq> papaya::Equivalent<SlotKey<K>> for SlotQuery<'_, K> {
    fn equivalent(&self, key: &SlotKey<K>) -> bool {
        self.mi == key.mi && *self.key == key.key
    }
}

/// The published state of a slot: the slot itself and an immutable snapshot of its versions.
pub(crate) struct SlotEntry<C: Compiler<L>, L: Lattice> {
    /// The last element of `versions`, also held inline so that a hit in the current world loads
    /// the code instance straight from the map entry instead of through the list's allocation.
    pub(crate) newest: Option<Arc<CiData<C, L>>>,
    pub(crate) slot: Arc<Slot<C, L>>,
    pub(crate) versions: Box<[Arc<CiData<C, L>>]>,
}

impl<C: Compiler<L>, L: Lattice> SlotEntry<C, L> {
    pub(crate) fn new(slot: Arc<Slot<C, L>>, versions: &[Arc<CiData<C, L>>]) -> Self {
        SlotEntry {
            newest: versions.last().cloned(),
            slot,
            versions: versions.into(),
        }
    }

    /// The version valid in `world`, if any.
    #[inline]
    pub(crate) fn valid_in(&self, world: u64) -> Option<&Arc<CiData<C, L>>> {
        match &self.newest {
            Some(v) if v.core.validity.contains(world) => Some(v),
            Some(_) => valid_in(&self.versions, world),
            None => None,
        }
    }
}

/// The version of `versions` (oldest first) valid in `world`, if any. At most one is.
#[inline]
pub(crate) fn valid_in<C: Compiler<L>, L: Lattice>(
    versions: &[Arc<CiData<C, L>>],
    world: u64,
) -> Option<&Arc<CiData<C, L>>> {
    // Newest first: lookups are mostly in the current world.
    versions
        .iter()
        .rev()
        .find(|v| v.core.validity.contains(world))
}

pub(crate) struct Slot<C: Compiler<L>, L: Lattice> {
    pub(crate) mi: MethodInstance<L>,
    pub(crate) key: C::Key,
    pub(crate) tag: Arc<str>,
    /// Versions and the running job, behind the slot's lock (see [`crate::raw::slot`]).
    pub(crate) cell: SlotCell<Arc<CiData<C, L>>, JobOutcome<C, L>>,
    pub(crate) edges: Arc<Edges>,
}

/// One version of a slot: a code instance.
pub(crate) type Version<C, L> = Arc<CiData<C, L>>;

pub(crate) type SlotState<C, L> = crate::raw::slot::SlotState<Arc<CiData<C, L>>, JobOutcome<C, L>>;

impl<C: Compiler<L>, L: Lattice> Slot<C, L> {
    pub(crate) fn new(mi: MethodInstance<L>, key: C::Key, tag: Arc<str>) -> Self {
        Slot {
            mi,
            key,
            tag,
            cell: SlotCell::new(),
            edges: Arc::new(Edges::new()),
        }
    }

    /// Publishes the versions list in `state` as the slot's entry. Called with the state locked,
    /// so entries are published in the order the state changed.
    pub(crate) fn publish(
        self: &Arc<Self>,
        cache: &CacheInner<C, L>,
        state: &SlotState<C, L>,
        guard: &seize::LocalGuard<'_>,
    ) {
        cache.slots.insert(
            SlotKey {
                mi: self.mi.address(),
                key: self.key.clone(),
            },
            SlotEntry::new(Arc::clone(self), &state.versions),
            guard,
        );
    }
}

impl<C: Compiler<L>, L: Lattice> SlotNode for Slot<C, L> {
    fn invalidate_versions(&self, world: u64, cause: &dyn Fn() -> Cause) -> Vec<DepRef> {
        let state = self.cell.lock();
        let mut lowered: Vec<DepRef> = Vec::new();
        for v in &state.versions {
            if v.core.validity.compile_world() < world && v.core.validity.lower(world) {
                v.core.set_cause(cause());
                lowered.push(Arc::clone(v) as DepRef);
            }
        }
        lowered
    }

    fn edges(&self) -> &Arc<Edges> {
        &self.edges
    }

    fn release(&self) {
        self.cell.release();
    }

    fn method_range(&self) -> (u64, u64) {
        let m = &self.mi.method().0;
        (
            m.defined,
            m.deleted.load(std::sync::atomic::Ordering::Acquire),
        )
    }
}

/// A dependency recorded by a compilation, kept alive by the code instance that recorded it.
pub(crate) enum Dep<L: Lattice> {
    Dispatch(Arc<crate::dispatch::DispatchNode<L>>),
    Slot {
        slot: Arc<dyn SlotNode>,
        version: Option<DepRef>,
        /// Whether the dependency still holds the slot against retirement (see
        /// [`crate::raw::slot`]): from when it is recorded until its backedge is registered.
        held: bool,
    },
}

impl<L: Lattice> Dep<L> {
    pub(crate) fn min(&self) -> u64 {
        match self {
            Dep::Dispatch(node) => node.validity.min(),
            Dep::Slot {
                version: Some(v), ..
            } => v.core().validity.min(),
            Dep::Slot {
                slot,
                version: None,
                ..
            } => slot.method_range().0,
        }
    }

    /// Registers `dependent` and returns the upper end of this dependency's validity, read under
    /// the same lock (see [`crate::raw::edges`]). A slot's hold ends here: the backedge now keeps
    /// the slot from being retired.
    pub(crate) fn register(&mut self, dependent: &DepRef) -> u64 {
        let dead = Edge::is_dead;
        match self {
            Dep::Dispatch(node) => {
                node.edges
                    .register(Edge::to(dependent), || node.validity.max(), dead)
            }
            Dep::Slot {
                slot,
                version,
                held,
            } => {
                let max = slot.edges().register(
                    Edge::to(dependent),
                    || match version {
                        Some(v) => v.core().validity.max(),
                        None => slot.method_range().1,
                    },
                    dead,
                );
                if std::mem::take(held) {
                    slot.release();
                }
                max
            }
        }
    }
}

impl<L: Lattice> Drop for Dep<L> {
    fn drop(&mut self) {
        // A compilation that failed never registers its dependencies.
        if let Dep::Slot {
            slot, held: true, ..
        } = self
        {
            slot.release();
        }
    }
}

/// A code instance: one compilation of a method instance for one owner, with its phase results
/// and the worlds it is valid in. Cloning is a reference-count bump.
pub struct CodeInstance<C: Compiler<L>, L: Lattice = DefaultLattice>(pub(crate) Arc<CiData<C, L>>);

impl<C: Compiler<L>, L: Lattice> Clone for CodeInstance<C, L> {
    fn clone(&self) -> Self {
        CodeInstance(Arc::clone(&self.0))
    }
}

pub(crate) struct CiData<C: Compiler<L>, L: Lattice> {
    pub(crate) core: CiCore,
    pub(crate) mi: MethodInstance<L>,
    pub(crate) key: C::Key,
    pub(crate) tag: Arc<str>,
    pub(crate) inferred: C::Inferred,
    pub(crate) artifact: OnceLock<C::Artifact>,
    pub(crate) linked: OnceLock<C::Linked>,
    /// What it was compiled against; kept so that those stay reachable for invalidation. Set
    /// once, right after the instance registers with them.
    pub(crate) deps: OnceLock<Vec<Dep<L>>>,
}

impl<C: Compiler<L>, L: Lattice> Drop for CiData<C, L> {
    fn drop(&mut self) {
        // Dependencies hold their own dependencies: a chain as long as the call chain.
        crate::drop_chain::defer(self.deps.take());
    }
}

impl<C: Compiler<L>, L: Lattice> Dependent for CiData<C, L> {
    fn core(&self) -> &CiCore {
        &self.core
    }

    fn label(&self) -> String {
        format!("{} in {}[{:?}]", self.mi, self.tag, self.key)
    }
}

impl<C: Compiler<L>, L: Lattice> CodeInstance<C, L> {
    /// The method instance compiled.
    pub fn instance(&self) -> &MethodInstance<L> {
        &self.0.mi
    }

    /// The owner key it was compiled for.
    pub fn key(&self) -> &C::Key {
        &self.0.key
    }

    /// The worlds it is valid in. The upper end is set when an invalidation reaches it.
    pub fn validity(&self) -> WorldRange {
        let v = &self.0.core.validity;
        WorldRange::from_raw(v.min(), v.max())
    }

    /// Whether it is valid in `world`.
    pub fn is_valid_in(&self, world: World) -> bool {
        self.0.core.validity.contains(world.get())
    }

    /// The world it was compiled in.
    pub fn compiled_in(&self) -> World {
        World::from_raw(self.0.core.validity.compile_world())
    }

    /// The infer phase's result.
    pub fn inferred(&self) -> &C::Inferred {
        &self.0.inferred
    }

    /// The codegen phase's result, once it has run.
    pub fn artifact(&self) -> Option<&C::Artifact> {
        self.0.artifact.get()
    }

    /// The link phase's result, once it has run.
    pub fn linked(&self) -> Option<&C::Linked> {
        self.0.linked.get()
    }

    /// Why it was invalidated, if it was: the mutation, what it changed, and the chain of
    /// dependencies that carried the invalidation here.
    pub fn invalidation(&self) -> Option<Invalidation> {
        invalidate::explain(&*self.0)
    }
}

impl<C: Compiler<L>, L: Lattice> fmt::Debug for CodeInstance<C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CodeInstance({} valid {})",
            self.0.label(),
            self.validity()
        )
    }
}

impl<C: Compiler<L>, L: Lattice> CacheMaintenance for CacheInner<C, L> {
    fn reclaim(&self, horizon: u64) -> usize {
        let guard = self.engine.inner.collector.enter();
        let mut dropped = 0;
        let mut empty = Vec::new();
        for (_, entry) in self.slots.iter(&guard) {
            let slot = &entry.slot;
            // Most slots hold only versions still visible: nothing to drop, and the slot stays.
            // (A version published after this snapshot waits for the next reclamation.)
            if !entry.versions.is_empty()
                && entry
                    .versions
                    .iter()
                    .all(|v| v.core.validity.max() > horizon)
            {
                slot.edges.prune_large(Edge::is_dead);
                continue;
            }
            let mut state = slot.cell.lock();
            if state.is_retired() {
                continue;
            }
            let before = state.versions.len();
            state.versions.retain(|v| v.core.validity.max() > horizon);
            slot.edges.prune(Edge::is_dead);
            if state.versions.len() != before {
                dropped += before - state.versions.len();
                slot.publish(self, &state, &guard);
            }
            let idle = state.versions.is_empty() && !state.has_job();
            drop(state);
            if idle {
                empty.push(Arc::clone(slot));
            }
        }
        for slot in empty {
            // Decided again under the slot's lock: a compilation or a dependency may have found
            // the slot since (see `crate::raw::slot`).
            let retired = slot.cell.retire_if_idle(
                || slot.edges.is_empty(),
                || {
                    let _ = self.slots.remove_if(
                        &SlotQuery {
                            mi: slot.mi.address(),
                            key: &slot.key,
                        },
                        |_, entry| Arc::ptr_eq(&entry.slot, &slot),
                        &guard,
                    );
                },
            );
            dropped += usize::from(retired);
        }
        dropped
    }

    fn census(&self) -> (usize, usize) {
        let guard = self.engine.inner.collector.enter();
        let mut versions = 0;
        let mut slots = 0;
        for (_, entry) in self.slots.iter(&guard) {
            slots += 1;
            versions += entry.versions.len();
        }
        (slots, versions)
    }
}
