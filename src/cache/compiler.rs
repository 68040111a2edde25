//! The [`Compiler`] trait, and what its phases are told: [`InferCx`] (where `infer` records what
//! its result depends on) and [`PhaseCx`].

use rustc_hash::FxHashSet;
use smallvec::SmallVec;
use std::fmt;
use std::hash::Hash;

use super::code_instance::{CiData, CodeInstance};
use super::miss::Compiled;
use super::slot::{valid_in, Slot};
use super::tier::Trail;
use super::CacheInner;
use crate::dispatch::DispatchNode;
use crate::engine::Engine;
use crate::error::{CompileError, Error};
use crate::graph::{Cause, NodeRef};
use crate::methods::{Function, MethodInstance};
use crate::raw::job::Waited;
use crate::sync::Arc;
use crate::types::{DefaultLattice, Lattice};
use crate::world::{World, OPEN};

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

/// How a slot's job ended, with the world it compiled in: callers of the same instance, owner and
/// world share one execution and its failure, but a caller waiting from another world retries in
/// its own (its callees may differ), rather than take an error from a world it never pinned.
pub(crate) type JobOutcome<C, L> = (u64, Result<(), CompileError<<C as Compiler<L>>::Error>>);

/// What `codegen` and `link` are told.
pub struct PhaseCx<'a, C: Compiler<L>, L: Lattice = DefaultLattice> {
    pub(super) cache: &'a CacheInner<C, L>,
    pub(super) ci: &'a CiData<C, L>,
    pub(super) world: World,
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

    /// The inferred result being completed.
    pub fn inferred(&self) -> &C::Inferred {
        self.ci.inferred()
    }
}

/// What `infer` is told, and where it records dependencies (the seed API's
/// `cache!(cache, mi; world, deps)`).
///
/// Each dependency is registered as soon as it is recorded, on the code instance being compiled
/// (the slot's pending version): a mutation that changes it while `infer` still runs finds the
/// instance, and whatever already depends on it, in its invalidation walk.
pub struct InferCx<'a, C: Compiler<L>, L: Lattice = DefaultLattice> {
    pub(super) cache: &'a CacheInner<C, L>,
    pub(super) mi: &'a MethodInstance<L>,
    pub(super) key: &'a C::Key,
    pub(super) world: World,
    /// The code instance being compiled, not yet published.
    pub(super) ci: &'a Arc<CiData<C, L>>,
    /// The first world every dependency recorded so far holds in.
    pub(super) min: u64,
    /// The dispatch answers recorded, kept by the instance once published.
    pub(super) dispatched: Vec<Arc<DispatchNode<L>>>,
    /// What has been recorded already, by address.
    pub(super) seen: Seen,
    /// What was asked, for a tier to record (`None` when the cache has no tier).
    pub(super) trail: Option<Vec<Trail<C, L>>>,
}

impl<'a, C: Compiler<L>, L: Lattice> InferCx<'a, C, L> {
    /// A context for compiling `mi` with `key` in `world` as the code instance `ci` (its slot's
    /// pending version), with nothing recorded yet.
    pub(crate) fn new(
        cache: &'a CacheInner<C, L>,
        mi: &'a MethodInstance<L>,
        key: &'a C::Key,
        world: World,
        ci: &'a Arc<CiData<C, L>>,
    ) -> Self {
        InferCx {
            cache,
            mi,
            key,
            world,
            ci,
            min: mi.method().0.defined,
            dispatched: Vec::new(),
            seen: Seen::default(),
            trail: None,
        }
    }
}

/// The addresses of what a compilation recorded so far: most record a few, scanned inline with
/// no allocation; past that, hashed.
#[derive(Default)]
pub(super) struct Seen {
    few: SmallVec<[usize; 8]>,
    many: FxHashSet<usize>,
}

impl Seen {
    /// Adds `address`; whether it was new.
    pub(super) fn insert(&mut self, address: usize) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&address) {
                return false;
            }
            if self.few.len() < self.few.inline_size() {
                self.few.push(address);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(address)
    }

    pub(super) fn len(&self) -> usize {
        self.few.len() + self.many.len()
    }
}

impl<C: Compiler<L>, L: Lattice> fmt::Debug for PhaseCx<'_, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseCx")
            .field("instance", &self.ci.mi)
            .field("key", &self.ci.key)
            .field("world", &self.world)
            .finish()
    }
}

impl<C: Compiler<L>, L: Lattice> fmt::Debug for InferCx<'_, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InferCx")
            .field("instance", self.mi)
            .field("key", self.key)
            .field("world", &self.world)
            .field("dependencies", &self.seen.len())
            .finish()
    }
}

/// The stack a nested [`InferCx::compile`] starts with at least: below this, it continues on a
/// heap-allocated stack segment of [`STACK_SEGMENT`] bytes.
pub const STACK_RED_ZONE: usize = 256 * 1024;

/// The size of the stack segments deep compile chains continue on.
pub const STACK_SEGMENT: usize = 4 * 1024 * 1024;

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
    ///
    /// Dependencies are on functions, not on names: declaring a function changes no world, so
    /// code compiled while a name was not declared yet (a failed
    /// [`Engine::function`](crate::Engine::function) lookup) is not invalidated when it is
    /// declared. Declare every function a program may call before compiling code that calls it;
    /// a call to a declared function with no method yet is an ordinary [`Error::NoMethod`]
    /// answer, recorded, and invalidated by the first method that applies.
    pub fn dispatch(
        &mut self,
        f: Function,
        argtypes: &[L::Type],
    ) -> Result<MethodInstance<L>, Error> {
        let engine = &self.cache.engine;
        let seize = engine.enter();
        let node = Arc::clone(engine.dispatch_for_compilation(
            &seize,
            self.world.get(),
            self.cache.stack,
            f,
            argtypes,
        )?);
        let result = node.result().cloned();
        if self.seen.insert(Arc::as_ptr(&node) as *const () as usize) {
            let max = node.edges.register(
                self.dependent(),
                || node.validity.max(),
                |d| self.cache.engine.graph().is_dead_if_free(*d),
            );
            self.min = self.min.max(node.validity.min());
            self.dispatched.push(node);
            self.close_at(max);
            if let Some(trail) = &mut self.trail {
                trail.push(Trail::Dispatch {
                    f,
                    args: argtypes.into(),
                    answer: result.clone(),
                });
            }
        }
        result
    }

    /// Records that the result depends on `mi` (in this cache, with this key): when what is
    /// compiled for `mi` is invalidated, or `mi`'s method is replaced or deleted, so is this.
    /// Nothing is compiled. Use it for callees of a foreign IR the engine cannot read.
    ///
    /// If another thread is compiling `mi` for this world, this waits for that compilation to
    /// finish, as [`InferCx::compile`] would, and records the version it publishes (or, if it
    /// fails, the dependency on `mi`'s method alone): until it publishes, what it reads is not
    /// known, and a mutation of something it reads later could not reach this result. Only when
    /// waiting would deadlock (that compilation waits, directly or through others, on this one)
    /// is the dependency recorded on the running compilation; [`crate::semantics`] (§7,
    /// dependencies on a running compilation) says what that covers.
    ///
    /// `mi` must be an instance of this engine whose method is live in the compilation's world
    /// (one obtained by dispatching in that world is): a dependency on anything else could never
    /// hold in this world. Otherwise nothing is recorded and the error says why
    /// ([`Error::MethodNotLive`] for a method replaced, deleted or defined later,
    /// [`Error::UnknownFunction`] for an instance of another engine).
    pub fn depend_on(&mut self, mi: &MethodInstance<L>) -> Result<(), Error> {
        self.cache.check_instance(mi, self.world)?;
        super::miss::check_key(self.key)?;
        let seize = self.cache.engine.enter();
        let world = self.world.get();
        // Whether waiting for a running compilation of `mi` would deadlock (it waits, directly
        // or not, on this one): then the dependency is recorded on the running compilation.
        let mut in_cycle = false;
        loop {
            let running = std::cell::Cell::new(false);
            let (slot, version) = self.cache.hold(mi, self.key, &seize, |state| {
                let published = valid_in(&state.versions, world);
                let pending = running_in(state.pending(), world).filter(|_| published.is_none());
                running.set(pending.is_some());
                published.or(pending).cloned()
            });
            if running.get() && !in_cycle {
                // What a running compilation will read is not known until it publishes: a
                // mutation of something it has not read yet could not reach a dependent
                // registered on it meanwhile. So wait for it, as a compile would, and record
                // what it leaves (its published version, or nothing if it failed).
                slot.cell.release();
                if let Some(job) = slot.cell.running_job() {
                    let engine = &self.cache.engine;
                    if job.owner() != crate::sync::current_thread() {
                        engine.counters().add(crate::stats::Counter::CompileWait, 1);
                    }
                    in_cycle = matches!(job.wait(engine.waits()), Waited::Cycle);
                }
                continue;
            }
            let version = version.map(|v| Recorded {
                version: v,
                running: running.get(),
            });
            if self.record_slot(slot, version) {
                if let Some(trail) = &mut self.trail {
                    trail.push(Trail::DependOn(mi.clone()));
                }
            }
            return Ok(());
        }
    }

    /// Compiles `mi` (all three phases, in this cache with this key, in this world) and records
    /// the dependency. Recursion is detected instead of deadlocking: see [`Callee::InProgress`].
    ///
    /// A cold compile of a long call chain nests one compilation per call on the thread's
    /// stack: about 1.5 KiB per level in a release build with a small `infer` (measured by
    /// `cargo run --release -p perf --bin scale`), several times that in a debug build. Each
    /// nested compilation starts with at least [`STACK_RED_ZONE`] bytes of stack free: when less
    /// is left, it continues on a new stack segment allocated on the heap, so chains of any
    /// length compile on any thread (memory permitting), provided one level of the compiler's own
    /// `infer` needs less than that.
    pub fn compile(
        &mut self,
        mi: &MethodInstance<L>,
    ) -> Result<Callee<C, L>, CompileError<C::Error>> {
        let seize = self.cache.engine.enter();
        let world = self.world;
        let compiled = stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, || {
            self.cache.compile_slow(&seize, world, mi, self.key)
        })?;
        match compiled {
            Compiled::Ready(ci) => {
                let (slot, _) = self.cache.hold(mi, self.key, &seize, |_| None);
                let version = Recorded {
                    version: Arc::clone(&ci),
                    running: false,
                };
                if self.record_slot(slot, Some(version)) {
                    self.trail_compiled(mi, Some(Arc::clone(&ci)));
                }
                Ok(Callee::Ready(CodeInstance(ci)))
            }
            Compiled::Cycle => {
                // The callee's running compilation, if it runs in this world: what this one
                // depends on. (Running for another world, it is not; the dependency is then on
                // the slot alone.)
                let world = world.get();
                let (slot, pending) = self.cache.hold(mi, self.key, &seize, |state| {
                    running_in(state.pending(), world).cloned()
                });
                let pending = pending.map(|version| Recorded {
                    version,
                    running: true,
                });
                if self.record_slot(slot, pending) {
                    self.trail_compiled(mi, None);
                }
                Ok(Callee::InProgress)
            }
        }
    }

    /// This instance's node, for registering on what it depends on.
    fn dependent(&self) -> NodeRef {
        self.ci.node.get_ref()
    }

    /// Applies the upper bound `max` read from a dependency as it was registered: if the
    /// dependency was invalidated since it was read, so is this instance, and whatever already
    /// registered on it while it compiles (a recursive caller) goes with it.
    ///
    /// A mutation's walk may have closed the instance already, at a later world (through an
    /// earlier read); closed again at `max`, the record of why names this read instead, and the
    /// walk from it reaches what the first one lowered too (see `crate::graph::nodes`).
    fn close_at(&self, max: u64) {
        let before = self.ci.valid().max();
        if max == OPEN || !self.ci.valid().lower(max) {
            return;
        }
        let cause = Cause::DuringCompilation { world: max };
        if before == OPEN {
            self.ci.node.set_root(cause);
        } else {
            self.ci.node.replace_root(cause);
        }
        self.cache.engine.invalidate_from(self.dependent(), max);
    }

    /// Records a dependency on `slot`, on which the caller took a hold, compiled against
    /// `version` (published, or the slot's running one) if there is one: registers this instance
    /// on the version's backedges (or the slot's, with no version), reading under the same lock
    /// the upper bound it must respect (see `crate::raw::edges`), then ends the hold.
    ///
    /// On a running version it registers on the slot's backedges as well. The running
    /// compilation may still fail, and is then never published: what it read still reaches this
    /// instance through it (see `phases`), but the replacement or deletion of the slot's method,
    /// which closes only the slot's versions, would not.
    ///
    /// Returns `false` if it was recorded already.
    fn record_slot(&mut self, slot: Arc<Slot<C, L>>, version: Option<Recorded<C, L>>) -> bool {
        let key = match &version {
            Some(v) => Arc::as_ptr(&v.version) as *const () as usize,
            None => Arc::as_ptr(&slot) as *const () as usize,
        };
        if self.seen.insert(key) {
            let graph = self.cache.engine.graph();
            let on_slot = || {
                slot.edges.register(
                    self.dependent(),
                    || {
                        let deleted = &slot.mi.method().0.deleted;
                        deleted.load(crate::sync::Ordering::Acquire)
                    },
                    |d| graph.is_dead_if_free(*d),
                )
            };
            let max = match &version {
                // On the version itself: its own backedges.
                Some(v) => {
                    let max = v.version.valid().register(self.dependent(), graph);
                    if v.running {
                        max.min(on_slot())
                    } else {
                        max
                    }
                }
                // On the slot, while nothing is compiled for it.
                None => on_slot(),
            };
            self.min = self.min.max(match &version {
                // A pending version holds from its own world until it is published.
                Some(v) => v.version.valid().min(),
                None => slot.mi.method().0.defined,
            });
            self.close_at(max);
            slot.cell.release();
            true
        } else {
            slot.cell.release();
            false
        }
    }

    fn trail_compiled(&mut self, mi: &MethodInstance<L>, callee: Option<Arc<CiData<C, L>>>) {
        if let Some(trail) = &mut self.trail {
            trail.push(Trail::Compiled {
                instance: mi.clone(),
                callee,
            });
        }
    }
}

/// A version a dependency is recorded on, and whether it is its slot's running compilation.
struct Recorded<C: Compiler<L>, L: Lattice> {
    version: Arc<CiData<C, L>>,
    running: bool,
}

/// `pending`, if it is being compiled for `world`.
fn running_in<C: Compiler<L>, L: Lattice>(
    pending: Option<&Arc<CiData<C, L>>>,
    world: u64,
) -> Option<&Arc<CiData<C, L>>> {
    pending.filter(|p| p.valid().compile_world() == world)
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn seen_answers_alike_inline_and_after_spilling_to_the_set() {
        let mut seen = Seen::default();
        // Past the inline capacity, with every earlier address asked again after each insertion.
        for n in 0..40usize {
            assert!(seen.insert(n * 8), "{n} is new");
            for earlier in 0..=n {
                assert!(!seen.insert(earlier * 8), "{earlier} was recorded");
            }
            assert_eq!(seen.len(), n + 1);
        }
    }
}
