//! Three-phase cached compilation: `infer`, `codegen`, `link`.
//!
//! [`CompilerCache::compile`] returns the linked result for a method instance in the guard's
//! world. On a hit it runs nothing and takes no lock. On a miss it runs the missing phases: `infer`
//! records dependencies through its [`InferCx`] and creates the code instance; `codegen` produces a
//! serializable artifact; `link` turns it into a session-local value. Each result is kept on the
//! code instance, and each phase runs at most once per code instance.
//!
//! Concurrent callers for the same `(method instance, key)` share one execution through the slot's
//! job (see [`crate::raw::job`]). A phase that returns an error or panics leaves nothing behind:
//! every waiter receives the failure, and a later call runs the phase again.
//!
//! # Publishing against concurrent invalidation
//!
//! After `infer` returns, the new code instance is registered as a dependent of each dependency,
//! reading each dependency's current upper bound under that dependency's lock, and lowers its own
//! upper bound to the least of them; then, under its slot's lock, it reads its own method's
//! deletion world and is published. A mutation lowers a dependency's bound *before* it walks the
//! dependency's dependents under the same lock (see [`crate::raw::edges`]), so either the walk
//! finds the new instance or the instance reads the lowered bound: a result compiled against a
//! dependency invalidated at `w'` is never published valid in `w'` or later. If the instance had to
//! be published already closed, whatever registered on its slot meanwhile (a recursive caller) is
//! invalidated with it.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use crate::cache::{
    valid_in, CacheInner, CiData, CodeInstance, CompilerCache, Dep, Slot, SlotEntry, SlotKey,
    SlotQuery, Version,
};
use crate::engine::{Engine, Guard};
use crate::error::{CompileError, Error, Phase};
use crate::instance::MethodInstance;
use crate::invalidate::{self, Cause, CiCore, DepRef, SlotNode};
use crate::raw::job::{Job, Waited};
use crate::raw::slot::Begin;
use crate::stats::Counter;
use crate::table::Function;
use crate::types::Lattice;
use crate::world::{World, OPEN};
use crate::DefaultLattice;

/// A compiler's three phases and its types. See the crate docs for a complete example.
pub trait Compiler<L: Lattice = DefaultLattice>: Send + Sync + Sized + 'static {
    /// The owner key that partitions the cache ("sharding"): an optimization level, a target
    /// device, ... Use `()` for none.
    type Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static;
    /// What `infer` produces (typed IR, a return type, ...).
    type Inferred: Send + Sync + 'static;
    /// What `codegen` produces: a serializable artifact (object bytes, IR text, ...).
    type Artifact: Send + Sync + 'static;
    /// What `link` produces: a session-local value (a function pointer, a handle, ...).
    type Linked: Send + Sync + 'static;
    /// The phases' error type.
    type Error: fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// Infers `cx.instance()`, recording through `cx` what the result depends on.
    fn infer(&self, cx: &mut InferCx<'_, Self, L>) -> Result<Self::Inferred, Self::Error>;

    /// Generates a serializable artifact from the inferred result.
    fn codegen(
        &self,
        cx: &PhaseCx<'_, Self, L>,
        inferred: &Self::Inferred,
    ) -> Result<Self::Artifact, Self::Error>;

    /// Turns the artifact into a session-local value.
    fn link(
        &self,
        cx: &PhaseCx<'_, Self, L>,
        artifact: &Self::Artifact,
    ) -> Result<Self::Linked, Self::Error>;
}

pub(crate) type JobOutcome<C, L> = Result<(), CompileError<<C as Compiler<L>>::Error>>;

/// What `codegen` and `link` are told.
pub struct PhaseCx<'a, C: Compiler<L>, L: Lattice = DefaultLattice> {
    cache: &'a CacheInner<C, L>,
    ci: &'a CiData<C, L>,
    world: World,
}

impl<C: Compiler<L>, L: Lattice> PhaseCx<'_, C, L> {
    /// The method instance being compiled.
    pub fn instance(&self) -> &MethodInstance<L> {
        &self.ci.mi
    }

    /// The owner key.
    pub fn key(&self) -> &C::Key {
        &self.ci.key
    }

    /// The world the compilation runs in.
    pub fn world(&self) -> World {
        self.world
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<L> {
        &self.cache.engine
    }

    /// The code instance being completed (its inferred result is ready).
    pub fn code_instance(&self) -> &C::Inferred {
        &self.ci.inferred
    }
}

/// What `infer` is told, and where it records dependencies (the seed API's
/// `cache!(cache, mi; world, deps)`).
pub struct InferCx<'a, C: Compiler<L>, L: Lattice = DefaultLattice> {
    cache: &'a CacheInner<C, L>,
    mi: &'a MethodInstance<L>,
    key: &'a C::Key,
    world: World,
    deps: Vec<Dep<L>>,
    seen: HashSet<usize>,
}

/// The result of compiling a callee from inside `infer`.
pub enum Callee<C: Compiler<L>, L: Lattice = DefaultLattice> {
    /// The callee's code instance, with every phase done.
    Ready(CodeInstance<C, L>),
    /// The callee is being compiled further up the chain of compilations waiting on this one
    /// (direct or mutual recursion, on this thread or across threads): its result is not
    /// available yet. The dependency is recorded; emit code that does not need the result (for
    /// example an indirect call).
    InProgress,
}

impl<C: Compiler<L>, L: Lattice> fmt::Debug for Callee<C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Callee::Ready(ci) => f.debug_tuple("Ready").field(ci).finish(),
            Callee::InProgress => f.write_str("InProgress"),
        }
    }
}

impl<'a, C: Compiler<L>, L: Lattice> InferCx<'a, C, L> {
    /// The method instance being inferred. The reference lives as long as the context, not only
    /// as long as this borrow, so its argument types can be passed to [`InferCx::dispatch`].
    pub fn instance(&self) -> &'a MethodInstance<L> {
        self.mi
    }

    /// The owner key.
    pub fn key(&self) -> &C::Key {
        self.key
    }

    /// The world the compilation runs in.
    pub fn world(&self) -> World {
        self.world
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<L> {
        &self.cache.engine
    }

    /// Dispatches a call of `f` with `argtypes` through the cache's table stack, in the
    /// compilation's world, and records the result as a dependency: if a later mutation changes
    /// this answer — including from "no method" to a method, or from a global method to a new
    /// overlay one — the code instance being compiled is invalidated.
    pub fn dispatch(
        &mut self,
        f: Function,
        argtypes: &[L::Type],
    ) -> Result<MethodInstance<L>, Error> {
        let engine = &self.cache.engine.inner;
        let seize = engine.collector.enter();
        let hits = std::cell::Cell::new(0);
        let node = engine.dispatch_node(
            &seize,
            self.world.get(),
            self.cache.stack,
            f,
            argtypes,
            &hits,
        )?;
        if hits.get() > 0 {
            engine.stats.add(Counter::DispatchHit, 1);
        }
        let node = Arc::clone(node);
        let result = node.result().cloned();
        if self.seen.insert(Arc::as_ptr(&node) as *const () as usize) {
            self.deps.push(Dep::Dispatch(node));
        }
        result
    }

    /// Records that the result depends on `mi` (in this cache, with this key): when what is
    /// compiled for `mi` is invalidated, or `mi`'s method is replaced or deleted, so is this.
    /// Nothing is compiled. Use it for callees of a foreign IR the engine cannot read.
    ///
    /// `mi` must be an instance of this engine whose method is live in the compilation's world
    /// (one obtained by dispatching in that world is): a dependency on anything else could never
    /// hold in this world. Otherwise nothing is recorded and the error says why
    /// ([`Error::MethodNotLive`] for a method replaced, deleted or defined later,
    /// [`Error::UnknownFunction`] for an instance of another engine).
    pub fn depend_on(&mut self, mi: &MethodInstance<L>) -> Result<(), Error> {
        self.cache.check_instance(mi, self.world)?;
        let seize = self.cache.engine.inner.collector.enter();
        let world = self.world.get();
        let (slot, version) = self
            .cache
            .hold(mi, self.key, &seize, |vs| valid_in(vs, world));
        self.record_slot(slot, version);
        Ok(())
    }

    /// Compiles `mi` (all three phases, in this cache with this key, in this world) and records
    /// the dependency. Recursion is detected instead of deadlocking: see [`Callee::InProgress`].
    pub fn compile(
        &mut self,
        mi: &MethodInstance<L>,
    ) -> Result<Callee<C, L>, CompileError<C::Error>> {
        let seize = self.cache.engine.inner.collector.enter();
        match self.cache.compile_slow(&seize, self.world, mi, self.key)? {
            Compiled::Ready(ci) => {
                let (slot, _) = self.cache.hold(mi, self.key, &seize, |_| None);
                self.record_slot(slot, Some(Arc::clone(&ci)));
                Ok(Callee::Ready(CodeInstance(ci)))
            }
            Compiled::Cycle => {
                let (slot, _) = self.cache.hold(mi, self.key, &seize, |_| None);
                self.record_slot(slot, None);
                Ok(Callee::InProgress)
            }
        }
    }

    /// Records a dependency on `slot`, on which the caller took a hold.
    fn record_slot(&mut self, slot: Arc<Slot<C, L>>, version: Option<Arc<CiData<C, L>>>) {
        let key = match &version {
            Some(v) => Arc::as_ptr(v) as *const () as usize,
            None => Arc::as_ptr(&slot) as *const () as usize,
        };
        if self.seen.insert(key) {
            self.deps.push(Dep::Slot {
                slot: slot as Arc<dyn SlotNode>,
                version: version.map(|v| v as DepRef),
                held: true,
            });
        } else {
            slot.cell.release();
        }
    }
}

/// A slot a dependency holds, with the version it found there.
pub(crate) type Held<C, L> = (Arc<Slot<C, L>>, Option<Version<C, L>>);

pub(crate) enum Compiled<C: Compiler<L>, L: Lattice> {
    Ready(Arc<CiData<C, L>>),
    /// The instance is being compiled further up this chain of compilations.
    Cycle,
}

/// Completes a job even if the code between its creation and its completion unwinds, so that no
/// waiter is ever stranded.
struct JobGuard<'a, C: Compiler<L>, L: Lattice> {
    slot: &'a Slot<C, L>,
    job: Arc<Job<JobOutcome<C, L>>>,
    armed: bool,
}

impl<C: Compiler<L>, L: Lattice> JobGuard<'_, C, L> {
    fn finish(mut self, outcome: JobOutcome<C, L>) {
        self.armed = false;
        self.slot.cell.finish(&self.job, outcome);
    }
}

impl<C: Compiler<L>, L: Lattice> Drop for JobGuard<'_, C, L> {
    fn drop(&mut self) {
        if self.armed {
            self.slot.cell.finish(
                &self.job,
                Err(CompileError::Panicked {
                    phase: Phase::Infer,
                    instance: self.slot.mi.to_string(),
                    message: "compilation unwound".into(),
                }),
            );
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).into()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str().into()
    } else {
        "non-string panic payload".into()
    }
}

impl<C: Compiler<L>, L: Lattice> CompilerCache<C, L> {
    /// The seed API's `cached_compilation(cache, mi, world, key)`: the linked result of `mi` for
    /// `key` in the guard's world, compiling what is missing.
    ///
    /// A hit (a code instance valid in the world with a linked result) runs no phase, takes no
    /// lock and allocates nothing. The result borrows from the guard.
    #[inline(always)]
    pub fn compile<'g>(
        &'g self,
        guard: &'g Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<&'g C::Linked, CompileError<C::Error>> {
        let inner = &*self.inner;
        if let Some(linked) = inner.hit(&guard.seize, guard.world().get(), mi, key) {
            guard.code_hits.set(guard.code_hits.get() + 1);
            return Ok(linked);
        }
        self.compile_miss(guard, mi, key)
    }

    // Kept out of line so that the hit above inlines into the caller as a probe and a few loads.
    #[cold]
    #[inline(never)]
    fn compile_miss<'g>(
        &'g self,
        guard: &'g Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<&'g C::Linked, CompileError<C::Error>> {
        let world = guard.world().get();
        let inner = &*self.inner;
        inner.engine.inner.stats.add(Counter::CodeMiss, 1);
        loop {
            match inner.compile_slow(&guard.seize, guard.world(), mi, key)? {
                Compiled::Ready(_) => {
                    if let Some(linked) = inner.hit(&guard.seize, world, mi, key) {
                        return Ok(linked);
                    }
                    // The entry was republished between our publication and this read; the
                    // instance is valid in our pinned world, so the next round finds it.
                }
                Compiled::Cycle => return Err(reentered(mi)),
            }
        }
    }

    /// Like [`CompilerCache::compile`], returning an owned handle to the code instance.
    pub fn compile_instance(
        &self,
        guard: &Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<CodeInstance<C, L>, CompileError<C::Error>> {
        let inner = &*self.inner;
        if let Some(ci) = self.lookup(guard, mi, key) {
            if ci.linked().is_some() {
                guard.code_hits.set(guard.code_hits.get() + 1);
                return Ok(ci);
            }
        }
        inner.engine.inner.stats.add(Counter::CodeMiss, 1);
        match inner.compile_slow(&guard.seize, guard.world(), mi, key)? {
            Compiled::Ready(ci) => Ok(CodeInstance(ci)),
            Compiled::Cycle => Err(reentered(mi)),
        }
    }

    /// The code instance valid in the guard's world for `(mi, key)`, whatever its phases, without
    /// compiling anything.
    pub fn lookup(
        &self,
        guard: &Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Option<CodeInstance<C, L>> {
        let entry = self.inner.slots.get(
            &SlotQuery {
                mi: mi.address(),
                key,
            },
            &guard.seize,
        )?;
        entry
            .valid_in(guard.world().get())
            .map(|v| CodeInstance(Arc::clone(v)))
    }
}

impl<C: Compiler<L>, L: Lattice> CacheInner<C, L> {
    #[inline(always)]
    fn hit<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Option<&'g C::Linked> {
        self.slots
            .get(
                &SlotQuery {
                    mi: mi.address(),
                    key,
                },
                seize,
            )?
            .valid_in(world)?
            .linked
            .get()
    }

    /// The slot for `(mi, key)`, created (and registered with `mi`) if missing.
    pub(crate) fn slot(
        &self,
        mi: &MethodInstance<L>,
        key: &C::Key,
        seize: &seize::LocalGuard<'_>,
    ) -> Arc<Slot<C, L>> {
        if let Some(entry) = self.slots.get(
            &SlotQuery {
                mi: mi.address(),
                key,
            },
            seize,
        ) {
            return Arc::clone(&entry.slot);
        }
        let entry = self.slots.get_or_insert_with(
            SlotKey {
                mi: mi.address(),
                key: key.clone(),
            },
            || {
                let slot = Arc::new(Slot::new(mi.clone(), key.clone(), Arc::clone(&self.tag)));
                // Registered before the slot can be found, so a replacement of the method always
                // reaches it (an entry that loses the insertion race leaves a dead weak behind).
                let weak = Arc::downgrade(&(Arc::clone(&slot) as Arc<dyn SlotNode>));
                mi.register_slot(weak);
                SlotEntry::new(slot, &[])
            },
            seize,
        );
        Arc::clone(&entry.slot)
    }

    /// Checks that `mi` belongs to this engine and that its method is live in `world`: only then
    /// can code compiled for it, or against it, be valid in `world`.
    fn check_instance(&self, mi: &MethodInstance<L>, world: World) -> Result<(), Error> {
        if mi.method().function().engine != self.engine.inner.id {
            return Err(Error::UnknownFunction {
                function: mi.to_string(),
            });
        }
        if !mi.method().is_live_in(world) {
            return Err(Error::MethodNotLive {
                method: mi.method().to_string(),
            });
        }
        Ok(())
    }

    /// Takes a hold (see [`crate::raw::slot`]) on the live slot for `(mi, key)`, so that it stays
    /// in the cache until the dependency being recorded registers its backedge, and returns it
    /// with the version `find` picks.
    pub(crate) fn hold(
        &self,
        mi: &MethodInstance<L>,
        key: &C::Key,
        seize: &seize::LocalGuard<'_>,
        find: impl Fn(&[Version<C, L>]) -> Option<&Version<C, L>>,
    ) -> Held<C, L> {
        loop {
            let slot = self.slot(mi, key, seize);
            if let Some(version) = slot.cell.hold(&find) {
                return (slot, version);
            }
            // Retired after we found it: the next lookup makes a new one.
        }
    }

    pub(crate) fn compile_slow(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<Compiled<C, L>, CompileError<C::Error>> {
        let engine = &self.engine.inner;
        self.check_instance(mi, world)?;
        loop {
            let slot = self.slot(mi, key, seize);
            let begun = slot.cell.begin(
                |versions| valid_in(versions, world.get()),
                |ci| ci.linked.get().is_some(),
            );
            match begun {
                // Reclamation removed the slot after we found it; the next lookup makes a new one.
                Begin::Retired => continue,
                Begin::Ready(ci) => return Ok(Compiled::Ready(ci)),
                Begin::Wait(job) => {
                    if job.owner() != crate::sync::current_thread() {
                        engine.stats.add(Counter::CompileWait, 1);
                    }
                    match job.wait(&engine.waits) {
                        Waited::Cycle => return Ok(Compiled::Cycle),
                        Waited::Done(Err(e)) => return Err(e),
                        Waited::Done(Ok(())) => continue,
                    }
                }
                Begin::Run { job, existing } => {
                    let job = JobGuard {
                        slot: &slot,
                        job,
                        armed: true,
                    };
                    let result = self.run_phases(seize, world, &slot, existing);
                    job.finish(result.as_ref().map(|_| ()).map_err(Clone::clone));
                    return result.map(Compiled::Ready);
                }
            }
        }
    }

    fn phase<T>(
        &self,
        phase: Phase,
        mi: &MethodInstance<L>,
        run: impl FnOnce() -> Result<T, C::Error>,
    ) -> Result<T, CompileError<C::Error>> {
        let stats = &self.engine.inner.stats;
        let outcome = catch_unwind(AssertUnwindSafe(run));
        let error = match outcome {
            Ok(Ok(value)) => {
                stats.add(
                    match phase {
                        Phase::Infer => Counter::Infer,
                        Phase::Codegen => Counter::Codegen,
                        Phase::Link => Counter::Link,
                    },
                    1,
                );
                return Ok(value);
            }
            Ok(Err(error)) => CompileError::Phase {
                phase,
                instance: mi.to_string(),
                error: Arc::new(error),
            },
            Err(payload) => CompileError::Panicked {
                phase,
                instance: mi.to_string(),
                message: panic_message(&*payload),
            },
        };
        stats.add(Counter::PhaseFailure, 1);
        Err(error)
    }

    fn run_phases(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        slot: &Arc<Slot<C, L>>,
        existing: Option<Arc<CiData<C, L>>>,
    ) -> Result<Arc<CiData<C, L>>, CompileError<C::Error>> {
        let mi = &slot.mi;
        let ci = match existing {
            Some(ci) => ci,
            None => {
                let mut cx = InferCx {
                    cache: self,
                    mi,
                    key: &slot.key,
                    world,
                    deps: Vec::new(),
                    seen: HashSet::new(),
                };
                let inferred = self.phase(Phase::Infer, mi, || self.compiler.infer(&mut cx))?;
                let deps = std::mem::take(&mut cx.deps);
                self.publish(seize, world, slot, inferred, deps)?
            }
        };
        let cx = PhaseCx {
            cache: self,
            ci: &ci,
            world,
        };
        if ci.artifact.get().is_none() {
            let artifact = self.phase(Phase::Codegen, mi, || {
                self.compiler.codegen(&cx, &ci.inferred)
            })?;
            let _ = ci.artifact.set(artifact);
        }
        if ci.linked.get().is_none() {
            let artifact = ci.artifact.get().expect("set above");
            let linked = self.phase(Phase::Link, mi, || self.compiler.link(&cx, artifact))?;
            let _ = ci.linked.set(linked);
        }
        Ok(ci)
    }

    /// Creates the code instance, registers it with its dependencies and publishes it (see the
    /// module docs for why the order matters).
    fn publish(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        slot: &Arc<Slot<C, L>>,
        inferred: C::Inferred,
        mut deps: Vec<Dep<L>>,
    ) -> Result<Arc<CiData<C, L>>, CompileError<C::Error>> {
        let w = world.get();
        let method = &slot.mi.method().0;
        let mut min = deps.iter().map(Dep::min).fold(method.defined, u64::max);
        let mut max = OPEN;
        {
            // Keep at most one version valid per world: start after older versions, end before
            // newer ones.
            let state = slot.cell.lock();
            for v in &state.versions {
                let (vmin, vmax) = (v.core.validity.min(), v.core.validity.max());
                if vmax <= w {
                    min = min.max(vmax);
                } else if vmin > w {
                    max = max.min(vmin);
                }
            }
        }
        let ci = Arc::new(CiData {
            core: CiCore::new(w, min, Arc::clone(&slot.edges)),
            mi: slot.mi.clone(),
            key: slot.key.clone(),
            tag: Arc::clone(&slot.tag),
            inferred,
            artifact: OnceLock::new(),
            linked: OnceLock::new(),
            deps: OnceLock::new(),
        });
        let as_dep: DepRef = Arc::clone(&ci) as DepRef;
        let mut closed_by = OPEN;
        for dep in &mut deps {
            closed_by = closed_by.min(dep.register(&as_dep));
        }
        let _ = ci.deps.set(deps);
        let mut state = slot.cell.lock();
        closed_by = closed_by.min(method.deleted.load(std::sync::atomic::Ordering::Acquire));
        ci.core.validity.lower(closed_by.min(max));
        if !ci.core.validity.contains(w) {
            // Every dependency recorded through the context is valid in `w` (the context checks
            // what it is given), so this does not happen; were it to, publishing an instance not
            // valid in its own world would make every caller recompile it forever.
            return Err(CompileError::StaleDependency {
                instance: slot.mi.to_string(),
                world,
            });
        }
        state.versions.push(Arc::clone(&ci));
        slot.publish(self, &state, seize);
        drop(state);
        if closed_by != OPEN {
            // A dependency was invalidated while this was compiled. Anything that recorded a
            // dependency on this slot meanwhile (a recursive caller) compiled against it.
            ci.core
                .set_cause(Cause::DuringCompilation { world: closed_by });
            let seeds = invalidate::seed_from_edges(&slot.edges, closed_by, || {
                Cause::Via(Arc::clone(&as_dep))
            });
            let mut released = Vec::new();
            let n = seeds.len() + invalidate::propagate(seeds, closed_by, &mut released);
            self.engine.inner.stats.add(Counter::Invalidated, n as u64);
            self.engine.note_garbage(n);
            self.engine.inner.release(released);
        }
        Ok(ci)
    }
}

/// The error for a top-level compile made from inside the same instance's own compilation.
fn reentered<E, L: Lattice>(mi: &MethodInstance<L>) -> CompileError<E> {
    CompileError::Reentered {
        instance: mi.to_string(),
    }
}
