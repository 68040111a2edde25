//! A slot `(method instance, owner key)`: its published entry, its locked state (versions, running
//! job and its pending version, see `crate::raw::slot`) and its backedges.

use std::hash::{Hash, Hasher};

use super::code_instance::CiData;
use super::compiler::{Compiler, JobOutcome};
use super::CacheInner;
use crate::graph::{Cause, Edges, NodeRef, SlotNode};
use crate::methods::MethodInstance;
use crate::raw::slot::SlotCell;
use crate::sync::Arc;
use crate::types::Lattice;

/// A slot's key in the cache's map: method instance (by address) and owner key, with their hash.
///
/// The hash is computed once, outside the map, and the map only ever hashes that integer: the
/// owner key's `Hash` is user code, and a panic inside the lock-free map's resize (which rehashes
/// entries cooperatively, each thread copying a share) would leave its share uncopied and every
/// later pass over the map waiting for it. Only `Eq` runs inside the map, while probing, where a
/// panic leaves nothing half done.
pub(crate) struct SlotKey<K> {
    pub(crate) mi: usize,
    pub(crate) key: K,
    hash: u64,
}

/// A lookup of a [`SlotKey`].
pub(crate) struct SlotQuery<'a, K> {
    pub(crate) mi: usize,
    pub(crate) key: &'a K,
    hash: u64,
}

impl<'a, K: Hash> SlotQuery<'a, K> {
    /// The query for `key` of the instance at `mi`: runs the key's `Hash` (user code) here.
    #[inline]
    pub(crate) fn new(mi: usize, key: &'a K) -> Self {
        let mut state = rustc_hash::FxHasher::default();
        state.write_usize(mi);
        key.hash(&mut state);
        SlotQuery {
            mi,
            key,
            hash: state.finish(),
        }
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The key this query looks up, owning a clone of the owner key.
    pub(crate) fn to_key(&self) -> SlotKey<K>
    where
        K: Clone,
    {
        SlotKey {
            mi: self.mi,
            key: self.key.clone(),
            hash: self.hash,
        }
    }
}

impl<K> Hash for SlotKey<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K> Hash for SlotQuery<'_, K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K: Eq> PartialEq for SlotKey<K> {
    fn eq(&self, other: &Self) -> bool {
        self.mi == other.mi && self.hash == other.hash && self.key == other.key
    }
}
impl<K: Eq> Eq for SlotKey<K> {}

impl<K: Eq> papaya::Equivalent<SlotKey<K>> for SlotQuery<'_, K> {
    // The hashes are not compared: the map only probes entries whose hash bits match already.
    #[inline(always)]
    fn equivalent(&self, key: &SlotKey<K>) -> bool {
        self.mi == key.mi && *self.key == key.key
    }
}

/// The published state of a slot: the slot itself and an immutable view of its versions.
///
/// The versions are a persistent list, newest first, whose nodes entries share: publishing a new
/// version makes one node and points it at the previous list, so a publication costs the same
/// however many versions the slot holds, and entries retired while a long-lived guard keeps them
/// from being freed share their lists instead of each holding a copy (memory stays linear in the
/// number of versions, not quadratic).
pub(crate) struct SlotEntry<C: Compiler<L>, L: Lattice> {
    /// The newest version, held inline so that a hit in the current world loads the code
    /// instance straight from the map entry.
    pub(crate) newest: Option<Version<C, L>>,
    pub(crate) slot: Arc<Slot<C, L>>,
    /// The versions older than `newest`, newest first.
    older: Option<Arc<VersionList<C, L>>>,
}

/// A node of a slot's published version list.
struct VersionList<C: Compiler<L>, L: Lattice> {
    version: Version<C, L>,
    older: Option<Arc<VersionList<C, L>>>,
}

impl<C: Compiler<L>, L: Lattice> Drop for VersionList<C, L> {
    fn drop(&mut self) {
        // As long as the slot's history.
        crate::drop_chain::defer(self.older.take());
    }
}

impl<C: Compiler<L>, L: Lattice> SlotEntry<C, L> {
    /// An entry for `slot` with no version.
    pub(crate) fn empty(slot: Arc<Slot<C, L>>) -> Self {
        SlotEntry {
            newest: None,
            slot,
            older: None,
        }
    }

    /// An entry listing `versions` (oldest first).
    fn listing(slot: Arc<Slot<C, L>>, versions: &[Version<C, L>]) -> Self {
        let mut older = None;
        let mut newest = None;
        for version in versions {
            if let Some(previous) = newest.replace(Arc::clone(version)) {
                older = Some(Arc::new(VersionList {
                    version: previous,
                    older,
                }));
            }
        }
        SlotEntry {
            newest,
            slot,
            older,
        }
    }

    /// This entry with `version` added as the newest.
    fn with(&self, version: Version<C, L>) -> Self {
        let older = match &self.newest {
            Some(previous) => Some(Arc::new(VersionList {
                version: Arc::clone(previous),
                older: self.older.clone(),
            })),
            None => None,
        };
        SlotEntry {
            newest: Some(version),
            slot: Arc::clone(&self.slot),
            older,
        }
    }

    /// Every version, newest first.
    pub(crate) fn versions(&self) -> impl Iterator<Item = &Version<C, L>> {
        let mut node = self.older.as_deref();
        self.newest.iter().chain(std::iter::from_fn(move || {
            let current = node?;
            node = current.older.as_deref();
            Some(&current.version)
        }))
    }

    /// The version valid in `world`, if any.
    #[inline]
    pub(crate) fn valid_in(&self, world: u64) -> Option<&Version<C, L>> {
        match &self.newest {
            Some(v) if v.valid().contains(world) => Some(v),
            Some(_) => self.valid_in_older(world),
            None => None,
        }
    }

    #[cold]
    fn valid_in_older(&self, world: u64) -> Option<&Version<C, L>> {
        self.versions().skip(1).find(|v| v.valid().contains(world))
    }
}

/// The version of `versions` (oldest first) valid in `world`, if any. At most one is.
#[inline]
pub(crate) fn valid_in<C: Compiler<L>, L: Lattice>(
    versions: &[Arc<CiData<C, L>>],
    world: u64,
) -> Option<&Arc<CiData<C, L>>> {
    // Newest first: lookups are mostly in the current world.
    versions.iter().rev().find(|v| v.valid().contains(world))
}

pub(crate) struct Slot<C: Compiler<L>, L: Lattice> {
    pub(crate) mi: MethodInstance<L>,
    pub(crate) key: C::Key,
    /// The hash of its map key, computed once when the slot was made.
    hash: u64,
    pub(crate) tag: Arc<str>,
    /// Versions and the running job, behind the slot's lock (see [`crate::raw::slot`]).
    pub(crate) cell: SlotCell<Arc<CiData<C, L>>, JobOutcome<C, L>>,
    pub(crate) edges: Edges,
}

/// One version of a slot: a code instance.
pub(crate) type Version<C, L> = Arc<CiData<C, L>>;

pub(crate) type SlotState<C, L> = crate::raw::slot::SlotState<Arc<CiData<C, L>>, JobOutcome<C, L>>;

impl<C: Compiler<L>, L: Lattice> Slot<C, L> {
    /// A slot for `mi` and `key`, whose map key hashes to `hash` (see [`SlotQuery::new`]).
    pub(crate) fn new(mi: MethodInstance<L>, key: C::Key, hash: u64, tag: Arc<str>) -> Self {
        Slot {
            mi,
            key,
            hash,
            tag,
            cell: SlotCell::new(),
            edges: Edges::new(),
        }
    }

    fn key(&self) -> SlotKey<C::Key> {
        self.query().to_key()
    }

    /// The query for this slot's own key, with the hash it was made with: no user `Hash` runs.
    pub(crate) fn query(&self) -> SlotQuery<'_, C::Key> {
        SlotQuery {
            mi: self.mi.address(),
            key: &self.key,
            hash: self.hash,
        }
    }

    /// Publishes the slot's entry with `version`, just pushed onto `state`'s versions, as its
    /// newest. Called with the state locked, so entries are published in the order the state
    /// changed, and the entry read here is the one the previous change published.
    pub(crate) fn publish_pushed(
        self: &Arc<Self>,
        cache: &CacheInner<C, L>,
        state: &SlotState<C, L>,
        version: Version<C, L>,
        guard: &seize::LocalGuard<'_>,
    ) {
        let entry = match cache.slots.get(&self.query(), guard) {
            Some(previous) if Arc::ptr_eq(&previous.slot, self) => previous.with(version),
            // Not published (or published for a slot since replaced): list it all.
            _ => SlotEntry::listing(Arc::clone(self), &state.versions),
        };
        cache.slots.insert(self.key(), entry, guard);
    }

    /// Publishes the versions in `state` as the slot's entry, after versions were dropped.
    /// Called with the state locked.
    pub(crate) fn publish(
        self: &Arc<Self>,
        cache: &CacheInner<C, L>,
        state: &SlotState<C, L>,
        guard: &seize::LocalGuard<'_>,
    ) {
        cache.slots.insert(
            self.key(),
            SlotEntry::listing(Arc::clone(self), &state.versions),
            guard,
        );
    }
}

impl<C: Compiler<L>, L: Lattice> SlotNode for Slot<C, L> {
    fn invalidate_versions(&self, world: u64, cause: &dyn Fn() -> Cause) -> Vec<NodeRef> {
        let state = self.cell.lock();
        let mut lowered = Vec::new();
        // The pending version too: dependents may have registered on it already.
        for v in state.versions.iter().chain(state.pending()) {
            if v.valid().compile_world() < world && v.valid().lower(world) {
                v.node.set_root(cause());
                lowered.push(v.node.get_ref());
            }
        }
        lowered
    }

    fn edges(&self) -> &Edges {
        &self.edges
    }
}
