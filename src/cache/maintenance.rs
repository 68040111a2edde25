//! Reclamation and census of one cache.

use super::compiler::Compiler;
use super::CacheInner;
use crate::engine::CacheMaintenance;
use crate::sync::Arc;
use crate::types::Lattice;

impl<C: Compiler<L>, L: Lattice> CacheMaintenance for CacheInner<C, L> {
    fn reclaim(&self, horizon: u64) -> usize {
        let guard = self.engine.enter();
        let graph = self.engine.graph();
        let mut dropped = 0;
        let mut empty = Vec::new();
        for (_, entry) in self.slots.iter(&guard) {
            let slot = &entry.slot;
            // Most slots hold only versions still visible: nothing to drop, and the slot stays.
            // (A version published after this snapshot waits for the next reclamation.)
            if entry.newest.is_some() && entry.versions().all(|v| v.valid().max() > horizon) {
                slot.edges.prune_large(|d| graph.is_dead_if_free(*d));
                continue;
            }
            let mut state = slot.cell.lock();
            if state.is_retired() {
                continue;
            }
            let before = state.versions.len();
            state.versions.retain(|v| v.valid().max() > horizon);
            slot.edges.prune(|d| graph.is_dead_if_free(*d));
            if state.versions.len() != before {
                dropped += before - state.versions.len();
                slot.publish(self, &state, &guard);
            }
            let idle = state.versions.is_empty() && !state.has_job();
            drop(state);
            if idle {
                empty.push(Arc::clone(slot));
            }
        }
        for slot in empty {
            // Decided again under the slot's lock: a compilation or a dependency may have found
            // the slot since (see `crate::raw::slot`).
            let retired = slot.cell.retire_if_idle(
                || slot.edges.is_empty(),
                || {
                    let _ = self.slots.remove_if(
                        &slot.query(),
                        |_, entry| Arc::ptr_eq(&entry.slot, &slot),
                        &guard,
                    );
                },
            );
            dropped += usize::from(retired);
        }
        // A failed compilation kept for its dependents is needed until a walk has gone through
        // it (lowered, it passes nothing on again) or no dependent that could still be
        // invalidated is registered on it. Nothing registers on it any more: it is no slot's
        // running version.
        let unneeded: Vec<_> = {
            let mut failed = self.failed.lock();
            let (keep, unneeded) = std::mem::take(&mut *failed)
                .into_iter()
                .partition(|ci| graph.failed_is_needed(ci.node.get_ref()));
            *failed = keep;
            unneeded
        };
        drop(unneeded);
        dropped
    }

    fn census(&self) -> (usize, usize) {
        let guard = self.engine.enter();
        let mut versions = 0;
        let mut slots = 0;
        for (_, entry) in self.slots.iter(&guard) {
            slots += 1;
            versions += entry.versions().count();
        }
        (slots, versions)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::CacheInner;
    use crate::sync::{Arc, Weak};
    use crate::{Callee, Compiler, CompilerCache, DefaultLattice, Engine, InferCx, PhaseCx, Ty};

    /// `e` dispatches `g`, then compiles `f`, which compiles `e` back (told `InProgress`, so it
    /// depends on the running `e`); `e` then fails. With `unrecorded`, `e` compiles `f` through
    /// its cache rather than its context, so that `e` does not depend on `f`.
    struct FailsInCycle {
        unrecorded: bool,
        cache: OnceLock<Weak<CacheInner<FailsInCycle, DefaultLattice>>>,
    }

    impl Compiler for FailsInCycle {
        type Key = ();
        type Inferred = ();
        type Artifact = ();
        type Linked = ();
        type Error = String;

        fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<(), String> {
            let name = *cx.instance().method().source::<&str>().unwrap();
            let args = cx.instance().argtypes().to_vec();
            let engine = cx.engine().clone();
            let err = |e: &dyn std::fmt::Display| e.to_string();
            match name {
                "e" => {
                    cx.dispatch(engine.function("g").unwrap(), &args)
                        .map_err(|e| err(&e))?;
                    let f = engine.function("f").unwrap();
                    if self.unrecorded {
                        let inner = self.cache.get().and_then(Weak::upgrade).unwrap();
                        let cache = CompilerCache { inner };
                        let guard = engine.pin_world(cx.world()).map_err(|e| err(&e))?;
                        let mi = guard.dispatch(f, &args).map_err(|e| err(&e))?;
                        cache.compile(&guard, mi, &()).map_err(|e| err(&e))?;
                    } else {
                        let mi = cx.dispatch(f, &args).map_err(|e| err(&e))?;
                        cx.compile(&mi).map_err(|e| err(&e))?;
                    }
                    Err("e fails".into())
                }
                "f" => {
                    let mi = cx
                        .dispatch(engine.function("e").unwrap(), &args)
                        .map_err(|e| err(&e))?;
                    match cx.compile(&mi).map_err(|e| err(&e))? {
                        Callee::InProgress => Ok(()),
                        Callee::Ready(_) => Err("e is running".into()),
                    }
                }
                "s" => {
                    let mi = cx
                        .dispatch(engine.function("s").unwrap(), &args)
                        .map_err(|e| err(&e))?;
                    cx.compile(&mi).map_err(|e| err(&e))?;
                    Err("s fails".into())
                }
                _ => Ok(()),
            }
        }

        fn codegen(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
            Ok(())
        }

        fn link(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
            Ok(())
        }
    }

    /// An engine where `e` failed after `f` had recorded a dependency on it.
    fn setup(unrecorded: bool) -> (Engine, Ty, CompilerCache<FailsInCycle>) {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        for name in ["e", "f", "g", "s"] {
            let f = engine.declare_function(name).unwrap();
            let sig = if name == "g" { Ty::any() } else { int.clone() };
            engine.add_method(f, &[sig], name).unwrap();
        }
        let compiler = FailsInCycle {
            unrecorded,
            cache: OnceLock::new(),
        };
        let cache = CompilerCache::new(&engine, "cycle", compiler).unwrap();
        let _ = cache.inner.compiler.cache.set(Arc::downgrade(&cache.inner));
        let guard = engine.pin();
        let e = guard
            .dispatch(engine.function("e").unwrap(), &[int.clone()])
            .unwrap();
        assert!(cache.compile(&guard, e, &()).is_err());
        let f = guard
            .dispatch(engine.function("f").unwrap(), &[int.clone()])
            .unwrap();
        assert!(
            cache.lookup(&guard, f, &()).unwrap().is_some(),
            "f is published"
        );
        drop(guard);
        assert_eq!(cache.inner.failed.lock().len(), 1, "e is kept for f");
        (engine, int, cache)
    }

    /// Compiles the recursive `s`, which fails, `times` times in the current world.
    fn fail_recursively(engine: &Engine, int: Ty, cache: &CompilerCache<FailsInCycle>, times: u32) {
        let guard = engine.pin();
        let s = guard
            .dispatch(engine.function("s").unwrap(), &[int])
            .unwrap();
        for _ in 0..times {
            assert!(cache.compile(&guard, s, &()).is_err());
        }
    }

    /// The failed `e` stays while `f`, compiled against what `e` read, may still be invalidated
    /// through it, and goes at the first reclamation after a walk went through it.
    #[test]
    fn a_failed_compilation_is_kept_until_a_walk_went_through_it() {
        let (engine, int, cache) = setup(false);
        engine.reclaim();
        assert_eq!(cache.inner.failed.lock().len(), 1, "f still needs it");
        let g = engine.function("g").unwrap();
        engine.add_method(g, &[int], "g for Int").unwrap();
        assert_eq!(cache.inner.failed.lock().len(), 1);
        engine.reclaim();
        assert!(cache.inner.failed.lock().is_empty());
    }

    /// The failed `e` goes once nothing that could still be invalidated depends on it, though
    /// no walk went through it: `f` is invalidated by its own method's replacement, which `e`
    /// (not depending on `f`) does not see.
    #[test]
    fn a_failed_compilation_is_dropped_once_its_dependents_are_invalid() {
        let (engine, int, cache) = setup(true);
        let f = engine.function("f").unwrap();
        engine.add_method(f, &[int], "f again").unwrap();
        let e = cache.inner.failed.lock()[0].clone();
        assert_eq!(e.valid().max(), crate::world::OPEN, "no walk reached e");
        drop(e);
        engine.reclaim();
        assert!(cache.inner.failed.lock().is_empty());
    }

    /// A recursive function whose compilation fails depends on its own running compilation (it
    /// was told `InProgress`), and on nothing else: compiled and failing again and again, it is
    /// never kept.
    #[test]
    fn a_failed_compilation_that_only_it_depends_on_is_not_kept() {
        let (engine, int, cache) = setup(false);
        fail_recursively(&engine, int, &cache, 100);
        assert_eq!(cache.inner.failed.lock().len(), 1, "only e, kept for f");
    }

    /// Compilations that fail again and again, with no mutation and no reclamation in between,
    /// do not grow the dependency graph: their nodes are freed once enough of them wait.
    #[test]
    fn failures_without_mutations_do_not_grow_the_graph() {
        let (engine, int, cache) = setup(false);
        fail_recursively(&engine, int, &cache, 20_000);
        // 64 chunks of dropped nodes wait at most, plus the chunks in use; a node per failure
        // would be 313 chunks.
        let chunks = engine.graph().chunks();
        assert!(chunks <= 66, "{chunks} chunks after 20,000 failures");
    }
}
