//! The engine: one universe of types, functions, method tables, caches and a world counter.
//!
//! Readers work through a [`Guard`], which pins a world and a reclamation epoch; every lookup made
//! through it is answered in that world without taking a lock. Writers (method definitions and
//! deletions) are serialized by one writer lock, prepare their change invisibly to readers of the
//! current world, invalidate what it changes, and only then publish the new world.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustc_hash::FxBuildHasher;

use crate::dispatch::{self, DispatchKey, DispatchNode, DispatchQuery, NodeKey};
use crate::error::Error;
use crate::instance::MethodInstance;
use crate::invalidate::{self, Cause, DepRef, Describe, Edges, Mutation, Released};
use crate::raw::job::WaitGraph;
use crate::raw::validity::Validity;
use crate::retention::{Census, Pins, RECLAIM_MIN_GARBAGE};
use crate::stats::{Counter, Stats, StatsSnapshot};
use crate::table::{
    Function, FunctionData, Method, MethodData, MethodLists, MethodTable, StackData, TableStack,
};
use crate::types::{sig_equal, Lattice};
use crate::world::{World, WorldCounter, OPEN};
use crate::DefaultLattice;

type Map<K, V> = papaya::HashMap<K, V, FxBuildHasher>;

/// What a code cache exposes to the engine for reclamation and census.
pub(crate) trait CacheMaintenance: Send + Sync {
    /// Drops what no world at or after `horizon` can see; returns how many entries it dropped.
    fn reclaim(&self, horizon: u64) -> usize;
    /// `(slots, code instances)`.
    fn census(&self) -> (usize, usize);
}

pub(crate) struct Names {
    functions: HashMap<Arc<str>, u32>,
    tables: Vec<Arc<str>>,
    stacks: HashMap<Box<[u32]>, u32>,
}

pub(crate) struct EngineInner<L: Lattice> {
    pub(crate) id: u32,
    pub(crate) lattice: L,
    pub(crate) world: WorldCounter,
    writer: Mutex<()>,
    pub(crate) collector: Arc<seize::Collector>,
    functions: Map<u32, Arc<FunctionData<L>>>,
    names: Mutex<Names>,
    stacks: Map<u32, Arc<StackData>>,
    dispatch_cache: Map<DispatchKey<L::Type>, Arc<DispatchNode<L>>>,
    /// Dispatch results for older worlds, keyed with their world.
    history: Map<DispatchKey<L::Type>, Arc<DispatchNode<L>>>,
    pub(crate) pins: Pins,
    pub(crate) waits: WaitGraph,
    pub(crate) stats: Stats,
    caches: Mutex<Vec<Weak<dyn CacheMaintenance>>>,
    garbage: AtomicUsize,
    reclaim_survivors: AtomicUsize,
    auto_reclaim: std::sync::atomic::AtomicBool,
}

/// List length past which a definition prunes the function's invisible history.
const HISTORY_PRUNE_LEN: usize = 64;

static NEXT_ENGINE: AtomicU32 = AtomicU32::new(1);
static NEXT_METHOD: AtomicU64 = AtomicU64::new(1);

/// A papaya map reclaimed through the engine's one collector, so one guard serves every map.
pub(crate) fn shared_map<K, V>(collector: &Arc<seize::Collector>) -> Map<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    papaya::HashMap::builder()
        .hasher(FxBuildHasher)
        .shared_collector(Arc::clone(collector))
        .build()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
    pub(crate) inner: Arc<EngineInner<L>>,
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
        let collector = Arc::new(seize::Collector::new());
        let global: Arc<str> = "global".into();
        let inner = EngineInner {
            id: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
            lattice,
            world: WorldCounter::new(),
            writer: Mutex::new(()),
            functions: shared_map(&collector),
            names: Mutex::new(Names {
                functions: HashMap::new(),
                tables: vec![Arc::clone(&global)],
                stacks: HashMap::from([(Box::from([0u32]), 0u32)]),
            }),
            stacks: shared_map(&collector),
            dispatch_cache: shared_map(&collector),
            history: shared_map(&collector),
            pins: Pins::new(),
            waits: WaitGraph::new(),
            stats: Stats::new(),
            caches: Mutex::new(Vec::new()),
            garbage: AtomicUsize::new(0),
            reclaim_survivors: AtomicUsize::new(0),
            auto_reclaim: std::sync::atomic::AtomicBool::new(true),
            collector,
        };
        inner.stacks.pin().insert(
            0,
            Arc::new(StackData {
                tables: Box::new([0]),
                names: Box::new([global]),
            }),
        );
        Engine {
            inner: Arc::new(inner),
        }
    }

    /// The engine's type lattice (for the default lattice: where types are declared).
    pub fn lattice(&self) -> &L {
        &self.inner.lattice
    }

    /// The newest world. Monotonic: a thread that observed `w` never later observes less.
    pub fn current_world(&self) -> World {
        self.inner.world.current()
    }

    /// The oldest world that can still be pinned (see [`crate::retention`]).
    pub fn oldest_retained_world(&self) -> World {
        self.inner.pins.floor()
    }

    /// Declares a function that may have methods of any arity.
    pub fn declare_function(&self, name: &str) -> Result<Function, Error> {
        self.declare(name, None)
    }

    /// Declares a function whose methods and calls must all take `arity` arguments; a signature
    /// of another length is an [`Error::ArityMismatch`].
    pub fn declare_function_with_arity(&self, name: &str, arity: usize) -> Result<Function, Error> {
        self.declare(name, Some(arity))
    }

    fn declare(&self, name: &str, arity: Option<usize>) -> Result<Function, Error> {
        if name.is_empty() {
            return Err(Error::InvalidName { name: name.into() });
        }
        let mut names = lock(&self.inner.names);
        if names.functions.contains_key(name) {
            return Err(Error::DuplicateFunction { name: name.into() });
        }
        let id = u32::try_from(names.functions.len())
            .map_err(|_| Error::InvalidName { name: name.into() })?;
        let name: Arc<str> = name.into();
        names.functions.insert(Arc::clone(&name), id);
        self.inner
            .functions
            .pin()
            .insert(id, Arc::new(FunctionData::new(name, arity)));
        Ok(Function {
            engine: self.inner.id,
            id,
        })
    }

    /// The function declared as `name`.
    pub fn function(&self, name: &str) -> Result<Function, Error> {
        lock(&self.inner.names)
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
        Ok(Arc::clone(&self.inner.function_data(f)?.name))
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
    /// lists it (see [`Engine::stack`]).
    pub fn new_overlay(&self, name: &str) -> Result<MethodTable, Error> {
        if name.is_empty() {
            return Err(Error::InvalidName { name: name.into() });
        }
        let mut names = lock(&self.inner.names);
        let id = u32::try_from(names.tables.len())
            .map_err(|_| Error::InvalidName { name: name.into() })?;
        names.tables.push(name.into());
        Ok(MethodTable {
            engine: self.inner.id,
            id,
        })
    }

    /// The stack that walks `tables` in order, for example `[overlay, global]`. Stacks are
    /// interned: the same list gives the same handle.
    pub fn stack(&self, tables: &[MethodTable]) -> Result<TableStack, Error> {
        let mut names = lock(&self.inner.names);
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
        self.inner.stacks.pin().insert(id, Arc::new(data));
        Ok(TableStack {
            engine: self.inner.id,
            id,
        })
    }

    /// Adds a method to the global table. See [`Engine::add_method_to`].
    pub fn add_method<S: std::any::Any + Send + Sync>(
        &self,
        f: Function,
        signature: &[L::Type],
        source: S,
    ) -> Result<Method<L>, Error> {
        self.add_method_to(self.global_table(), f, signature, source)
    }

    /// Adds a method of `f` for `signature` to `table`, with an opaque `source`, and advances the
    /// world by one. A live method of `f` in `table` whose signature is type-equal is replaced: it
    /// stays visible in older worlds and is deleted from the new one. Code compiled against
    /// whatever this changes is invalidated before the new world is published.
    ///
    /// A mutation is atomic: readers see all of it or none of it, and if user code it runs (the
    /// lattice's queries, types' `Display`) panics, the panic reaches the caller and the mutation
    /// does not happen at all: the world, the method tables and every cached answer stay as they
    /// were.
    pub fn add_method_to<S: std::any::Any + Send + Sync>(
        &self,
        table: MethodTable,
        f: Function,
        signature: &[L::Type],
        source: S,
    ) -> Result<Method<L>, Error> {
        let inner = &*self.inner;
        let func = inner.function_data(f)?;
        inner.check_table(table)?;
        inner.check_signature(&func, signature)?;
        let mut added = None;
        self.mutate(&func, table, |lists, world| {
            let replaced = lists
                .table(table.id)
                .iter()
                .find(|m| {
                    m.0.deleted.load(Ordering::Acquire) == OPEN
                        && sig_equal(&inner.lattice, &m.0.sig, signature)
                })
                .cloned();
            let method = Method(Arc::new(MethodData {
                id: NEXT_METHOD.fetch_add(1, Ordering::Relaxed),
                function: f,
                function_name: Arc::clone(&func.name),
                table,
                sig: signature.into(),
                source: Arc::new(source),
                defined: world,
                deleted: AtomicU64::new(OPEN),
                instances: Mutex::new(HashMap::new()),
            }));
            added = Some(method.clone());
            Ok(Edit {
                added: Some(method),
                removed: replaced,
            })
        })?;
        Ok(added.expect("set by a successful mutation"))
    }

    /// Deletes a live method and advances the world by one. From the new world on, dispatch no
    /// longer sees it, and code compiled against it is invalidated; older worlds still see it.
    /// Atomic like [`Engine::add_method_to`].
    pub fn delete_method(&self, method: &Method<L>) -> Result<(), Error> {
        let inner = &*self.inner;
        let not_live = || Error::MethodNotLive {
            method: method.to_string(),
        };
        let func = inner
            .function_data(method.0.function)
            .map_err(|_| not_live())?;
        self.mutate(&func, method.0.table, |lists, _| {
            if method.0.deleted.load(Ordering::Acquire) != OPEN
                || !lists.table(method.0.table.id).contains(method)
            {
                return Err(not_live());
            }
            Ok(Edit {
                added: None,
                removed: Some(method.clone()),
            })
        })
    }

    /// The one path every method-table mutation takes. Under the writer lock and the function's
    /// dispatch lock it first works out everything the mutation will do (`plan` picks the method
    /// added and the one removed; the new method lists are built; every cached answer the change
    /// can affect is recomputed against them), running all user code the mutation needs; only
    /// then does it change anything, with no user code left to run: mark the removed method
    /// deleted, install the lists, drop the changed answers, invalidate what depended on them,
    /// and publish the new world.
    fn mutate(
        &self,
        func: &Arc<FunctionData<L>>,
        table: MethodTable,
        plan: impl FnOnce(&MethodLists<L>, u64) -> Result<Edit<L>, Error>,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let table_name = Arc::clone(&lock(&inner.names).tables[table.id as usize]);
        let writer = lock(&inner.writer);
        let world = inner.world.current().next().get();
        let mut registry = lock(&func.dispatch);
        let lists = func.lists.load_full();

        let prepared = catch_unwind(AssertUnwindSafe(|| -> Result<Prepared<L>, Error> {
            let edit = plan(&lists, world)?;
            let new_lists = inner.edited_lists(&lists, table.id, &edit);
            let changed = inner.recheck(&registry, &new_lists.0, table.id, world, &edit);
            Ok(Prepared {
                edit,
                new_lists,
                changed,
            })
        }));
        let Prepared {
            edit,
            new_lists,
            changed,
        } = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => return Err(error),
            Err(panic) => {
                drop(registry);
                drop(writer);
                resume_unwind(panic);
            }
        };

        // The point of no return: nothing below runs user code, except destructors of what the
        // invalidation walk lets go of, which run after the new world is published.
        if let Some(old) = &edit.removed {
            old.0.deleted.store(world, Ordering::Release);
        }
        let (new_lists, pruned) = new_lists;
        func.lists.store(new_lists);
        func.generation.fetch_add(1, Ordering::Release);
        let mut unregistered = Vec::with_capacity(changed.len());
        for (key, _) in &changed {
            unregistered.extend(registry.nodes.remove(key));
        }
        drop(registry);
        inner.stats.add(Counter::Reclaimed, pruned as u64);
        let (method, verb) = match (&edit.added, &edit.removed) {
            (Some(new), Some(_)) => (new, "replaced in"),
            (Some(new), None) => (new, "added to"),
            (None, Some(old)) => (old, "deleted from"),
            (None, None) => unreachable!("a mutation adds or removes a method"),
        };
        let mutation = Arc::new(Mutation {
            world,
            method: Arc::new(method.clone()),
            verb,
            table: table_name,
        });
        let changed: Vec<_> = changed.into_iter().map(|(_, node)| node).collect();
        let mut released = inner.invalidate(world, &mutation, changed, edit.removed.as_ref());
        released.other.push(Box::new(unregistered));
        inner.world.publish(World::from_raw(world));
        drop(writer);
        inner.release(released);
        self.after_mutation(usize::from(edit.removed.is_some()));
        Ok(())
    }

    fn after_mutation(&self, garbage: usize) {
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
                inner.stats.add(Counter::DestructorPanic, 1);
            }
        }
    }

    /// Turns automatic reclamation after mutations on (the default) or off. With it off, memory
    /// grows with every invalidated entry until [`Engine::reclaim`] is called; an embedder that
    /// wants mutations to pay only for their invalidation walk can reclaim at a time of its own
    /// choosing instead.
    pub fn set_auto_reclaim(&self, on: bool) {
        self.inner.auto_reclaim.store(on, Ordering::Relaxed);
    }

    pub(crate) fn note_garbage(&self, n: usize) {
        self.inner.garbage.fetch_add(n, Ordering::Relaxed);
    }

    /// Pins the current world and returns a guard through which lookups are answered in it.
    ///
    /// Pinning takes a short lock on a per-thread shard (uncontended unless many threads share a
    /// shard); lookups through the guard take none. A long-lived guard keeps its world, and what
    /// it sees, from being reclaimed, so re-pin between batches of work.
    pub fn pin(&self) -> Guard<'_, L> {
        let (world, slot) = self.inner.pins.pin_current(&self.inner.world);
        Guard {
            engine: &self.inner,
            world,
            slot,
            seize: self.inner.collector.enter(),
            dispatch_hits: Cell::new(0),
            code_hits: Cell::new(0),
        }
    }

    /// Pins an older (or the current) world. Fails with [`Error::WorldNotRetained`] if it has been
    /// reclaimed, or [`Error::FutureWorld`] if it has not happened yet.
    pub fn pin_world(&self, world: World) -> Result<Guard<'_, L>, Error> {
        let slot = self.inner.pins.pin(world, &self.inner.world)?;
        Ok(Guard {
            engine: &self.inner,
            world,
            slot,
            seize: self.inner.collector.enter(),
            dispatch_hits: Cell::new(0),
            code_hits: Cell::new(0),
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

    /// Drops everything that no pinned world and not the current world can see (see
    /// [`crate::retention`]) and returns what is live afterwards. Runs by itself after mutations
    /// once enough garbage has accumulated.
    pub fn reclaim(&self) -> Census {
        let inner = &*self.inner;
        let _writer = lock(&inner.writer);
        let horizon = inner.pins.horizon(&inner.world);
        inner.garbage.store(0, Ordering::Relaxed);
        let mut dropped = 0;
        let mut methods = 0;
        let guard = inner.collector.enter();
        for func in inner.functions.values(&guard) {
            let registry = lock(&func.dispatch);
            let lists = func.lists.load();
            let keep = |m: &Method<L>| m.0.deleted.load(Ordering::Acquire) > horizon;
            let before = lists.len();
            for node in registry.nodes.values() {
                node.edges.prune_large(crate::invalidate::Edge::is_dead);
            }
            // Most functions have nothing to drop: check before rebuilding (and allocating) lists.
            if lists
                .per_table
                .iter()
                .all(|(_, list)| list.iter().all(keep))
            {
                methods += before;
                continue;
            }
            let pruned = crate::table::MethodLists {
                per_table: lists
                    .per_table
                    .iter()
                    .map(|(t, list)| {
                        (
                            *t,
                            list.iter()
                                .filter(|m| keep(m))
                                .cloned()
                                .collect::<Arc<[_]>>(),
                        )
                    })
                    .filter(|(_, list)| !list.is_empty())
                    .collect(),
            };
            let after = pruned.len();
            if after != before {
                func.lists.store(Arc::new(pruned));
            }
            dropped += before - after;
            methods += after;
        }
        let stale = |node: &Arc<DispatchNode<L>>| node.validity.max() <= horizon;
        let mut dispatch_entries = 0;
        for map in [&inner.dispatch_cache, &inner.history] {
            let before = map.len();
            map.retain(|_, node| !stale(node), &guard);
            let after = map.len();
            dropped += before.saturating_sub(after);
            dispatch_entries += after;
        }
        let (mut slots, mut code_instances) = (0, 0);
        let caches: Vec<_> = {
            let mut caches = lock(&inner.caches);
            caches.retain(|c| c.strong_count() > 0);
            caches.iter().filter_map(Weak::upgrade).collect()
        };
        for cache in caches {
            dropped += cache.reclaim(horizon);
            let (s, c) = cache.census();
            slots += s;
            code_instances += c;
        }
        inner.stats.add(Counter::Reclaimed, dropped as u64);
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
        let guard = inner.collector.enter();
        let methods = inner
            .functions
            .values(&guard)
            .map(|f| f.lists.load().len())
            .sum();
        let dispatch_entries = inner.dispatch_cache.len() + inner.history.len();
        let (mut slots, mut code_instances) = (0, 0);
        for cache in lock(&inner.caches).iter().filter_map(Weak::upgrade) {
            let (s, c) = cache.census();
            slots += s;
            code_instances += c;
        }
        Census {
            methods,
            dispatch_entries,
            slots,
            code_instances,
        }
    }

    /// The engine's counters, summed over every cache built on it.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    pub(crate) fn register_cache(&self, cache: Weak<dyn CacheMaintenance>) {
        lock(&self.inner.caches).push(cache);
    }
}

impl<L: Lattice> EngineInner<L> {
    /// Drops what an engine operation let go of, once the operation is complete. Their
    /// destructors are user code (phase results, sources, keys); a panic in one is caught and
    /// counted in [`StatsSnapshot::destructor_panics`], so that it cannot undo or hide an
    /// operation that has already taken effect.
    pub(crate) fn release<T>(&self, released: T) {
        if catch_unwind(AssertUnwindSafe(move || drop(released))).is_err() {
            self.stats.add(Counter::DestructorPanic, 1);
        }
    }

    pub(crate) fn function_data(&self, f: Function) -> Result<Arc<FunctionData<L>>, Error> {
        let unknown = || Error::UnknownFunction {
            function: format!("#{}", f.id),
        };
        if f.engine != self.id {
            return Err(unknown());
        }
        self.functions.pin().get(&f.id).cloned().ok_or_else(unknown)
    }

    fn check_table(&self, table: MethodTable) -> Result<(), Error> {
        if table.engine != self.id || table.id as usize >= lock(&self.names).tables.len() {
            return Err(Error::UnknownTable {
                table: format!("#{}", table.id),
            });
        }
        Ok(())
    }

    fn check_signature(&self, func: &FunctionData<L>, sig: &[L::Type]) -> Result<(), Error> {
        if let Some(arity) = func.arity {
            if arity != sig.len() {
                return Err(Error::ArityMismatch {
                    function: func.name.to_string(),
                    expected: arity,
                    found: sig.len(),
                });
            }
        }
        sig.iter().try_for_each(|t| self.lattice.check(t))?;
        Ok(())
    }

    /// The dispatch node answering the call in this world: from the cache (counted in `hits`), or
    /// computed.
    #[inline]
    pub(crate) fn dispatch_node<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
        hits: &Cell<u64>,
    ) -> Result<&'g Arc<DispatchNode<L>>, Error> {
        let engine = self;
        if f.engine != engine.id || stack.engine != engine.id {
            return Err(if f.engine != engine.id {
                Error::UnknownFunction {
                    function: format!("#{}", f.id),
                }
            } else {
                Error::UnknownTable {
                    table: format!("stack #{}", stack.id),
                }
            });
        }
        let query = DispatchQuery {
            func: f.id,
            stack: stack.id,
            world: 0,
            args,
        };
        if let Some(node) = engine.dispatch_cache.get(&query, seize) {
            if node.validity.contains(world) {
                hits.set(hits.get() + 1);
                return Ok(node);
            }
        }
        self.dispatch_slow(seize, world, stack, f, args, query)
    }

    #[cold]
    fn dispatch_slow<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
        query: DispatchQuery<'_, L::Type>,
    ) -> Result<&'g Arc<DispatchNode<L>>, Error> {
        let engine = self;
        engine.stats.add(Counter::DispatchMiss, 1);
        let func = engine.function_data(f)?;
        engine.check_signature(&func, args)?;
        let stack_data = engine
            .stacks
            .get(&stack.id, seize)
            .cloned()
            .ok_or_else(|| Error::UnknownTable {
                table: format!("stack #{}", stack.id),
            })?;
        loop {
            let generation = func.generation.load(Ordering::Acquire);
            let lists = func.lists.load();
            let (raw, min, mut max) =
                dispatch::compute(&engine.lattice, &lists, &stack_data, args, world);
            if max != OPEN {
                max = dispatch::exact_max(&engine.lattice, &lists, &stack_data, args, world, &raw);
            }
            let node = Arc::new(DispatchNode {
                function_name: Arc::clone(&func.name),
                stack: Arc::clone(&stack_data),
                args: args.into(),
                outcome: dispatch::outcome(raw, args),
                validity: Validity::new(world, min),
                edges: Edges::new(),
            });
            if max != OPEN {
                // An answer for an older world that a later mutation changed: never invalidated
                // again, so it is kept with the world it was asked in, apart from current answers.
                node.validity.lower(max);
                return Ok(self.remember_historical(seize, world, query, node));
            }
            let mut registry = lock(&func.dispatch);
            if func.generation.load(Ordering::Acquire) != generation {
                continue; // a mutation of `f` slipped in since the methods were read
            }
            let node = match registry
                .nodes
                .get(&(stack.id, Box::<[L::Type]>::from(args)))
            {
                Some(existing) if existing.validity.max() == OPEN => {
                    // Same answer from `min` on (no mutation of `f` since the methods were read,
                    // and ours is open-ended too); it may have been computed in a later world
                    // with a later `min`, which must not exclude the world asked in here.
                    existing.validity.extend_min(min);
                    Arc::clone(existing)
                }
                _ => {
                    registry
                        .nodes
                        .insert((stack.id, args.into()), Arc::clone(&node));
                    node
                }
            };
            drop(registry);
            engine.dispatch_cache.insert(
                DispatchKey {
                    func: f.id,
                    stack: stack.id,
                    world: 0,
                    args: args.into(),
                },
                Arc::clone(&node),
                seize,
            );
            if let Some(cached) = engine.dispatch_cache.get(&query, seize) {
                if Arc::ptr_eq(cached, &node) {
                    return Ok(cached);
                }
            }
            // Another thread replaced the entry meanwhile; keep ours reachable for this guard.
            return Ok(self.remember_historical(seize, world, query, node));
        }
    }

    fn remember_historical<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        query: DispatchQuery<'_, L::Type>,
        node: Arc<DispatchNode<L>>,
    ) -> &'g Arc<DispatchNode<L>> {
        let key = DispatchKey {
            func: query.func,
            stack: query.stack,
            world,
            args: query.args.into(),
        };
        self.history.get_or_insert(key, node, seize)
    }

    /// The function's method lists once `edit` is applied to `table`. A list that keeps growing
    /// would make every definition copy the function's whole history, so past a small length the
    /// methods no retained world can see are left out (as reclamation would): a definition's cost
    /// stays independent of how often the function was redefined. Returns how many were left out.
    fn edited_lists(
        &self,
        lists: &Arc<MethodLists<L>>,
        table: u32,
        edit: &Edit<L>,
    ) -> (Arc<MethodLists<L>>, usize) {
        let Some(added) = &edit.added else {
            // A deletion only marks the method; it stays listed for older worlds.
            return (Arc::clone(lists), 0);
        };
        let list = lists.table(table);
        let mut new_list: Vec<Method<L>> = if list.len() >= HISTORY_PRUNE_LEN {
            let horizon = self.pins.horizon(&self.world);
            list.iter()
                .filter(|m| m.0.deleted.load(Ordering::Acquire) > horizon)
                .cloned()
                .collect()
        } else {
            list.to_vec()
        };
        let pruned = list.len() - new_list.len();
        new_list.push(added.clone());
        (Arc::new(lists.with_table(table, new_list)), pruned)
    }

    /// The registered answers of the function that `edit` changes: every node whose stack includes
    /// `table` and to which the added or removed method applies (see
    /// [`DispatchNode::depends_on`]), re-dispatched in the new `world` over `lists` as if the
    /// removed method were already deleted. Changes nothing.
    fn recheck(
        &self,
        registry: &crate::dispatch::FuncDispatch<L>,
        lists: &MethodLists<L>,
        table: u32,
        world: u64,
        edit: &Edit<L>,
    ) -> Vec<Registered<L>> {
        let touches = |node: &DispatchNode<L>, m: &Option<Method<L>>| {
            m.as_ref()
                .is_some_and(|m| node.depends_on(&self.lattice, m))
        };
        let deleted = |m: &Method<L>| {
            if edit.removed.as_ref() == Some(m) {
                world
            } else {
                m.0.deleted.load(Ordering::Acquire)
            }
        };
        registry
            .nodes
            .iter()
            .filter(|(_, node)| {
                node.stack.tables.contains(&table)
                    && (touches(node, &edit.added) || touches(node, &edit.removed))
            })
            .filter(|(_, node)| {
                let (raw, _, _) = dispatch::compute_with(
                    &self.lattice,
                    lists,
                    &node.stack,
                    &node.args,
                    world,
                    deleted,
                );
                !raw.matches(&node.outcome)
            })
            .map(|(key, node)| (key.clone(), Arc::clone(node)))
            .collect()
    }

    /// Closes the validity of the changed dispatch nodes and of everything compiled for the
    /// replaced or deleted method, and propagates through every dependent. Runs no user code:
    /// what the walk lets go of is returned, to be dropped once the mutation is over.
    fn invalidate(
        &self,
        world: u64,
        mutation: &Arc<Mutation>,
        changed: Vec<Arc<DispatchNode<L>>>,
        removed: Option<&Method<L>>,
    ) -> Released {
        let mut released = Released::default();
        let mut seeds: Vec<DepRef> = Vec::new();
        let mut touched = 0usize;
        for node in &changed {
            node.validity.lower(world);
            let call: Describe = Arc::clone(node) as Describe;
            seeds.extend(invalidate::seed_from_edges(&node.edges, world, || {
                Cause::Dispatch {
                    mutation: Arc::clone(mutation),
                    call: Arc::clone(&call),
                }
            }));
        }
        self.stats
            .add(Counter::DispatchInvalidated, changed.len() as u64);
        touched += seeds.len();
        touched += invalidate::propagate(seeds, world, &mut released.deps);
        let changed_count = changed.len();
        released.other.push(Box::new(changed));
        if let Some(method) = removed {
            // Read after the method was marked deleted: an instance made since is compiled
            // against the mark (see `crate::compile`).
            for mi in method.live_instances() {
                let instance: Describe = Arc::new(mi.clone());
                let cause = || Cause::Method {
                    mutation: Arc::clone(mutation),
                    instance: Arc::clone(&instance),
                };
                for slot in mi.live_slots() {
                    let versions = slot.invalidate_versions(world, &cause);
                    touched += versions.len();
                    touched += invalidate::propagate(versions, world, &mut released.deps);
                    let rest = invalidate::seed_from_edges(slot.edges(), world, cause);
                    touched += rest.len();
                    touched += invalidate::propagate(rest, world, &mut released.deps);
                    released.other.push(Box::new(slot));
                }
                released.other.push(Box::new(mi));
            }
        }
        self.stats.add(Counter::Invalidated, touched as u64);
        self.garbage
            .fetch_add(touched + changed_count, Ordering::Relaxed);
        released
    }
}

/// What one mutation does to one function's methods in one table.
struct Edit<L: Lattice> {
    /// The method defined, if any.
    added: Option<Method<L>>,
    /// The live method that stops being live: replaced by `added`, or deleted.
    removed: Option<Method<L>>,
}

/// A dispatch node registered with its function, and its key there.
type Registered<L> = (NodeKey<<L as Lattice>::Type>, Arc<DispatchNode<L>>);

/// A mutation worked out in full before it changes anything.
struct Prepared<L: Lattice> {
    edit: Edit<L>,
    new_lists: (Arc<MethodLists<L>>, usize),
    changed: Vec<Registered<L>>,
}

/// A pinned world: lookups through a guard are answered in its world, without locks.
///
/// The guard also protects what lookups return from reclamation, so references it hands out stay
/// valid for as long as it lives. It is not `Send`: pin on the thread that does the work.
pub struct Guard<'e, L: Lattice = DefaultLattice> {
    pub(crate) engine: &'e EngineInner<L>,
    world: World,
    slot: crate::raw::pins::PinSlot,
    pub(crate) seize: seize::LocalGuard<'e>,
    // Hits are tallied here and added to the engine's counters when the guard is dropped: even a
    // thread-sharded counter costs a thread-local lookup per hit, a fifth of a code-cache hit.
    pub(crate) dispatch_hits: Cell<u64>,
    pub(crate) code_hits: Cell<u64>,
}

impl<L: Lattice> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        self.engine.pins.unpin(self.world, self.slot);
        let stats = &self.engine.stats;
        for (counter, n) in [
            (Counter::DispatchHit, self.dispatch_hits.get()),
            (Counter::CodeHit, self.code_hits.get()),
        ] {
            if n > 0 {
                stats.add_hits(counter, n);
            }
        }
    }
}

impl<L: Lattice> fmt::Debug for Guard<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("world", &self.world).finish()
    }
}

impl<'e, L: Lattice> Guard<'e, L> {
    /// The pinned world.
    pub fn world(&self) -> World {
        self.world
    }

    /// Dispatches a call of `f` with `argtypes` through the global table.
    #[inline]
    pub fn dispatch(&self, f: Function, argtypes: &[L::Type]) -> Result<&MethodInstance<L>, Error> {
        self.dispatch_in(
            TableStack {
                engine: self.engine.id,
                id: 0,
            },
            f,
            argtypes,
        )
    }

    /// Dispatches a call of `f` with `argtypes` through `stack`, in the pinned world. A repeated
    /// call is answered from the dispatch cache: one hash-map probe, no lock, no allocation.
    #[inline]
    pub fn dispatch_in(
        &self,
        stack: TableStack,
        f: Function,
        argtypes: &[L::Type],
    ) -> Result<&MethodInstance<L>, Error> {
        self.dispatch_node(stack, f, argtypes)?.result()
    }

    /// The dispatch node answering the call in this world: from the cache, or computed.
    #[inline]
    pub(crate) fn dispatch_node(
        &self,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
    ) -> Result<&Arc<DispatchNode<L>>, Error> {
        self.engine.dispatch_node(
            &self.seize,
            self.world.get(),
            stack,
            f,
            args,
            &self.dispatch_hits,
        )
    }
}
