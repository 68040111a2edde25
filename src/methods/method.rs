//! Methods and their interned instances. The two refer to each other (a method interns its
//! instances; an instance names its method), so they live together.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};

use super::{Function, MethodTable};
use crate::graph::SlotNode;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, Weak};
use crate::types::{DefaultLattice, Lattice, SigDisplay};
use crate::world::{World, WorldRange, OPEN};

/// A method: a function's implementation for one signature in one table, with an opaque source.
///
/// Cloning is a reference-count bump. Methods compare by identity.
pub struct Method<L: Lattice = DefaultLattice>(pub(crate) Arc<MethodData<L>>);

pub(crate) struct MethodData<L: Lattice> {
    pub(crate) id: u64,
    pub(crate) function: Function,
    pub(crate) function_name: Arc<str>,
    pub(crate) table: MethodTable,
    pub(crate) sig: Box<[L::Type]>,
    /// [`Lattice::signature_key`] of `sig`, computed once when the method is defined.
    pub(crate) signature_key: u64,
    pub(crate) source: Arc<dyn Any + Send + Sync>,
    pub(crate) defined: u64,
    /// `OPEN` while live. Stored before the deleting world is published.
    pub(crate) deleted: AtomicU64,
    /// Interned method instances. Weak so that an instance nobody holds is reclaimed; an instance
    /// someone holds keeps its identity.
    pub(crate) instances: Mutex<InstanceMap<L>>,
}

impl<L: Lattice> Clone for Method<L> {
    fn clone(&self) -> Self {
        Method(Arc::clone(&self.0))
    }
}

impl<L: Lattice> PartialEq for Method<L> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl<L: Lattice> Eq for Method<L> {}
impl<L: Lattice> Hash for Method<L> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.id);
    }
}

impl<L: Lattice> Method<L> {
    /// The function this method belongs to.
    pub fn function(&self) -> Function {
        self.0.function
    }

    /// The table this method was defined in.
    pub fn table(&self) -> MethodTable {
        self.0.table
    }

    /// The signature: the tuple of argument types the method accepts.
    pub fn signature(&self) -> &[L::Type] {
        &self.0.sig
    }

    /// The source, if it has type `T`. Sources are opaque to the engine: an AST, bytecode, or a
    /// foreign IR only the embedder understands.
    pub fn source<T: Any>(&self) -> Option<&T> {
        self.0.source.downcast_ref()
    }

    /// The source as `dyn Any`.
    pub fn source_any(&self) -> &(dyn Any + Send + Sync) {
        &*self.0.source
    }

    /// The world the method was defined in.
    pub fn defined(&self) -> World {
        World::from_raw(self.0.defined)
    }

    /// The world the method was replaced or deleted in, if it has been.
    pub fn deleted(&self) -> Option<World> {
        let d = self.0.deleted.load(Ordering::Acquire);
        (d != OPEN).then(|| World::from_raw(d))
    }

    /// Whether the method is live in `world`: `defined <= world < deleted`.
    pub fn is_live_in(&self, world: World) -> bool {
        self.0.is_live_in(world.get())
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The interned method instance of this method for `argtypes`.
    ///
    /// A new instance shares `argtypes` (the tuple a dispatch miss made once) instead of copying
    /// it.
    pub(crate) fn instance(&self, argtypes: &Arc<[L::Type]>) -> MethodInstance<L> {
        let mut instances = self.0.instances.lock();
        if let Some(mi) = instances.get(argtypes) {
            return MethodInstance(mi);
        }
        let mi = MethodInstance::new(self.clone(), Arc::clone(argtypes));
        instances.insert(Arc::clone(argtypes), Arc::downgrade(&mi.0));
        mi
    }

    /// Every instance of this method still held by someone.
    pub(crate) fn live_instances(&self) -> Vec<MethodInstance<L>> {
        let instances = self.0.instances.lock();
        instances
            .first
            .iter()
            .map(|(_, w)| w)
            .chain(instances.rest.values())
            .filter_map(Weak::upgrade)
            .map(MethodInstance)
            .collect()
    }
}

impl<L: Lattice> MethodData<L> {
    pub(crate) fn is_live_in(&self, world: u64) -> bool {
        self.defined <= world && world < self.deleted.load(Ordering::Acquire)
    }
}

impl<L: Lattice> fmt::Display for Method<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0.function_name, SigDisplay(&self.0.sig))
    }
}

impl<L: Lattice> fmt::Debug for Method<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Method({self} in table {} live {})",
            self.0.table.id,
            WorldRange::from_raw(self.0.defined, self.0.deleted.load(Ordering::Acquire))
        )
    }
}

/// A method's interned instances, by argument types: the first inline, since most methods are
/// compiled for one tuple (a new method's first instance then allocates no table), the others in
/// a hash map.
pub(crate) struct InstanceMap<L: Lattice> {
    first: Option<Interned<L>>,
    rest: FxHashMap<Arc<[L::Type]>, Weak<MiData<L>>>,
}

/// An argument tuple and its instance, held weakly.
type Interned<L> = (Arc<[<L as Lattice>::Type]>, Weak<MiData<L>>);

impl<L: Lattice> Default for InstanceMap<L> {
    fn default() -> Self {
        InstanceMap {
            first: None,
            rest: FxHashMap::default(),
        }
    }
}

impl<L: Lattice> InstanceMap<L> {
    /// The live instance for `argtypes`. The inline entry is checked first: while it is live, no
    /// entry for its types is made in the map.
    fn get(&self, argtypes: &[L::Type]) -> Option<Arc<MiData<L>>> {
        if let Some((types, weak)) = &self.first {
            if **types == *argtypes {
                if let Some(mi) = weak.upgrade() {
                    return Some(mi);
                }
            }
        }
        self.rest.get(argtypes).and_then(Weak::upgrade)
    }

    /// Records `mi` as the instance for `argtypes`, which has no live instance.
    fn insert(&mut self, argtypes: Arc<[L::Type]>, mi: Weak<MiData<L>>) {
        match &self.first {
            Some((_, weak)) if weak.strong_count() > 0 => {
                let rest = &mut self.rest;
                if rest.len() >= 16 && rest.len().is_power_of_two() {
                    rest.retain(|_, w| w.strong_count() > 0);
                }
                rest.insert(argtypes, mi);
            }
            // Empty, or its instance is gone: the slot is free.
            _ => self.first = Some((argtypes, mi)),
        }
    }
}

/// A method specialized on argument types: the unit code is compiled for.
///
/// Interned: the same `(method, argtypes)` gives the same instance (equal, with the same
/// [`id`](MethodInstance::id)) for as long as anyone holds it. Cloning is a reference-count bump.
pub struct MethodInstance<L: Lattice = DefaultLattice>(pub(crate) Arc<MiData<L>>);

pub(crate) struct MiData<L: Lattice> {
    pub(crate) id: u64,
    pub(crate) method: Method<L>,
    pub(crate) argtypes: Arc<[L::Type]>,
    /// The code-cache slots made for this instance, one per cache and owner key, so that replacing
    /// or deleting the method can invalidate what was compiled for it in every cache.
    /// Inline for the usual one or two caches, so a new instance's first slot allocates nothing.
    pub(crate) slots: Mutex<SmallVec<[Weak<dyn SlotNode>; 2]>>,
}

/// Process-unique instance ids.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

impl<L: Lattice> MethodInstance<L> {
    pub(crate) fn new(method: Method<L>, argtypes: Arc<[L::Type]>) -> Self {
        MethodInstance(Arc::new(MiData {
            id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            method,
            argtypes,
            slots: Mutex::new(SmallVec::new()),
        }))
    }

    /// The method this instance specializes.
    pub fn method(&self) -> &Method<L> {
        &self.0.method
    }

    /// The argument types it is specialized on.
    pub fn argtypes(&self) -> &[L::Type] {
        &self.0.argtypes
    }

    /// A process-unique id, stable while the instance is held.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The instance's address, the code cache's key for it: as unique as the id while the
    /// instance lives, and a slot holds its instance, so no slot outlives the address it is keyed
    /// by. Unlike the id, reading it does not load through the handle.
    #[inline]
    pub(crate) fn address(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    pub(crate) fn register_slot(&self, slot: Weak<dyn SlotNode>) {
        let mut slots = self.0.slots.lock();
        if slots.len() >= 8 && slots.len().is_power_of_two() {
            slots.retain(|s| s.strong_count() > 0);
        }
        slots.push(slot);
    }

    pub(crate) fn live_slots(&self) -> Vec<Arc<dyn SlotNode>> {
        let slots = self.0.slots.lock();
        slots.iter().filter_map(Weak::upgrade).collect()
    }
}

impl<L: Lattice> Clone for MethodInstance<L> {
    fn clone(&self) -> Self {
        MethodInstance(Arc::clone(&self.0))
    }
}

impl<L: Lattice> PartialEq for MethodInstance<L> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl<L: Lattice> Eq for MethodInstance<L> {}
impl<L: Lattice> Hash for MethodInstance<L> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.id);
    }
}

impl<L: Lattice> fmt::Display for MethodInstance<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.0.method.0.function_name,
            SigDisplay(&self.0.argtypes)
        )
    }
}

impl<L: Lattice> fmt::Debug for MethodInstance<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MethodInstance({self} of {})", self.0.method)
    }
}

#[cfg(test)]
mod tests {
    use crate::sync::Arc;
    use crate::{Engine, Ty};

    #[test]
    fn instances_are_interned_whether_inline_or_in_the_map_and_remade_once_dropped() {
        let engine = Engine::new();
        let lattice = engine.lattice();
        let f = engine.declare_function("f").unwrap();
        let m = engine.add_method(f, &[Ty::any()], ()).unwrap();
        let tuples: Vec<Arc<[Ty]>> = (0..40)
            .map(|i| {
                let t = lattice
                    .declare_concrete(&format!("T{i}"), &Ty::any())
                    .unwrap();
                Arc::from(vec![t])
            })
            .collect();
        // The first tuple goes inline, the others to the map (past its pruning sizes).
        let held: Vec<_> = tuples.iter().map(|t| m.instance(t)).collect();
        for (t, mi) in tuples.iter().zip(&held) {
            // An equal tuple, not the same allocation, finds the same instance.
            let copy: Arc<[Ty]> = Arc::from(t.to_vec());
            assert_eq!(m.instance(&copy).id(), mi.id());
            assert_eq!(mi.argtypes(), &**t);
        }
        assert_eq!(m.live_instances().len(), 40);
        // Dropped instances are made afresh (new ids); held ones keep theirs.
        let (first_id, tenth_id) = (held[0].id(), held[10].id());
        let kept: Vec<_> = held
            .into_iter()
            .skip(1)
            .filter(|mi| mi.id() != tenth_id)
            .collect();
        assert_ne!(m.instance(&tuples[0]).id(), first_id);
        assert_ne!(m.instance(&tuples[10]).id(), tenth_id);
        for mi in &kept {
            assert_eq!(m.instance(&Arc::from(mi.argtypes().to_vec())).id(), mi.id());
        }
        assert_eq!(m.live_instances().len(), kept.len());
    }
}
