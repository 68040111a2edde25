//! Running the phases, and publishing the code instance `infer` produced.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::code_instance::CiData;
use super::compiler::{Compiler, InferCx, PhaseCx};
use super::slot::{Dependency, Slot};
use super::CacheInner;
use crate::error::{CompileError, Phase};
use crate::graph::{walk, Cause, DependentCore, DependentRef};
use crate::methods::MethodInstance;
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
    fn phase<T>(
        &self,
        phase: Phase,
        mi: &MethodInstance<L>,
        run: impl FnOnce() -> Result<T, C::Error>,
    ) -> Result<T, CompileError<C::Error>> {
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
        slot.publish(self, &state, seize);
        drop(state);
        if closed_by != OPEN {
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
