//! Running the phases, and publishing the code instance `infer` produced.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::code_instance::CiData;
use super::compiler::{Compiler, InferCx, PhaseCx};
use super::slot::Slot;
use super::CacheInner;
use crate::dispatch::DispatchNode;
use crate::error::{describe, CompileError, Phase};
use crate::graph::{Cause, Dependent};
use crate::raw::slot::Started;
use crate::stats::Counter;
use crate::sync::{Arc, OnceLock, Ordering, Weak};
use crate::types::Lattice;
use crate::world::{World, OPEN};

fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).into()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str().into()
    } else {
        "non-string panic payload".into()
    }
}

impl<C: Compiler<L>, L: Lattice> CacheInner<C, L> {
    /// Runs one phase for `slot` in `world`, catching a panic, counting the run, and turning a
    /// failure into the error every waiter receives.
    fn phase<T>(
        &self,
        phase: Phase,
        slot: &Slot<C, L>,
        world: World,
        run: impl FnOnce() -> Result<T, C::Error>,
    ) -> Result<T, CompileError<C::Error>> {
        #[cfg(feature = "tracing")]
        let _span = tracing::info_span!(
            "compile_phase",
            phase = %phase,
            instance = %describe(&slot.mi),
            key = %crate::error::describe_debug(&slot.key),
            world = world.get(),
            cache = %slot.tag,
        )
        .entered();
        #[cfg(not(feature = "tracing"))]
        let _ = world;
        let mi = &slot.mi;
        let stats = self.engine.counters();
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
                instance: describe(mi),
                error: Arc::new(error),
            },
            Err(payload) => CompileError::Panicked {
                phase,
                instance: describe(mi),
                message: panic_message(&*payload),
            },
        };
        stats.add(Counter::PhaseFailure, 1);
        Err(error)
    }

    /// A new code instance for `slot`, compiled in `world`: the slot's pending version while its
    /// job runs. It holds from `world` on until `infer` has recorded what it depends on.
    pub(super) fn start(&self, slot: &Arc<Slot<C, L>>, world: World) -> Arc<CiData<C, L>> {
        let w = world.get();
        let graph = self.engine.graph();
        let ci = Arc::new(CiData {
            node: graph.alloc(w, w),
            mi: slot.mi.clone(),
            key: slot.key.clone(),
            tag: Arc::clone(&slot.tag),
            inferred: OnceLock::new(),
            artifact: OnceLock::new(),
            linked: OnceLock::new(),
            deps: OnceLock::new(),
            digest: OnceLock::new(),
            stats: Arc::clone(self.engine.counters()),
            graph: Arc::clone(graph),
        });
        let owner: Weak<dyn Dependent> = Arc::downgrade(&ci) as Weak<CiData<C, L>>;
        ci.node.set_owner(owner);
        ci
    }

    pub(super) fn run_phases(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        slot: &Arc<Slot<C, L>>,
        version: Started<Arc<CiData<C, L>>>,
    ) -> Result<Arc<CiData<C, L>>, CompileError<C::Error>> {
        let mi = &slot.mi;
        // What `infer` asked, when this job runs it and a tier is to store the result.
        let mut trail = None;
        let ci = match version {
            Started::Existing(ci) => ci,
            Started::New(ci) => {
                // A tier's valid result is installed with the dependencies it re-issued, in
                // place of `infer` and `codegen`. Those it re-issued before finding the result
                // stale stay registered: at worst they invalidate the instance needlessly.
                let mut loaded = None;
                if let Some(tier) = &self.tier {
                    let mut cx = InferCx::new(self, mi, &slot.key, world, &ci);
                    loaded = tier
                        .load(self, &mut cx)
                        .map(|l| (l, cx.min, std::mem::take(&mut cx.dispatched)));
                }
                match loaded {
                    Some((loaded, min, dispatched)) => {
                        let _ = ci.inferred.set(loaded.inferred);
                        let _ = ci.digest.set(loaded.digest);
                        let _ = ci.artifact.set(loaded.artifact);
                        self.publish(seize, world, slot, &ci, min, dispatched)
                            .inspect_err(|_| self.close_unpublished(&ci))?;
                    }
                    None => {
                        let mut cx = InferCx::new(self, mi, &slot.key, world, &ci);
                        cx.trail = self.tier.as_ref().map(|_| Vec::new());
                        let inferred =
                            self.phase(Phase::Infer, slot, world, || self.compiler.infer(&mut cx));
                        let (min, dispatched) = (cx.min, std::mem::take(&mut cx.dispatched));
                        let inferred = match inferred {
                            Ok(inferred) => inferred,
                            Err(error) => {
                                // Kept with the instance if it stays for its dependents.
                                let _ = ci.deps.set(dispatched);
                                self.close_unpublished(&ci);
                                return Err(error);
                            }
                        };
                        trail = cx.trail.take();
                        let _ = ci.inferred.set(inferred);
                        self.publish(seize, world, slot, &ci, min, dispatched)
                            .inspect_err(|_| self.close_unpublished(&ci))?;
                    }
                }
                ci
            }
        };
        let cx = PhaseCx {
            cache: self,
            ci: &ci,
            world,
        };
        // The slot's job is ours, so nobody else sets these meanwhile.
        let artifact = match ci.artifact.get() {
            Some(artifact) => artifact,
            None => {
                let artifact = self.phase(Phase::Codegen, slot, world, || {
                    self.compiler.codegen(&cx, ci.inferred())
                })?;
                let artifact = ci.artifact.get_or_init(|| artifact);
                if let (Some(tier), Some(trail)) = (&self.tier, trail) {
                    if let Some(digest) = tier.store(self, &ci, artifact, trail) {
                        let _ = ci.digest.set(digest);
                    }
                }
                artifact
            }
        };
        if ci.linked.get().is_none() {
            let linked = self.phase(Phase::Link, slot, world, || {
                self.compiler.link(&cx, artifact)
            })?;
            ci.linked.get_or_init(|| linked);
        }
        Ok(ci)
    }

    /// Publishes the instance `infer` produced, every dependency of which is registered already
    /// (see the module docs): fixes the start of its range, keeps at most one version valid per
    /// world, and closes it if its method was deleted meanwhile.
    fn publish(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        slot: &Arc<Slot<C, L>>,
        ci: &Arc<CiData<C, L>>,
        mut min: u64,
        dispatched: Vec<Arc<DispatchNode<L>>>,
    ) -> Result<(), CompileError<C::Error>> {
        let w = world.get();
        let method = &slot.mi.method().0;
        let _ = ci.deps.set(dispatched);
        let mut max = OPEN;
        let mut state = slot.cell.lock();
        // Start after older versions, end before newer ones.
        for v in &state.versions {
            let (vmin, vmax) = (v.valid().min(), v.valid().max());
            if vmax <= w {
                min = min.max(vmax);
            } else if vmin > w {
                max = max.min(vmin);
            }
        }
        ci.node.extend_min(min);
        // Deleting the method lowers the pending version too; a deletion before it existed is
        // read here.
        let deleted = method.deleted.load(Ordering::Acquire);
        let closed = deleted != OPEN && ci.valid().lower(deleted);
        if closed {
            ci.node
                .set_root(Cause::DuringCompilation { world: deleted });
        }
        ci.valid().lower(max);
        if !ci.valid().contains(w) {
            // Every dependency is registered valid in `w` (the context checks what it is given),
            // so this does not happen; were it to, publishing an instance not valid in its own
            // world would make every caller recompile it forever.
            return Err(CompileError::StaleDependency {
                instance: describe(&slot.mi),
                world,
            });
        }
        state.versions.push(Arc::clone(ci));
        // Publishing hashes and compares the owner key: user code. If it panics, the version
        // is taken back, so the slot's state and its published entry stay in step.
        let published = catch_unwind(AssertUnwindSafe(|| {
            slot.publish_pushed(self, &state, Arc::clone(ci), seize)
        }));
        if let Err(payload) = published {
            state.versions.pop();
            drop(state);
            self.engine.counters().add(Counter::PhaseFailure, 1);
            return Err(CompileError::Panicked {
                phase: Phase::Infer,
                instance: describe(&slot.mi),
                message: format!(
                    "publishing the code instance panicked (the owner key's Hash or Eq): {}",
                    panic_message(&*payload)
                )
                .into(),
            });
        }
        drop(state);
        if closed {
            self.engine.invalidate_from(ci.node.get_ref(), deleted);
        }
        Ok(())
    }
}

impl<C: Compiler<L>, L: Lattice> CacheInner<C, L> {
    /// Ends a new instance whose inference or publication failed: it is never published, but
    /// the dependencies it recorded before failing stay registered.
    ///
    /// Usually nothing depends on it, and it is closed at its own world: an invalidation that
    /// reaches it later through those dependencies neither counts it nor walks on from it.
    ///
    /// Inside a cycle of compilations, though, others may have recorded a dependency on it while
    /// it ran (a recursive caller told [`Callee::InProgress`](super::Callee::InProgress), or a
    /// `depend_on` that could not wait): they were compiled against what it had read by then,
    /// and a mutation of any of that must still reach them. So the instance stays open, marked
    /// failed so that walks go through it to its dependents without counting it, and the cache
    /// keeps it (with the dispatch answers it recorded) until reclamation finds it lowered or
    /// its dependents gone.
    ///
    /// Its node is freed with the instance, by the next mutation or reclamation, or here, by a
    /// later failure that finds many such nodes waiting.
    fn close_unpublished(&self, ci: &Arc<CiData<C, L>>) {
        let node = ci.node.node();
        if !node.may_have_dependents() {
            node.lower(node.compile_world());
        } else if self.engine.end_failed(ci.node.get_ref()) {
            self.failed.lock().push(Arc::clone(ci));
        }
        self.engine.recycle_if_backlog();
    }
}
