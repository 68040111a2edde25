//! Method instances: a method specialized on argument types, interned per `(method, argtypes)`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::invalidate::SlotNode;
use crate::table::Method;
use crate::types::{Lattice, SigDisplay};
use crate::DefaultLattice;

/// A method specialized on argument types: the unit code is compiled for.
///
/// Interned: the same `(method, argtypes)` gives the same instance (equal, with the same
/// [`id`](MethodInstance::id)) for as long as anyone holds it. Cloning is a reference-count bump.
pub struct MethodInstance<L: Lattice = DefaultLattice>(pub(crate) Arc<MiData<L>>);

pub(crate) struct MiData<L: Lattice> {
    pub(crate) id: u64,
    pub(crate) method: Method<L>,
    pub(crate) argtypes: Box<[L::Type]>,
    /// The code-cache slots made for this instance, one per cache and owner key, so that replacing
    /// or deleting the method can invalidate what was compiled for it in every cache.
    pub(crate) slots: Mutex<Vec<Weak<dyn SlotNode>>>,
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

impl<L: Lattice> MethodInstance<L> {
    pub(crate) fn new(method: Method<L>, argtypes: Box<[L::Type]>) -> Self {
        MethodInstance(Arc::new(MiData {
            id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            method,
            argtypes,
            slots: Mutex::new(Vec::new()),
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
        let mut slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= 8 && slots.len().is_power_of_two() {
            slots.retain(|s| s.strong_count() > 0);
        }
        slots.push(slot);
    }

    pub(crate) fn live_slots(&self) -> Vec<Arc<dyn SlotNode>> {
        let slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
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
