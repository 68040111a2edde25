//! Functions, methods and method tables.
//!
//! A function's methods are kept per table in one immutable snapshot, published
//! with an atomic swap (arc-swap) on every mutation of that function. Dispatch loads the snapshot
//! once and so sees every table of a stack at the same instant. A snapshot keeps replaced and
//! deleted methods (each knows its `[defined, deleted)` range) until reclamation proves no pinned
//! world can see them, which is what lets older worlds be asked how the engine stood then.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;

use crate::dispatch::FuncDispatch;
use crate::instance::{MethodInstance, MiData};
use crate::types::{Lattice, SigDisplay};
use crate::world::{World, OPEN};
use crate::DefaultLattice;

/// A function: a name that methods are defined for. A cheap `Copy` handle, valid only with the
/// engine that declared it.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct Function {
    pub(crate) engine: u32,
    pub(crate) id: u32,
}

/// A method table: the engine's global table or an overlay. A cheap `Copy` handle.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct MethodTable {
    pub(crate) engine: u32,
    pub(crate) id: u32,
}

impl MethodTable {
    /// Whether this is the engine's global table.
    pub fn is_global(&self) -> bool {
        self.id == 0
    }
}

/// An ordered stack of method tables that dispatch walks, for example `[overlay, global]`.
/// The first table holding an applicable live method decides. A cheap `Copy` handle.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct TableStack {
    pub(crate) engine: u32,
    pub(crate) id: u32,
}

pub(crate) struct StackData {
    pub(crate) tables: Box<[u32]>,
    pub(crate) names: Box<[Arc<str>]>,
}

impl StackData {
    pub(crate) fn describe(&self) -> String {
        format!("[{}]", self.names.join(", "))
    }
}

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
    pub(crate) fn instance(&self, argtypes: &[L::Type]) -> MethodInstance<L> {
        let mut map = self.0.instances.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mi) = map.get(argtypes).and_then(Weak::upgrade) {
            return MethodInstance(mi);
        }
        if map.len() >= 16 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let mi = MethodInstance::new(self.clone(), argtypes.into());
        map.insert(argtypes.into(), Arc::downgrade(&mi.0));
        mi
    }

    /// Every instance of this method still held by someone.
    pub(crate) fn live_instances(&self) -> Vec<MethodInstance<L>> {
        let map = self.0.instances.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
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
            crate::world::WorldRange::from_raw(
                self.0.defined,
                self.0.deleted.load(Ordering::Acquire)
            )
        )
    }
}

/// A method's interned instances, by argument types.
pub(crate) type InstanceMap<L> = HashMap<Box<[<L as Lattice>::Type]>, Weak<MiData<L>>>;

/// One function's methods, per table, as of one mutation.
pub(crate) struct MethodLists<L: Lattice> {
    pub(crate) per_table: Vec<(u32, Arc<[Method<L>]>)>,
}

impl<L: Lattice> MethodLists<L> {
    pub(crate) fn table(&self, table: u32) -> &[Method<L>] {
        self.per_table
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(&[], |(_, list)| list)
    }

    pub(crate) fn with_table(&self, table: u32, list: Vec<Method<L>>) -> MethodLists<L> {
        let mut per_table: Vec<_> = self
            .per_table
            .iter()
            .filter(|(t, _)| *t != table)
            .cloned()
            .collect();
        if !list.is_empty() {
            per_table.push((table, list.into()));
        }
        MethodLists { per_table }
    }

    pub(crate) fn len(&self) -> usize {
        self.per_table.iter().map(|(_, l)| l.len()).sum()
    }
}

pub(crate) struct FunctionData<L: Lattice> {
    pub(crate) name: Arc<str>,
    pub(crate) arity: Option<usize>,
    pub(crate) lists: ArcSwap<MethodLists<L>>,
    /// Dispatch results registered for invalidation; also serializes this function's mutations
    /// against dispatch-node registration (see `dispatch.rs`).
    pub(crate) dispatch: Mutex<FuncDispatch<L>>,
    /// Bumped (under `dispatch`'s lock) by every mutation of this function's methods.
    pub(crate) generation: AtomicU64,
}

impl<L: Lattice> FunctionData<L> {
    pub(crate) fn new(name: Arc<str>, arity: Option<usize>) -> Self {
        FunctionData {
            name,
            arity,
            lists: ArcSwap::from_pointee(MethodLists {
                per_table: Vec::new(),
            }),
            dispatch: Mutex::new(FuncDispatch::default()),
            generation: AtomicU64::new(0),
        }
    }
}
