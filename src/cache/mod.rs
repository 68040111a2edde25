//! The code cache: compiled code per `(method instance, owner)`, each version valid over a
//! world range, and the three-phase compilation that fills it.
//!
//! A [`CompilerCache`] is one owner tag with one [`Compiler`]; the compiler's key
//! ([`Compiler::Key`]: an optimization level, a target device, ...) partitions it further.
//! Different caches, and different keys of one cache, never share entries.
//!
//! Each `(method instance, key)` has a *slot* ([`slot`]). The slot's versions — at most one valid
//! in any world — are published as an immutable list in a lock-free hash map (papaya), replaced
//! whole whenever a version is added or dropped. A hit ([`lookup`]) is therefore one hash-map
//! probe, a scan of the (almost always one-element) list, and two atomic loads: no lock, no
//! allocation, no reference count touched. On a miss ([`miss`]) the missing phases run
//! ([`phases`]): `infer` records dependencies through its [`InferCx`] and creates the code
//! instance; `codegen` produces a serializable artifact; `link` turns it into a session-local
//! value. Each phase runs at most once per code instance: concurrent callers share one run
//! through the slot's job (see `crate::raw::job`), and a phase that fails or panics leaves nothing
//! behind (but for an `infer` that others depended on while it ran: see [`phases`]).
//! [`maintenance`] drops what reclamation proves no world can see.
//!
//! # Registering against concurrent invalidation
//!
//! A job that compiles a new version first makes its code instance, the slot's *pending* version,
//! valid from its world with an open end. Each dependency `infer` records is registered at once:
//! the instance joins the dependency's backedges, reading the dependency's current upper bound
//! under the same lock, and lowers its own to it. A mutation lowers a dependency's bound *before*
//! it walks the dependency's dependents under that lock (see `crate::raw::edges`), so either the
//! walk finds the running instance or the instance reads the lowered bound: a result compiled
//! against a dependency invalidated at `w'` is never valid in `w'` or later. Because the running
//! instance is in the graph from the start, whatever depends on it before it is published (a
//! recursive caller told [`Callee::InProgress`], code that called [`InferCx::depend_on`] for it)
//! is reached by the same walk, before the mutation's world is published. When the instance closes
//! itself instead (it read a bound already lowered, or its method was deleted meanwhile), it walks
//! its own dependents under the engine's writer lock. Publishing then only fixes where its range
//! starts, keeps at most one version valid per world, and lists it.

mod code_instance;
mod compiler;
mod lookup;
mod maintenance;
mod miss;
mod phases;
mod slot;
pub(crate) mod tier;

#[cfg(feature = "persist")]
pub(crate) use code_instance::CiData;
pub use code_instance::CodeInstance;
pub use compiler::{Callee, Compiler, InferCx, PhaseCx, STACK_RED_ZONE, STACK_SEGMENT};

use std::fmt;

use slot::{SlotEntry, SlotKey, SlotQuery};

use crate::engine::{check_name, CacheMaintenance, Engine};
use crate::error::Error;
use crate::methods::{MethodInstance, TableStack};
use crate::sync::{shared_prehashed_map, Arc, Mutex, PrehashedMap, Weak};
use crate::types::{DefaultLattice, Lattice};

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
    pub(crate) slots: PrehashedMap<SlotKey<C::Key>, SlotEntry<C, L>>,
    /// A tier below this cache that misses consult (see [`tier`]), if one is attached.
    pub(crate) tier: Option<Box<dyn tier::Tier<C, L>>>,
    /// Compilations that failed while others depended on them, kept for those dependents' sake
    /// (see `phases`) until reclamation finds them no longer needed.
    pub(crate) failed: Mutex<Vec<Arc<code_instance::CiData<C, L>>>>,
}

impl<C: Compiler<L>, L: Lattice> CompilerCache<C, L> {
    /// A cache owned by `tag`, compiling with `compiler`, dispatching through the global table.
    /// The tag follows the rule of every name (non-empty, at most 1024 bytes, no whitespace,
    /// control characters or `{}(),:`; [`Error::InvalidName`] otherwise).
    pub fn new(engine: &Engine<L>, tag: &str, compiler: C) -> Result<Self, Error> {
        CompilerCache::with_stack(engine, tag, engine.global_stack(), compiler)
    }

    /// A cache whose compilations dispatch through `stack` (for example `[overlay, global]`),
    /// which must be one of the engine's stacks ([`Error::UnknownTable`] otherwise).
    pub fn with_stack(
        engine: &Engine<L>,
        tag: &str,
        stack: TableStack,
        compiler: C,
    ) -> Result<Self, Error> {
        CompilerCache::with_tier(engine, tag, stack, compiler, None)
    }

    /// [`CompilerCache::with_stack`], with a tier below the cache.
    pub(crate) fn with_tier(
        engine: &Engine<L>,
        tag: &str,
        stack: TableStack,
        compiler: C,
        tier: Option<Box<dyn tier::Tier<C, L>>>,
    ) -> Result<Self, Error> {
        check_name(tag)?;
        engine.check_stack(stack)?;
        let inner = Arc::new(CacheInner {
            engine: engine.clone(),
            tag: tag.into(),
            compiler,
            stack,
            slots: shared_prehashed_map(engine.collector()),
            tier,
            failed: Mutex::new(Vec::new()),
        });
        let weak: Weak<dyn CacheMaintenance> =
            Arc::downgrade(&(Arc::clone(&inner) as Arc<dyn CacheMaintenance>));
        engine.register_cache(weak);
        Ok(CompilerCache { inner })
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
        let guard = self.inner.engine.enter();
        match self
            .inner
            .slots
            .get(&SlotQuery::new(mi.address(), key), &guard)
        {
            Some(entry) => {
                let mut versions: Vec<_> = entry.versions().cloned().map(CodeInstance).collect();
                versions.reverse();
                versions
            }
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
