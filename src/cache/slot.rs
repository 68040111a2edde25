//! A slot `(method instance, owner key)`: its published entry, its locked state (versions and
//! running job, see `crate::raw::slot`), its backedges, and the dependencies compilations record
//! on it and on dispatch answers.

use std::hash::{Hash, Hasher};

use super::code_instance::CiData;
use super::compiler::{Compiler, JobOutcome};
use super::CacheInner;
use crate::dispatch::DispatchNode;
use crate::graph::{Cause, DependentRef, Edge, Edges, SlotNode};
use crate::methods::MethodInstance;
use crate::raw::slot::SlotCell;
use crate::sync::{Arc, Ordering};
use crate::types::Lattice;

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
    fn invalidate_versions(&self, world: u64, cause: &dyn Fn() -> Cause) -> Vec<DependentRef> {
        let state = self.cell.lock();
        let mut lowered: Vec<DependentRef> = Vec::new();
        for v in &state.versions {
            if v.core.validity.compile_world() < world && v.core.validity.lower(world) {
                v.core.set_cause(cause());
                lowered.push(Arc::clone(v) as DependentRef);
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
        (m.defined, m.deleted.load(Ordering::Acquire))
    }
}

/// A dependency recorded by a compilation, kept alive by the code instance that recorded it.
pub(crate) enum Dependency<L: Lattice> {
    Dispatch(Arc<DispatchNode<L>>),
    Slot {
        slot: Arc<dyn SlotNode>,
        version: Option<DependentRef>,
        /// Whether the dependency still holds the slot against retirement (see
        /// [`crate::raw::slot`]): from when it is recorded until its backedge is registered.
        held: bool,
    },
}

impl<L: Lattice> Dependency<L> {
    pub(crate) fn min(&self) -> u64 {
        match self {
            Dependency::Dispatch(node) => node.validity.min(),
            Dependency::Slot {
                version: Some(v), ..
            } => v.core().validity.min(),
            Dependency::Slot {
                slot,
                version: None,
                ..
            } => slot.method_range().0,
        }
    }

    /// Registers `dependent` and returns the upper end of this dependency's validity, read under
    /// the same lock (see [`crate::raw::edges`]). A slot's hold ends here: the backedge now keeps
    /// the slot from being retired.
    pub(crate) fn register(&mut self, dependent: &DependentRef) -> u64 {
        let dead = Edge::is_dead;
        match self {
            Dependency::Dispatch(node) => {
                node.edges
                    .register(Edge::to(dependent), || node.validity.max(), dead)
            }
            Dependency::Slot {
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

impl<L: Lattice> Drop for Dependency<L> {
    fn drop(&mut self) {
        // A compilation that failed never registers its dependencies.
        if let Dependency::Slot {
            slot, held: true, ..
        } = self
        {
            slot.release();
        }
    }
}
