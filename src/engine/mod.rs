//! The engine: one universe of types, functions, method tables, caches and a world counter.
//!
//! [`Engine`] orchestrates the layers below it. This file holds the handle, the name registry
//! (functions, overlay tables, stacks) and what is answered in the current world; [`guard`] pins a
//! world and answers lookups in it; [`mutation`] is the one path every method definition,
//! replacement and deletion takes; [`reclaim`] drops what no retained world can see; [`host`] is
//! the narrow interface the code caches use.

mod guard;
mod host;
#[cfg(feature = "persist")]
mod identity;
mod mutation;
mod reclaim;

pub use guard::Guard;
pub(crate) use host::CacheMaintenance;
pub use reclaim::Census;

use std::collections::HashMap;
use std::fmt;

use crate::dispatch::{Dispatcher, Interner, Signature};
use crate::error::Error;
use crate::graph::Graph;
use crate::methods::{
    Function, FunctionData, MethodInstance, MethodTable, StackData, TableStack, Tables,
};
use crate::names;
use crate::raw::job::WaitGraph;
use crate::raw::pins::Pins;
use crate::stats::{Stats, StatsSnapshot};
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicUsize, Mutex, Ordering, Weak};
use crate::types::{DefaultLattice, Lattice};
use crate::world::{World, WorldCounter};

/// Names of functions, tables and stacks, and the ids they were given.
struct Names {
    functions: HashMap<Arc<str>, u32>,
    /// Each table's name, by id.
    tables: Vec<Arc<str>>,
    /// Each table's id, by name: a new overlay's name is checked in constant time.
    table_ids: HashMap<Arc<str>, u32>,
    stacks: HashMap<Box<[u32]>, u32>,
}

/// The engine's state, shared by every handle, guard and cache.
pub(crate) struct EngineInner<L: Lattice> {
    id: u32,
    lattice: L,
    world: WorldCounter,
    /// Serializes mutations and reclamation.
    writer: Mutex<()>,
    /// One reclamation scheme for every lock-free map of the engine, so one guard serves all.
    collector: Arc<seize::Collector>,
    tables: Tables<L>,
    names: Mutex<Names>,
    dispatcher: Dispatcher<L>,
    signatures: Interner<L>,
    pins: Pins,
    waits: WaitGraph,
    /// Shared with every code instance, which counts the panics of its phase results'
    /// destructors here wherever it is dropped.
    stats: Arc<Stats>,
    /// The nodes of every code instance of the engine's caches; shared with each instance, which
    /// frees its node and explains its invalidation through it.
    graph: Arc<Graph>,
    caches: Mutex<Vec<Weak<dyn CacheMaintenance>>>,
    /// Entries invalidated since the last reclamation.
    garbage: AtomicUsize,
    /// Entries the last reclamation kept.
    reclaim_survivors: AtomicUsize,
    auto_reclaim: AtomicBool,
}

static NEXT_ENGINE: AtomicU32 = AtomicU32::new(1);

/// The universe in which methods are defined, dispatched and compiled. See the crate docs for the
/// model.
///
/// `Engine` is a cheap handle (`Clone` shares the engine) and is `Send + Sync`: any number of
/// threads dispatch and compile while others define methods.
///
/// ```
/// use compiler_caching::{Engine, Ty};
///
/// let engine = Engine::new();
/// let types = engine.lattice();
/// let real = types.declare_abstract("Real", &Ty::any()).unwrap();
/// let int = types.declare_concrete("Int64", &real).unwrap();
/// let f = engine.declare_function("f").unwrap();
/// engine.add_method(f, &[real.clone()], "f(::Real)").unwrap();
/// let world = engine.current_world();
/// engine.add_method(f, &[int.clone()], "f(::Int64)").unwrap();
///
/// let now = engine.pin();
/// assert_eq!(now.dispatch(f, &[int.clone()]).unwrap().method().source::<&str>(), Some(&"f(::Int64)"));
/// let then = engine.pin_world(world).unwrap();
/// assert_eq!(then.dispatch(f, &[int]).unwrap().method().source::<&str>(), Some(&"f(::Real)"));
/// ```
pub struct Engine<L: Lattice = DefaultLattice> {
    inner: Arc<EngineInner<L>>,
}

impl<L: Lattice> Clone for Engine<L> {
    fn clone(&self) -> Self {
        Engine {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L: Lattice> fmt::Debug for Engine<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.inner.id)
            .field("world", &self.current_world())
            .finish_non_exhaustive()
    }
}

impl Engine<DefaultLattice> {
    /// An engine over the [`DefaultLattice`], with an empty global method table, in world 1.
    pub fn new() -> Self {
        Engine::with_lattice(DefaultLattice::new())
    }
}

impl Default for Engine<DefaultLattice> {
    fn default() -> Self {
        Engine::new()
    }
}

impl<L: Lattice> Engine<L> {
    /// An engine over an embedder's own type lattice.
    pub fn with_lattice(lattice: L) -> Self {
        let id = NEXT_ENGINE.fetch_add(1, Ordering::Relaxed);
        let collector = Arc::new(seize::Collector::new());
        let global: Arc<str> = "global".into();
        let tables = Tables::new(id, &collector);
        tables.add_stack(
            0,
            StackData {
                tables: Box::new([0]),
                names: Box::new([Arc::clone(&global)]),
            },
        );
        let inner = EngineInner {
            id,
            lattice,
            world: WorldCounter::new(),
            writer: Mutex::new(()),
            tables,
            names: Mutex::new(Names {
                functions: HashMap::new(),
                table_ids: HashMap::from([(Arc::clone(&global), 0)]),
                tables: vec![global],
                stacks: HashMap::from([(Box::from([0u32]), 0u32)]),
            }),
            dispatcher: Dispatcher::new(&collector),
            signatures: Interner::new(),
            pins: Pins::new(),
            waits: WaitGraph::new(),
            stats: Arc::new(Stats::new()),
            graph: Arc::new(Graph::default()),
            caches: Mutex::new(Vec::new()),
            garbage: AtomicUsize::new(0),
            reclaim_survivors: AtomicUsize::new(0),
            auto_reclaim: AtomicBool::new(true),
            collector,
        };
        Engine {
            inner: Arc::new(inner),
        }
    }

    /// The engine's type lattice (for the default lattice: where types are declared).
    pub fn lattice(&self) -> &L {
        &self.inner.lattice
    }

    /// Interns an argument-type tuple, for dispatching a call site's calls by identity
    /// ([`Guard::dispatch_signature`]): equal tuples give the same [`Signature`]. Interned
    /// signatures live as long as the engine.
    pub fn signature(&self, argtypes: &[L::Type]) -> Signature<L> {
        self.inner.signatures.intern(argtypes)
    }

    /// The newest world. Monotonic: a thread that observed `w` never later observes less.
    pub fn current_world(&self) -> World {
        self.inner.world.current()
    }

    /// The oldest world that can still be pinned (see [`crate::semantics`] §8).
    pub fn oldest_retained_world(&self) -> World {
        World::from_raw(self.inner.pins.floor())
    }

    /// Declares a function that may have methods of any arity. Names follow one rule everywhere:
    /// non-empty, at most 1024 bytes, no whitespace, control characters or `{}(),:`
    /// ([`Error::InvalidName`] otherwise).
    pub fn declare_function(&self, name: &str) -> Result<Function, Error> {
        self.declare(name, None)
    }

    /// Declares a function whose methods and calls must all take `arity` arguments; a signature
    /// of another length is an [`Error::ArityMismatch`].
    pub fn declare_function_with_arity(&self, name: &str, arity: usize) -> Result<Function, Error> {
        self.declare(name, Some(arity))
    }

    fn declare(&self, name: &str, arity: Option<usize>) -> Result<Function, Error> {
        check_name(name)?;
        let mut names = self.inner.names.lock();
        if names.functions.contains_key(name) {
            return Err(Error::DuplicateFunction { name: name.into() });
        }
        let id = u32::try_from(names.functions.len())
            .map_err(|_| Error::TooMany { what: "functions" })?;
        let name: Arc<str> = name.into();
        names.functions.insert(Arc::clone(&name), id);
        self.inner
            .tables
            .add_function(id, FunctionData::new(name, arity));
        self.inner.dispatcher.add_function(id);
        Ok(Function {
            engine: self.inner.id,
            id,
        })
    }

    /// The function declared as `name`.
    pub fn function(&self, name: &str) -> Result<Function, Error> {
        self.inner
            .names
            .lock()
            .functions
            .get(name)
            .map(|&id| Function {
                engine: self.inner.id,
                id,
            })
            .ok_or_else(|| Error::UnknownFunction {
                function: name.into(),
            })
    }

    /// The name `f` was declared with.
    pub fn function_name(&self, f: Function) -> Result<Arc<str>, Error> {
        Ok(Arc::clone(&self.inner.tables.function(f)?.name))
    }

    /// The engine's global method table.
    pub fn global_table(&self) -> MethodTable {
        MethodTable {
            engine: self.inner.id,
            id: 0,
        }
    }

    /// The stack holding only the global table: where dispatch looks by default.
    pub fn global_stack(&self) -> TableStack {
        TableStack {
            engine: self.inner.id,
            id: 0,
        }
    }

    /// Creates an overlay method table. Its methods are seen only through a [`TableStack`] that
    /// lists it (see [`Engine::stack`]). Its name follows the rule of function names and is
    /// unique among the engine's tables ([`Error::DuplicateTable`]; the global table is named
    /// `global`).
    pub fn new_overlay(&self, name: &str) -> Result<MethodTable, Error> {
        check_name(name)?;
        let mut names = self.inner.names.lock();
        if names.table_ids.contains_key(name) {
            return Err(Error::DuplicateTable { name: name.into() });
        }
        let id = u32::try_from(names.tables.len()).map_err(|_| Error::TooMany {
            what: "method tables",
        })?;
        let name: Arc<str> = name.into();
        names.table_ids.insert(Arc::clone(&name), id);
        names.tables.push(name);
        Ok(MethodTable {
            engine: self.inner.id,
            id,
        })
    }

    /// The stack that walks `tables` in order, for example `[overlay, global]`. Stacks are
    /// interned: the same list gives the same handle.
    pub fn stack(&self, tables: &[MethodTable]) -> Result<TableStack, Error> {
        let mut names = self.inner.names.lock();
        let mut ids = Vec::with_capacity(tables.len());
        for t in tables {
            if t.engine != self.inner.id || t.id as usize >= names.tables.len() {
                return Err(Error::UnknownTable {
                    table: format!("#{}", t.id),
                });
            }
            ids.push(t.id);
        }
        if ids.is_empty() {
            return Err(Error::UnknownTable {
                table: "(empty stack)".into(),
            });
        }
        let ids: Box<[u32]> = ids.into();
        if let Some(&id) = names.stacks.get(&ids) {
            return Ok(TableStack {
                engine: self.inner.id,
                id,
            });
        }
        let id = names.stacks.len() as u32;
        let data = StackData {
            names: ids
                .iter()
                .map(|&t| Arc::clone(&names.tables[t as usize]))
                .collect(),
            tables: ids.clone(),
        };
        names.stacks.insert(ids, id);
        self.inner.tables.add_stack(id, data);
        Ok(TableStack {
            engine: self.inner.id,
            id,
        })
    }

    /// The seed API's `method_instance(f, tt; world, method_table)`: dispatch `argtypes` through
    /// `stack` in `world` and return an owned method instance.
    pub fn method_instance(
        &self,
        f: Function,
        argtypes: &[L::Type],
        world: World,
        stack: TableStack,
    ) -> Result<MethodInstance<L>, Error> {
        let guard = self.pin_world(world)?;
        guard.dispatch_in(stack, f, argtypes).cloned()
    }

    /// The engine's counters, summed over every cache built on it.
    pub fn stats(&self) -> StatsSnapshot {
        let mut stats = self.inner.stats.snapshot();
        // Hits are tallied by guards and handed to their pin slots when dropped.
        let [dispatch_hits, code_hits] = self.inner.pins.counted();
        stats.dispatch_hits += dispatch_hits;
        stats.code_hits += code_hits;
        stats
    }
}

/// Checks a function, table or cache name against the rule every name follows.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if names::is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: names::shorten(name),
        })
    }
}

impl<L: Lattice> EngineInner<L> {
    fn check_table(&self, table: MethodTable) -> Result<Arc<str>, Error> {
        let names = self.names.lock();
        match names.tables.get(table.id as usize) {
            Some(name) if table.engine == self.id => Ok(Arc::clone(name)),
            _ => Err(Error::UnknownTable {
                table: format!("#{}", table.id),
            }),
        }
    }
}
