//! # compiler-caching
//!
//! A lock-free cache of compiled code for multithreaded JIT compilers and language runtimes,
//! with multiple dispatch, world ages and automatic invalidation through backedges — the model of
//! Julia's compiler caches (and of the CompilerCaching.jl package), native to Rust.
//!
//! ## The model
//!
//! - An [`Engine`] is one universe: a type [`Lattice`], [`Function`]s, a global [`MethodTable`]
//!   and any number of overlays, code caches, and a **world counter**. Every method definition,
//!   replacement or deletion advances the world by one, atomically: a reader sees all of a
//!   mutation or none of it.
//! - Readers [`pin`](Engine::pin) a world and get a [`Guard`]. Lookups through it are answered
//!   *in that world*: older worlds answer as the engine stood then.
//! - **Dispatch** ([`Guard::dispatch_in`]) walks a [`TableStack`] such as `[overlay, global]`; the
//!   first table with an applicable live method decides, and its most specific applicable method
//!   wins. The result is an interned [`MethodInstance`]. A JIT can intern a call site's
//!   argument types once ([`Engine::signature`]) and dispatch with the [`Signature`]
//!   ([`Guard::dispatch_signature`]), skipping the types' `Hash` and `Eq` on a cached answer.
//! - A [`CompilerCache`] runs a [`Compiler`]'s three phases — `infer`, `codegen`, `link` — at most
//!   once per [`CodeInstance`], keyed by method instance and owner key, and deduplicates
//!   concurrent compilations of the same key.
//! - While inferring, a compiler records what its result depends on through [`InferCx`]:
//!   dispatch results, and other method instances (also of a foreign IR the engine cannot read).
//!   When a mutation changes one of those, every dependent's validity is closed at the new world,
//!   transitively, and the next call recompiles. Nothing else is touched.
//!
//! The rules are stated one by one in [`semantics`], including the cases that surprise (why a
//! method no other method beats can still lose, what a cached answer depends on, what happens
//! when user code panics inside the engine).
//!
//! ## Example
//!
//! ```
//! use compiler_caching::{Compiler, CompilerCache, Engine, InferCx, PhaseCx, Ty};
//!
//! /// A toy compiler: a method's source is a number; "linking" adds the callee's result.
//! struct Toy;
//!
//! impl Compiler for Toy {
//!     type Key = u8; // an optimization level, say
//!     type Inferred = i64;
//!     type Artifact = i64;
//!     type Linked = i64;
//!     type Error = String;
//!
//!     fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
//!         let own = *cx.instance().method().source::<i64>().ok_or("not a number")?;
//!         // `f` calls `g` with the same argument types: dispatch through the context so the
//!         // answer is recorded as a dependency.
//!         let f = cx.engine().function("f").unwrap();
//!         if cx.instance().method().function() == f {
//!             let g = cx.engine().function("g").unwrap();
//!             let callee = cx.dispatch(g, cx.instance().argtypes()).map_err(|e| e.to_string())?;
//!             if let compiler_caching::Callee::Ready(ci) = cx.compile(&callee).map_err(|e| e.to_string())? {
//!                 return Ok(own + ci.linked().copied().unwrap_or(0));
//!             }
//!         }
//!         Ok(own)
//!     }
//!     fn codegen(&self, _: &PhaseCx<'_, Self>, inferred: &i64) -> Result<i64, String> { Ok(*inferred) }
//!     fn link(&self, _: &PhaseCx<'_, Self>, artifact: &i64) -> Result<i64, String> { Ok(*artifact) }
//! }
//!
//! let engine = Engine::new();
//! let int = engine.lattice().declare_concrete("Int", &Ty::any()).unwrap();
//! let f = engine.declare_function("f").unwrap();
//! let g = engine.declare_function("g").unwrap();
//! engine.add_method(f, &[int.clone()], 100_i64).unwrap();
//! engine.add_method(g, &[Ty::any()], 1_i64).unwrap();
//!
//! let cache = CompilerCache::new(&engine, "Toy", Toy).unwrap();
//! {
//!     let guard = engine.pin();
//!     let mi = guard.dispatch(f, &[int.clone()]).unwrap();
//!     assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 101);
//!     assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 101); // a hit: no phase runs
//! }
//! assert_eq!(engine.stats().infer_runs, 2);
//!
//! // A more specific method of `g` changes what `f(Int)` calls: `f` is invalidated.
//! engine.add_method(g, &[int.clone()], 2_i64).unwrap();
//! let guard = engine.pin();
//! let mi = guard.dispatch(f, &[int]).unwrap();
//! assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 102);
//! assert_eq!(engine.stats().infer_runs, 4);
//! ```
//!
//! ## The seed API, in Rust
//!
//! | CompilerCaching.jl | here |
//! |---|---|
//! | `CompilerCache(tag)` | [`CompilerCache::new`] |
//! | `CompilerCache(tag, mt)` | [`CompilerCache::with_stack`] with [`Engine::stack`] |
//! | `CompilerCache{K}(tag)` | a [`Compiler`] whose [`Compiler::Key`] is `K` |
//! | `add_method(cache, f, arg_types, source)` | [`Engine::add_method`] / [`Engine::add_method_to`] |
//! | `method_instance(f, tt; world, method_table)` | [`Guard::dispatch_in`] / [`Engine::method_instance`] |
//! | `cached_compilation(cache, mi, world, keys; infer, codegen, link)` | [`CompilerCache::compile`] |
//! | `cache!(cache, mi; world, deps)` | [`InferCx::dispatch`], [`InferCx::depend_on`], [`InferCx::compile`] |
//! | `Base.get_world_counter()` | [`Engine::current_world`] |
//!
//! ## Layout
//!
//! Every public type is re-exported here, at the crate root; the engine's modules are private.
//! The persistent artifact tier is also the public module [`persist`] (feature `persist`, on by
//! default), whose store modules are public. The modules are layered, each using only those
//! below it (`.ci/layers.py` checks it):
//!
//! | layer | module | holds |
//! |---|---|---|
//! | 1 | `sync`, `drop_chain` | the synchronization primitives every other module takes (loom's under `--cfg loom`); dropping long chains without recursion |
//! | 2 | `world` | world ages and the world counter |
//! | 3 | `error`, `names`, `stats` | typed errors; the rule every name follows; counters |
//! | 4 | `raw` | the small concurrent protocols the loom models check: validity, backedges, compile jobs, slots, pins |
//! | 5 | `types` | the [`Lattice`] trait, the [`DefaultLattice`], specificity |
//! | 6 | `graph` | the dependency graph: an arena of code-instance nodes with their backedges, causes and why-chains, the invalidation walk |
//! | 7 | `methods` | functions, methods, method tables and method instances |
//! | 8 | `dispatch` | the dispatch algorithm, the dispatch caches, each function's registry, interned signatures |
//! | 9 | `engine` | the [`Engine`]: names, mutations, pinning and the [`Guard`], reclamation |
//! | 10 | `cache` | the code cache: [`CompilerCache`], [`CodeInstance`], the [`Compiler`] phases |
//! | 11 | `persist` | the persistent tier: records, identities and revalidation on load; artifact stores: the `ArtifactStore` trait, an in-memory store, the embedded redb store, a Redis store a fleet shares (feature `redis`), the layered store |
//!
//! [`semantics`] states the rules; `docs/semantics.md` is the same text.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

#[doc = include_str!("../docs/semantics.md")]
pub mod semantics {}

#[cfg(not(loom))]
mod drop_chain;
mod sync;
mod world;

#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod names;
#[cfg(not(loom))]
mod stats;

// Its items are `pub` for the loom models, which see the module only under `cfg(loom)`.
#[cfg(not(loom))]
#[allow(unreachable_pub)]
mod raw;
/// The concurrent protocols, public only to the loom models in `loom-tests/` (built with
/// `--cfg loom`); not part of the crate's API.
#[cfg(loom)]
pub mod raw;

#[cfg(not(loom))]
mod cache;
#[cfg(not(loom))]
mod dispatch;
#[cfg(not(loom))]
mod engine;
#[cfg(not(loom))]
mod graph;
#[cfg(not(loom))]
mod methods;
#[cfg(all(feature = "persist", not(loom)))]
pub mod persist;
#[cfg(not(loom))]
mod types;

pub use crate::world::{World, WorldRange};

/// The world counter, public only to the loom models.
#[cfg(loom)]
pub use crate::world::WorldCounter;

#[cfg(not(loom))]
pub use crate::{
    cache::{
        Callee, CodeInstance, Compiler, CompilerCache, InferCx, PhaseCx, STACK_RED_ZONE,
        STACK_SEGMENT,
    },
    dispatch::Signature,
    engine::{Census, Engine, Guard},
    error::{CompileError, Error, Phase, TypeError},
    graph::Invalidation,
    methods::{Function, Method, MethodInstance, MethodTable, TableStack},
    stats::StatsSnapshot,
    types::{
        sig_disjoint, sig_equal, sig_subtype, DefaultLattice, Lattice, Ty, TyKind, TypeDecl,
        TypeDeclKind, MAX_TYPE_DEPTH, MAX_UNION_SPLIT,
    },
};

#[cfg(all(feature = "persist", not(loom)))]
pub use crate::persist::{
    record_verifier, ArtifactStore, Fingerprint, LayeredOptions, LayeredStore, MemoryStore,
    PersistentCompiler, PersistentLattice, QueueStats, RecordKey, RedbOptions, RedbStore,
    StoreError, StoreStats, TierStats, TypeName, UnavailableStore, Verifier, WriteMode,
    RECORD_FORMAT_VERSION,
};
#[cfg(all(feature = "redis", not(loom)))]
pub use crate::persist::{RedisHealth, RedisOptions, RedisStore};
