//! Concurrency (docs/semantics.md §1, §6, §7): exactly-once compilation under contention, failures and
//! panics that poison nothing, recursion without deadlock, no stale result across a racing
//! invalidation, monotonic worlds and atomic mutations. Every multi-threaded test runs under a
//! watchdog that fails it instead of hanging CI.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use compiler_caching::{CompileError, CompilerCache, Engine, Phase, Ty};
use test_support::foreign::{Fault, Foreign, Ir};
use test_support::setups::{calls, types};
use test_support::threads::watchdog;

#[test]
fn sixteen_threads_missing_one_key_run_each_phase_once() {
    watchdog(60, || {
        let engine = Engine::new();
        let t = types(&engine);
        let f = engine.declare_function("f").unwrap();
        engine
            .add_method(f, &[t.int.clone()], Ir::constant(7))
            .unwrap();
        let compiler = Foreign::default();
        *compiler.log.infer_delay.lock().unwrap() = Some(Duration::from_millis(50));
        let log = compiler.log.clone();
        let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
        let barrier = Barrier::new(16);
        thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    let guard = engine.pin();
                    let mi = guard.dispatch(f, &[t.int.clone()]).unwrap();
                    barrier.wait();
                    assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 7);
                });
            }
        });
        for phase in [Phase::Infer, Phase::Codegen, Phase::Link] {
            assert_eq!(log.runs("f", phase), 1, "{phase}");
        }
    });
}

/// A failing or panicking phase hands its failure to every caller waiting on it. The threads are
/// staged: the fault fires only once all seven other callers are provably waiting on the owner's
/// compilation (the engine counts each wait as it begins), so all eight must report it.
#[test]
fn failures_and_panics_reach_every_waiter_and_a_later_call_retries() {
    for phase in [Phase::Infer, Phase::Codegen, Phase::Link] {
        for fault in [Fault::Error, Fault::Panic] {
            watchdog(60, move || {
                let engine = Engine::new();
                let t = types(&engine);
                let f = engine.declare_function("f").unwrap();
                engine
                    .add_method(f, &[t.int.clone()], Ir::constant(7))
                    .unwrap();
                let compiler = Foreign::default();
                compiler.log.inject("f", phase, fault);
                *compiler.log.fault_after_waits.lock().unwrap() = Some(7);
                let log = compiler.log.clone();
                let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
                let failures = AtomicU64::new(0);
                thread::scope(|s| {
                    for _ in 0..8 {
                        s.spawn(|| {
                            let guard = engine.pin();
                            let mi = guard.dispatch(f, &[t.int.clone()]).unwrap();
                            match cache.compile(&guard, mi, &0) {
                                Ok(v) => panic!("{phase} {fault:?}: a caller got {v}"),
                                Err(e) => {
                                    match (&e, fault) {
                                        (CompileError::Phase { phase: p, .. }, Fault::Error)
                                        | (CompileError::Panicked { phase: p, .. }, Fault::Panic) =>
                                        {
                                            assert_eq!(*p, phase)
                                        }
                                        other => panic!("unexpected {other:?}"),
                                    }
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                    }
                });
                assert_eq!(
                    failures.load(Ordering::Relaxed),
                    8,
                    "{phase} {fault:?}: the owner and all seven waiters got the failure"
                );
                assert_eq!(engine.stats().compile_waits, 7);
                assert_eq!(engine.stats().phase_failures, 1, "the phase ran once");
                // Nothing partial is left: a later call completes and each phase succeeded once.
                let guard = engine.pin();
                let mi = guard.dispatch(f, &[t.int.clone()]).unwrap();
                assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 7);
                for p in [Phase::Infer, Phase::Codegen, Phase::Link] {
                    assert_eq!(log.runs("f", p), 1, "{phase} {fault:?}: {p}");
                }
                assert!(cache.versions(mi, &0).len() <= 1);
            });
        }
    }
}

#[test]
fn direct_and_mutual_recursion_terminate_on_one_thread() {
    watchdog(30, || {
        let engine = Engine::new();
        let t = types(&engine);
        let int = t.int.clone();
        for (name, value, callee) in [("fact", 1, "fact"), ("even", 10, "odd"), ("odd", 1, "even")]
        {
            let f = engine.declare_function(name).unwrap();
            engine
                .add_method(f, &[int.clone()], calls(value, &[callee], &int))
                .unwrap();
        }
        let compiler = Foreign::default();
        let log = compiler.log.clone();
        let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
        let guard = engine.pin();
        let fact = guard
            .dispatch(engine.function("fact").unwrap(), &[int.clone()])
            .unwrap();
        assert_eq!(
            *cache.compile(&guard, fact, &0).unwrap(),
            1,
            "the recursive call is in progress"
        );
        let even = guard
            .dispatch(engine.function("even").unwrap(), &[int.clone()])
            .unwrap();
        // odd compiles first (inside even) and sees even in progress; even then sees odd ready.
        assert_eq!(*cache.compile(&guard, even, &0).unwrap(), 11);
        assert_eq!(
            (
                log.runs("even", Phase::Infer),
                log.runs("odd", Phase::Infer)
            ),
            (1, 1)
        );
        drop(guard);
        // The cycle's edges were recorded: redefining odd invalidates even, and the reverse.
        engine
            .add_method(
                engine.function("odd").unwrap(),
                &[int.clone()],
                calls(2, &["even"], &int),
            )
            .unwrap();
        let guard = engine.pin();
        let even = guard
            .dispatch(engine.function("even").unwrap(), &[int.clone()])
            .unwrap();
        assert_eq!(*cache.compile(&guard, even, &0).unwrap(), 12);
        drop(guard);
        engine
            .add_method(
                engine.function("even").unwrap(),
                &[int.clone()],
                calls(20, &["odd"], &int),
            )
            .unwrap();
        let guard = engine.pin();
        let odd = guard
            .dispatch(engine.function("odd").unwrap(), &[int.clone()])
            .unwrap();
        assert_eq!(
            *cache.compile(&guard, odd, &0).unwrap(),
            22,
            "odd depended on even through the cycle"
        );
    });
}

#[test]
fn mutual_recursion_across_threads_terminates() {
    for round in 0..20 {
        watchdog(30, move || {
            let engine = Engine::new();
            let t = types(&engine);
            let int = t.int.clone();
            let ping = engine.declare_function("ping").unwrap();
            let pong = engine.declare_function("pong").unwrap();
            engine
                .add_method(ping, &[int.clone()], calls(10, &["pong"], &int))
                .unwrap();
            engine
                .add_method(pong, &[int.clone()], calls(1, &["ping"], &int))
                .unwrap();
            let compiler = Foreign::default();
            *compiler.log.infer_delay.lock().unwrap() = Some(Duration::from_millis(20 + round % 3));
            let log = compiler.log.clone();
            let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
            let barrier = Barrier::new(2);
            let results: Vec<i64> = thread::scope(|s| {
                let handles: Vec<_> = [ping, pong]
                    .into_iter()
                    .map(|f| {
                        let (engine, cache, barrier, int) =
                            (&engine, &cache, &barrier, int.clone());
                        s.spawn(move || {
                            let guard = engine.pin();
                            let mi = guard.dispatch(f, &[int]).unwrap();
                            barrier.wait();
                            *cache.compile(&guard, mi, &0).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // Each is compiled once; whichever saw the other in progress did without its value.
            assert_eq!(
                (
                    log.runs("ping", Phase::Infer),
                    log.runs("pong", Phase::Infer)
                ),
                (1, 1)
            );
            assert!(results[0] == 10 || results[0] == 11, "{results:?}");
            assert!(results[1] == 1 || results[1] == 11, "{results:?}");
            assert!(
                results[0] == 11 || results[1] == 11,
                "at least one saw the other finished: {results:?}"
            );
        });
    }
}

#[test]
fn no_reader_in_a_world_after_an_invalidation_receives_a_stale_result() {
    watchdog(120, || {
        let engine = Engine::new();
        let t = types(&engine);
        let int = t.int.clone();
        let f = engine.declare_function("f").unwrap();
        let g = engine.declare_function("g").unwrap();
        engine
            .add_method(f, &[int.clone()], calls(1_000_000, &["g"], &int))
            .unwrap();
        engine
            .add_method(g, &[int.clone()], Ir::constant(0))
            .unwrap();
        let cache = CompilerCache::new(&engine, "C", Foreign::default()).unwrap();
        let stop = AtomicBool::new(false);
        let checked = AtomicU64::new(0);
        thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let guard = engine.pin();
                        let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                        let got = *cache.compile(&guard, mi, &0).unwrap();
                        // What g is in this reader's world decides the only correct answer.
                        let g_now = guard.dispatch(g, &[int.clone()]).unwrap();
                        let expected = 1_000_000 + g_now.method().source::<Ir>().unwrap().value;
                        assert_eq!(got, expected, "stale result in world {}", guard.world());
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            s.spawn(|| {
                for i in 1..=2000 {
                    engine
                        .add_method(g, &[int.clone()], Ir::constant(i))
                        .unwrap();
                    if i % 64 == 0 {
                        thread::yield_now();
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
        });
        assert!(checked.load(Ordering::Relaxed) > 100);
    });
}

/// The race the walk's skip of dependents with nothing registered on them must survive: `k`
/// calls `h` calls `f` calls `g`, and `g` is redefined over and over. Every redefinition
/// invalidates `f` and `h`, so the next reader compiles a fresh `h`, on which nothing is
/// registered yet, and registers its fresh `k` on it while the next redefinition's walk lowers
/// that `h` and may find it a leaf (`crate::raw::edges` in the sources; its loom model
/// `edges_register_vs_skipped_set` checks the interleavings). Whoever wins, no reader may see a
/// `k` built on an old `g`.
#[test]
fn a_caller_registering_on_a_fresh_callee_never_misses_a_racing_invalidation() {
    watchdog(120, || {
        let engine = Engine::new();
        let t = types(&engine);
        let int = t.int.clone();
        for (name, value, callee) in [
            ("k", 1_000_000_000, Some("h")),
            ("h", 1_000_000, Some("f")),
            ("f", 1_000, Some("g")),
            ("g", 0, None),
        ] {
            let function = engine.declare_function(name).unwrap();
            let callees: Vec<&str> = callee.into_iter().collect();
            engine
                .add_method(function, &[int.clone()], calls(value, &callees, &int))
                .unwrap();
        }
        let k = engine.function("k").unwrap();
        let g = engine.function("g").unwrap();
        let cache = CompilerCache::new(&engine, "C", Foreign::default()).unwrap();
        let stop = AtomicBool::new(false);
        let checked = AtomicU64::new(0);
        let readers = 6;
        let started = Barrier::new(readers + 1);
        thread::scope(|s| {
            for _ in 0..readers {
                s.spawn(|| {
                    started.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let guard = engine.pin();
                        let mi = guard.dispatch(k, &[int.clone()]).unwrap();
                        let got = *cache.compile(&guard, mi, &0).unwrap();
                        let g_now = guard.dispatch(g, &[int.clone()]).unwrap();
                        let expected = 1_001_001_000 + g_now.method().source::<Ir>().unwrap().value;
                        assert_eq!(got, expected, "stale result in world {}", guard.world());
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            s.spawn(|| {
                started.wait();
                for i in 1..=10_000 {
                    engine
                        .add_method(g, &[int.clone()], Ir::constant(i))
                        .unwrap();
                    if i % 32 == 0 {
                        thread::yield_now();
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
        });
        // Each redefinition invalidates the chain above `g`, so readers compiled many fresh ones.
        assert!(checked.load(Ordering::Relaxed) > 100);
        assert!(engine.stats().infer_runs >= 100, "{:?}", engine.stats());
    });
}

#[test]
fn worlds_are_monotonic_and_mutations_atomic() {
    watchdog(60, || {
        let engine = Engine::new();
        let lattice = engine.lattice();
        let names: Vec<Ty> = (0..400)
            .map(|i| {
                lattice
                    .declare_concrete(&format!("T{i}"), &Ty::any())
                    .unwrap()
            })
            .collect();
        let f = engine.declare_function("f").unwrap();
        let first = engine.current_world().get();
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let guard = engine.pin();
                        let w = guard.world().get();
                        assert!(w >= last, "world went back from {last} to {w}");
                        last = w;
                        // In world w exactly the first w - first methods exist.
                        let visible = (w - first) as usize;
                        for probe in [visible.saturating_sub(1), visible] {
                            if probe >= names.len() {
                                continue;
                            }
                            let found = guard.dispatch(f, &[names[probe].clone()]).is_ok();
                            assert_eq!(found, probe < visible, "world {w}, method {probe}");
                        }
                    }
                });
            }
            s.spawn(|| {
                for (i, ty) in names.iter().enumerate() {
                    engine.add_method(f, &[ty.clone()], i).unwrap();
                }
                stop.store(true, Ordering::Relaxed);
            });
        });
        assert_eq!(engine.current_world().get(), first + names.len() as u64);
    });
}

#[test]
fn engine_and_caches_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<CompilerCache<Foreign>>();
    assert_send_sync::<compiler_caching::MethodInstance>();
    assert_send_sync::<compiler_caching::CodeInstance<Foreign>>();
}

/// Compiles `a -> {b, c}`, `b -> c`, `c`, staged so that each compilation waits on a callee
/// another thread is compiling: a chain of waits, never a cycle.
struct Staged {
    started_b: test_support::threads::Signal,
    started_c: test_support::threads::Signal,
    a_calls_b: test_support::threads::Signal,
    b_calls_c: test_support::threads::Signal,
    in_progress: AtomicU64,
}

impl compiler_caching::Compiler for Staged {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = ();
    type Error = String;

    fn infer(&self, cx: &mut compiler_caching::InferCx<'_, Self>) -> Result<(), String> {
        let name = *cx.instance().method().source::<&str>().unwrap();
        let callees: &[&str] = match name {
            "a" => {
                // b's compilation is under way on another thread before a calls b.
                self.started_b.wait_for(1);
                self.a_calls_b.raise();
                &["b", "c"]
            }
            "b" => {
                self.started_b.raise();
                self.started_c.wait_for(1);
                self.b_calls_c.raise();
                &["c"]
            }
            _ => {
                self.started_c.raise();
                // c finishes only once a and b are calling their callees.
                self.a_calls_b.wait_for(1);
                self.b_calls_c.wait_for(1);
                &[]
            }
        };
        for callee in callees {
            let f = cx.engine().function(callee).map_err(|e| e.to_string())?;
            let mi = cx
                .dispatch(f, cx.instance().argtypes())
                .map_err(|e| e.to_string())?;
            if let compiler_caching::Callee::InProgress =
                cx.compile(&mi).map_err(|e| e.to_string())?
            {
                self.in_progress.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
    fn codegen(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn an_acyclic_call_graph_compiled_by_threads_waiting_on_each_other_in_one_world_never_sees_in_progress(
) {
    watchdog(60, || {
        let engine = Engine::new();
        let t = types(&engine);
        let int = t.int.clone();
        for name in ["a", "b", "c"] {
            let f = engine.declare_function(name).unwrap();
            engine.add_method(f, &[int.clone()], name).unwrap();
        }
        // Later worlds change nothing of it; every compilation runs in one world.
        let world = engine.current_world();
        let other = engine.declare_function("other").unwrap();
        engine.add_method(other, &[int.clone()], "other").unwrap();
        let cache = CompilerCache::new(
            &engine,
            "C",
            Staged {
                started_b: Default::default(),
                started_c: Default::default(),
                a_calls_b: Default::default(),
                b_calls_c: Default::default(),
                in_progress: AtomicU64::new(0),
            },
        )
        .unwrap();
        thread::scope(|s| {
            for name in ["a", "b", "c"] {
                let (engine, cache, int) = (&engine, &cache, int.clone());
                s.spawn(move || {
                    let guard = engine.pin_world(world).unwrap();
                    let f = engine.function(name).unwrap();
                    let mi = guard.dispatch(f, &[int]).unwrap();
                    cache.compile(&guard, mi, &()).unwrap();
                });
            }
        });
        assert_eq!(
            cache.compiler().in_progress.load(Ordering::Relaxed),
            0,
            "a call graph without a cycle in the world compiled saw InProgress"
        );
    });
}

/// Hits are tallied in each guard and added when it drops, to the statistics shard of the
/// guard's pin slot; threads pinned at the same time hold distinct slots, so with fewer than 32
/// of them no tally is lost: once every guard is dropped the counters are exact.
/// Hit counts are exact with more threads than the engine's other counters have shards (32):
/// guards hand their tallies to their own pin slot, which only its thread writes. (They used to
/// be added to a shard chosen by slot number with a plain load and store, and two threads whose
/// slots shared a shard could lose counts.)
#[test]
fn hit_counters_are_exact_with_forty_eight_threads_pinning_at_once() {
    const THREADS: u64 = 48;
    const GUARDS: u64 = 2_000;
    const PER_GUARD: u64 = 5;
    let setup = test_support::setups::HitSetup::new();
    let cache = setup.cache("C");
    let mi = setup
        .engine
        .pin()
        .dispatch(setup.f, &setup.args)
        .unwrap()
        .clone();
    cache.compile(&setup.engine.pin(), &mi, &0).unwrap();
    let before = setup.engine.stats();
    let start = Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                for _ in 0..GUARDS {
                    let guard = setup.engine.pin();
                    for _ in 0..PER_GUARD {
                        let mi = guard.dispatch(setup.f, &setup.args).unwrap();
                        cache.compile(&guard, mi, &0).unwrap();
                    }
                }
            });
        }
    });
    let after = setup.engine.stats();
    let total = THREADS * GUARDS * PER_GUARD;
    assert_eq!(after.dispatch_hits - before.dispatch_hits, total);
    assert_eq!(after.code_hits - before.code_hits, total);
    assert_eq!(after.dispatch_misses, before.dispatch_misses);
    assert_eq!(after.code_misses, before.code_misses);
}
