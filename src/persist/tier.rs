//! The persistent tier a cache consults on a miss: load (with revalidation) before `infer`,
//! store after `codegen`; and the constructors that attach a store to a cache.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::compiler::PersistentCompiler;
use super::identity::{Fingerprint, Identifier};
use super::lattice::PersistentLattice;
use super::record::{self, Answer, Body, Dep, Unreadable};
use super::revalidate::{revalidate, Changed};
use super::store::{ArtifactStore, StoreError};
use super::writer::Writer;
use crate::cache::tier::{Loaded, Tier, Trail};
use crate::cache::{CacheInner, CiData, CompilerCache, InferCx};
use crate::engine::Engine;
use crate::error::Error;
use crate::methods::{MethodInstance, TableStack};
use crate::stats::Counter;
use crate::sync::Arc;

/// Why a load did not happen.
enum Missed {
    /// The instance has no stable identity (its source cannot be fingerprinted, say).
    NotPersistable,
    /// No record.
    Absent,
    /// The store failed.
    Store,
    Corrupt,
    Format,
    CompilerVersion,
    Identity,
    /// What changed: reported by `tracing`, when it is on.
    Dependencies(#[cfg_attr(not(feature = "tracing"), allow(dead_code))] Changed),
}

pub(crate) struct PersistTier<C, L: PersistentLattice> {
    store: Arc<dyn ArtifactStore>,
    writer: Writer,
    ids: Identifier<L>,
    _types: PhantomData<fn() -> (C, L)>,
}

impl<C: PersistentCompiler<L>, L: PersistentLattice> PersistTier<C, L> {
    fn new(engine: &Engine<L>, store: Arc<dyn ArtifactStore>) -> Self {
        let counting = engine.clone();
        PersistTier {
            writer: Writer::new(
                Arc::clone(&store),
                Box::new(move |records| {
                    counting.counters().add(Counter::PersistStoreError, records);
                }),
            ),
            store,
            ids: Identifier::new(),
            _types: PhantomData,
        }
    }

    fn try_load(
        &self,
        cache: &CacheInner<C, L>,
        cx: &mut InferCx<'_, C, L>,
    ) -> Result<Loaded<C, L>, Missed> {
        let identity = self
            .ids
            .identity(cache, cx.instance(), cx.key())
            .ok_or(Missed::NotPersistable)?;
        let key = identity.record_key().ok_or(Missed::NotPersistable)?;
        let bytes = match self.store.get(&key) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(Missed::Absent),
            Err(_) => return Err(Missed::Store),
        };
        let (body, digest) = record::decode(&bytes).map_err(|e| match e {
            Unreadable::Corrupt => Missed::Corrupt,
            Unreadable::Format => Missed::Format,
        })?;
        if body.identity != identity {
            return Err(
                if body.identity.compiler_version != identity.compiler_version {
                    Missed::CompilerVersion
                } else {
                    Missed::Identity
                },
            );
        }
        let inferred = postcard::from_bytes(&body.inferred).map_err(|_| Missed::Corrupt)?;
        let artifact = postcard::from_bytes(&body.artifact).map_err(|_| Missed::Corrupt)?;
        revalidate(&self.ids, cache, cx, &body.deps).map_err(Missed::Dependencies)?;
        Ok(Loaded {
            inferred,
            artifact,
            digest: digest.0,
        })
    }

    /// The record of what `infer` recorded, or `None` if something in it has no stable identity.
    fn body(
        &self,
        cache: &CacheInner<C, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
        inferred: &C::Inferred,
        artifact: &C::Artifact,
        trail: Vec<Trail<C, L>>,
    ) -> Option<Body> {
        let engine = &cache.engine;
        let compiler = &cache.compiler;
        let identity = self.ids.identity(cache, mi, key)?;
        let mut deps = Vec::with_capacity(trail.len());
        for step in trail {
            deps.push(match step {
                Trail::Dispatch { f, args, answer } => Dep::Dispatch {
                    function: engine.function_name(f).ok()?.to_string(),
                    argtypes: self.ids.types(engine.lattice(), &args)?,
                    answer: match answer {
                        Ok(mi) => Answer::Method(
                            (*self.ids.method(compiler, engine, mi.method())?).clone(),
                        ),
                        Err(e) => Answer::Error(e.to_string()),
                    },
                },
                Trail::DependOn(mi) => Dep::DependOn(self.ids.instance(compiler, engine, &mi)?),
                Trail::Compiled { instance, callee } => Dep::Compiled {
                    instance: self.ids.instance(compiler, engine, &instance)?,
                    callee: match callee {
                        // A ready callee that was not stored cannot be pinned: neither can this.
                        Some(ci) => Some(Fingerprint(*ci.digest.get()?)),
                        None => None,
                    },
                },
            });
        }
        Some(Body {
            identity,
            deps,
            inferred: postcard::to_allocvec(inferred).ok()?,
            artifact: postcard::to_allocvec(artifact).ok()?,
        })
    }
}

impl<C: PersistentCompiler<L>, L: PersistentLattice> PersistTier<C, L> {
    /// Waits until every record queued so far is written.
    fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush()
    }
}

impl<C: PersistentCompiler<L>, L: PersistentLattice> Tier<C, L> for PersistTier<C, L> {
    fn load(&self, cache: &CacheInner<C, L>, cx: &mut InferCx<'_, C, L>) -> Option<Loaded<C, L>> {
        let counters = cache.engine.counters();
        // User code runs in here (fingerprints, serde, the lattice, nested compilations): a
        // panic refuses the record and is counted, and the phases run as usual.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let loaded = self.try_load(cache, cx)?;
            cache.compiler.loaded(cx.instance(), cx.key());
            Ok(loaded)
        }));
        let missed = match outcome {
            Ok(Ok(loaded)) => {
                counters.add(Counter::PersistLoad, 1);
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    target: "compiler_caching::persist",
                    instance = %cx.instance(),
                    cache = %cache.tag,
                    "loaded from the store"
                );
                return Some(loaded);
            }
            Ok(Err(missed)) => missed,
            Err(_) => {
                counters.add(Counter::UserCodePanic, 1);
                return None;
            }
        };
        let counter = match &missed {
            Missed::NotPersistable => None,
            Missed::Absent => Some(Counter::PersistMiss),
            Missed::Store => Some(Counter::PersistStoreError),
            Missed::Corrupt => Some(Counter::PersistRefusedCorrupt),
            Missed::Format => Some(Counter::PersistRefusedFormat),
            Missed::CompilerVersion => Some(Counter::PersistRefusedCompilerVersion),
            Missed::Identity => Some(Counter::PersistRefusedIdentity),
            Missed::Dependencies(_) => Some(Counter::PersistRefusedDependencies),
        };
        if let Some(counter) = counter {
            counters.add(counter, 1);
        }
        #[cfg(feature = "tracing")]
        if let Missed::Dependencies(why) = &missed {
            tracing::debug!(
                target: "compiler_caching::persist",
                instance = %cx.instance(),
                cache = %cache.tag,
                "stored record refused: {why}"
            );
        }
        None
    }

    fn store(
        &self,
        cache: &CacheInner<C, L>,
        ci: &CiData<C, L>,
        artifact: &C::Artifact,
        trail: Vec<Trail<C, L>>,
    ) -> Option<[u8; 32]> {
        let counters = cache.engine.counters();
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            let body = self.body(cache, &ci.mi, &ci.key, ci.inferred(), artifact, trail)?;
            let key = body.identity.record_key()?;
            let (bytes, digest) = record::encode(&body)?;
            Some((key, bytes, digest))
        }));
        match encoded {
            Ok(Some((key, bytes, digest))) => {
                self.writer.put(key, bytes);
                counters.add(Counter::PersistStore, 1);
                Some(digest.0)
            }
            Ok(None) => {
                counters.add(Counter::PersistUnstorable, 1);
                None
            }
            Err(_) => {
                counters.add(Counter::UserCodePanic, 1);
                None
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<C: PersistentCompiler<L>, L: PersistentLattice> CompilerCache<C, L> {
    /// A cache like [`CompilerCache::new`] backed by a persistent `store`: a miss first looks for
    /// a stored result of the same identity and, if every dependency it recorded still resolves
    /// the same way in the current world, installs it without running `infer` or `codegen`
    /// (only `link`); otherwise the phases run as usual and the result is stored, replacing the
    /// record. Stores are written behind, in batches, by a thread of the cache's own; see
    /// [`CompilerCache::flush_store`].
    ///
    /// Several caches (of one engine or of several) may share a store: records are keyed by the
    /// cache's tag, stack, compiler version and owner key among the rest.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use compiler_caching::{
    ///     Compiler, CompilerCache, Engine, Fingerprint, InferCx, Method, MemoryStore,
    ///     PersistentCompiler, PhaseCx, Ty,
    /// };
    ///
    /// struct Doubler;
    /// impl Compiler for Doubler {
    ///     type Key = ();
    ///     type Inferred = i64;
    ///     type Artifact = i64;
    ///     type Linked = i64;
    ///     type Error = String;
    ///     fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
    ///         Ok(*cx.instance().method().source::<i64>().ok_or("bad source")? * 2)
    ///     }
    ///     fn codegen(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> { Ok(*v) }
    ///     fn link(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> { Ok(*v) }
    /// }
    /// impl PersistentCompiler for Doubler {
    ///     fn version(&self) -> &str { "doubler 1" }
    ///     fn source_fingerprint(&self, method: &Method) -> Option<Fingerprint> {
    ///         Some(Fingerprint::of(&method.source::<i64>()?.to_le_bytes()))
    ///     }
    /// }
    ///
    /// // One "process": compile, and store.
    /// let store = Arc::new(MemoryStore::new());
    /// let run = |store: Arc<MemoryStore>| {
    ///     let engine = Engine::new();
    ///     let int = engine.lattice().declare_concrete("Int", &Ty::any()).unwrap();
    ///     let f = engine.declare_function("f").unwrap();
    ///     engine.add_method(f, &[int.clone()], 21_i64).unwrap();
    ///     let cache = CompilerCache::with_store(&engine, "Doubler", Doubler, store).unwrap();
    ///     let guard = engine.pin();
    ///     let mi = guard.dispatch(f, &[int]).unwrap();
    ///     assert_eq!(*cache.compile(&guard, mi, &()).unwrap(), 42);
    ///     cache.flush_store().unwrap();
    ///     engine.stats()
    /// };
    /// let cold = run(Arc::clone(&store));
    /// assert_eq!((cold.infer_runs, cold.persist_loads), (1, 0));
    /// // A restarted "process": nothing is inferred or generated again, only linked.
    /// let warm = run(store);
    /// assert_eq!((warm.infer_runs, warm.codegen_runs, warm.link_runs), (0, 0, 1));
    /// assert_eq!(warm.persist_loads, 1);
    /// ```
    pub fn with_store(
        engine: &Engine<L>,
        tag: &str,
        compiler: C,
        store: Arc<dyn ArtifactStore>,
    ) -> Result<Self, Error> {
        CompilerCache::with_stack_and_store(engine, tag, engine.global_stack(), compiler, store)
    }

    /// [`CompilerCache::with_store`] for a cache whose compilations dispatch through `stack`
    /// (see [`CompilerCache::with_stack`]).
    pub fn with_stack_and_store(
        engine: &Engine<L>,
        tag: &str,
        stack: TableStack,
        compiler: C,
        store: Arc<dyn ArtifactStore>,
    ) -> Result<Self, Error> {
        let tier = PersistTier::<C, L>::new(engine, store);
        CompilerCache::with_tier(engine, tag, stack, compiler, Some(Box::new(tier)))
    }
}

impl<C: PersistentCompiler<L>, L: PersistentLattice> CompilerCache<C, L> {
    /// Waits until every record this cache has queued for its store so far is written, and
    /// returns the first store error since the last flush, if any (each failed record is also
    /// counted in [`StatsSnapshot::persist_store_errors`](crate::StatsSnapshot::persist_store_errors)).
    /// Dropping the cache flushes too. Without a store, does nothing.
    pub fn flush_store(&self) -> Result<(), StoreError> {
        match &self.inner.tier {
            Some(tier) => match tier.as_any().downcast_ref::<PersistTier<C, L>>() {
                Some(tier) => tier.flush(),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}
