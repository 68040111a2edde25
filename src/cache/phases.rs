//! Running the phases, and publishing the code instance `infer` produced.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::code_instance::CiData;
use super::compiler::{Compiler, InferCx, PhaseCx};
use super::slot::{Dependency, Slot};
use super::CacheInner;
use crate::error::{CompileError, Phase};
use crate::graph::{walk, Cause, DependentCore, DependentRef};
use crate::stats::Counter;
use crate::sync::{Arc, OnceLock, Ordering};
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
            instance = %slot.mi,
            key = ?slot.key,
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

    pub(super) fn run_phases(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        slot: &Arc<Slot<C, L>>,
        existing: Option<Arc<CiData<C, L>>>,
    ) -> Result<Arc<CiData<C, L>>, CompileError<C::Error>> {
        let mi = &slot.mi;
        // What `infer` asked, when this job runs it and a tier is to store the result.
        let mut trail = None;
        let ci = match existing {
            Some(ci) => ci,
            None => {
                // A tier's valid result is installed with the dependencies it re-issued, in
                // place of `infer` and `codegen`.
                let mut loaded = None;
                if let Some(tier) = &self.tier {
                    let mut cx = InferCx::new(self, mi, &slot.key, world);
                    loaded = tier
                        .load(self, &mut cx)
                        .map(|l| (l, std::mem::take(&mut cx.deps)));
                }
                match loaded {
                    Some((loaded, deps)) => {
                        let ci = self.publish(seize, world, slot, loaded.inferred, deps)?;
                        let _ = ci.digest.set(loaded.digest);
                        let _ = ci.artifact.set(loaded.artifact);
                        ci
                    }
                    None => {
                        let mut cx = InferCx::new(self, mi, &slot.key, world);
                        cx.trail = self.tier.as_ref().map(|_| Vec::new());
                        let inferred =
                            self.phase(Phase::Infer, slot, world, || self.compiler.infer(&mut cx))?;
                        let deps = std::mem::take(&mut cx.deps);
                        trail = cx.trail.take();
                        self.publish(seize, world, slot, inferred, deps)?
                    }
                }
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
                    self.compiler.codegen(&cx, &ci.inferred)
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

    /// Creates the code instance, registers it with its dependencies and publishes it (see the
    /// module docs for why the order matters).
    fn publish(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        slot: &Arc<Slot<C, L>>,
        inferred: C::Inferred,
        mut deps: Vec<Dependency<L>>,
    ) -> Result<Arc<CiData<C, L>>, CompileError<C::Error>> {
        let w = world.get();
        let method = &slot.mi.method().0;
        let mut min = deps
            .iter()
            .map(Dependency::min)
            .fold(method.defined, u64::max);
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
            core: DependentCore::new(w, min, Arc::clone(&slot.edges)),
            mi: slot.mi.clone(),
            key: slot.key.clone(),
            tag: Arc::clone(&slot.tag),
            inferred,
            artifact: OnceLock::new(),
            linked: OnceLock::new(),
            deps: OnceLock::new(),
            digest: OnceLock::new(),
        });
        let as_dep: DependentRef = Arc::clone(&ci) as DependentRef;
        let mut closed_by = OPEN;
        for dep in &mut deps {
            closed_by = closed_by.min(dep.register(&as_dep));
        }
        let _ = ci.deps.set(deps);
        let mut state = slot.cell.lock();
        closed_by = closed_by.min(method.deleted.load(Ordering::Acquire));
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
        slot.publish_pushed(self, &state, Arc::clone(&ci), seize);
        drop(state);
        if closed_by != OPEN {
            #[cfg(feature = "tracing")]
            tracing::debug!(
                target: "compiler_caching::invalidation",
                code_instance = %crate::graph::Dependent::label(&*ci),
                world = closed_by,
                "published already invalid: a dependency was invalidated while it was compiled"
            );
            // A dependency was invalidated while this was compiled. Anything that recorded a
            // dependency on this slot meanwhile (a recursive caller) compiled against it.
            ci.core
                .set_cause(Cause::DuringCompilation { world: closed_by });
            let seeds =
                walk::seed_from_edges(&slot.edges, closed_by, || Cause::Via(Arc::clone(&as_dep)));
            let mut released = Vec::new();
            let n = seeds.len() + walk::propagate(seeds, closed_by, &mut released);
            self.engine.counters().add(Counter::Invalidated, n as u64);
            self.engine.note_garbage(n);
            self.engine.release(released);
        }
        Ok(ci)
    }
}
