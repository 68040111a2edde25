//! Retention (docs/semantics.md §8): pinned worlds stay answerable; what no pinned or current world can
//! see is reclaimed, so memory stays bounded under a steady churn of redefinitions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use compiler_caching::{CompilerCache, Engine, Error};
use test_support::foreign::{Call, Foreign, Ir};
use test_support::setups::types;

fn caller(int: &compiler_caching::Ty) -> Ir {
    Ir {
        value: 1_000_000,
        calls: vec![Call {
            function: "g".into(),
            args: vec![int.clone()],
        }],
        opaque_deps: Vec::new(),
    }
}

/// `f(Int64)` calling `g(Int64)`, which returns 0, and a cache to compile them with.
struct CallerOfG {
    engine: Engine,
    int: compiler_caching::Ty,
    f: compiler_caching::Function,
    g: compiler_caching::Function,
    cache: CompilerCache<Foreign>,
}

fn caller_of_g() -> CallerOfG {
    let engine = Engine::new();
    let int = types(&engine).int;
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(f, &[int.clone()], caller(&int)).unwrap();
    engine
        .add_method(g, &[int.clone()], Ir::constant(0))
        .unwrap();
    let cache = CompilerCache::new(&engine, "C", Foreign::default()).unwrap();
    CallerOfG {
        engine,
        int,
        f,
        g,
        cache,
    }
}

#[test]
fn pinned_worlds_survive_reclamation_and_unpinned_ones_do_not() {
    let engine = Engine::new();
    let t = types(&engine);
    let g = engine.declare_function("g").unwrap();
    engine
        .add_method(g, &[t.int.clone()], Ir::constant(1))
        .unwrap();
    let old = engine.pin();
    let old_world = old.world();
    let unpinned_world = {
        engine
            .add_method(g, &[t.int.clone()], Ir::constant(2))
            .unwrap();
        engine.current_world()
    };
    engine
        .add_method(g, &[t.int.clone()], Ir::constant(3))
        .unwrap();
    engine.reclaim();
    // The pinned world still answers as it stood.
    let mi = old.dispatch(g, &[t.int.clone()]).unwrap();
    assert_eq!(mi.method().source::<Ir>().unwrap().value, 1);
    // A world after the oldest pin is still retained too (the horizon is the oldest pin).
    assert!(engine.pin_world(unpinned_world).is_ok());
    drop(old);
    let census = engine.reclaim();
    assert_eq!(census.methods, 1, "only the live method is left");
    assert_eq!(
        engine.pin_world(old_world).unwrap_err(),
        Error::WorldNotRetained {
            world: old_world,
            oldest: engine.current_world()
        }
    );
    assert_eq!(engine.oldest_retained_world(), engine.current_world());
    let now = engine.pin();
    let mi = now.dispatch(g, &[t.int.clone()]).unwrap();
    assert_eq!(mi.method().source::<Ir>().unwrap().value, 3);
}

/// Memory under 100,000 redefinitions with readers racing them is bounded by the window of worlds
/// the readers hold back, not by how many redefinitions there were. How long a reader stays pinned
/// depends on the scheduler (a reader preempted mid-lookup holds its world for a whole time slice,
/// thousands of redefinitions on a loaded machine), so the bound is stated against the window
/// measured at each checkpoint: everything held is either visible from the floor or garbage since
/// the last reclamation, which runs once garbage passes what it last kept.
#[test]
fn memory_stays_bounded_under_100k_redefinitions_with_readers() {
    let CallerOfG {
        engine,
        int,
        f,
        g,
        cache,
    } = caller_of_g();
    let stop = AtomicBool::new(false);
    const REDEFINITIONS: i64 = 100_000;
    // Entries one redefinition can leave behind: the replaced method, dispatch entries of `f` and
    // `g`, and a code instance and slot version of each.
    const PER_WORLD: usize = 8;
    const SLACK: usize = 4096;
    let checkpoints = thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let guard = engine.pin();
                    let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                    let v = *cache.compile(&guard, mi, &0).unwrap();
                    assert!((1_000_000..=1_000_000 + REDEFINITIONS).contains(&v));
                }
            });
        }
        let writer = s.spawn(|| {
            let mut checkpoints = Vec::new();
            for i in 1..=REDEFINITIONS {
                engine
                    .add_method(g, &[int.clone()], Ir::constant(i))
                    .unwrap();
                if i % 1000 == 0 {
                    let census = engine.census().total();
                    let window =
                        engine.current_world().get() - engine.oldest_retained_world().get();
                    checkpoints.push((census, window as usize));
                }
            }
            stop.store(true, Ordering::Relaxed);
            checkpoints
        });
        writer.join().unwrap()
    });
    let (peak, window_at_peak) = checkpoints.iter().copied().max().unwrap();
    let widest = checkpoints.iter().map(|&(_, w)| w).max().unwrap();
    eprintln!(
        "peak census {peak} entries (window {window_at_peak} worlds, widest {widest}) over \
         {REDEFINITIONS} redefinitions"
    );
    for &(census, window) in &checkpoints {
        assert!(
            census <= 2 * PER_WORLD * window + SLACK,
            "census {census} entries with only {window} worlds held back"
        );
    }
    let after = engine.reclaim();
    assert!(after.total() < 64, "{after:?}");
    assert!(
        engine.stats().reclaimed > REDEFINITIONS as u64,
        "{:?}",
        engine.stats()
    );
}

/// A compiled value that counts how many exist, to show nothing outlives the engine.
struct Counted(std::sync::Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct CountingCompiler(std::sync::Arc<AtomicUsize>);

impl compiler_caching::Compiler for CountingCompiler {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = Counted;
    type Error = String;

    fn infer(&self, cx: &mut compiler_caching::InferCx<'_, Self>) -> Result<(), String> {
        // Every function calls the next one: a chain of backedges in both directions.
        let name = cx
            .engine()
            .function_name(cx.instance().method().function())
            .unwrap();
        let next: usize = name[1..].parse::<usize>().unwrap() + 1;
        if let Ok(f) = cx.engine().function(&format!("f{next}")) {
            let args = cx.instance().argtypes();
            let mi = cx.dispatch(f, args).map_err(|e| e.to_string())?;
            cx.compile(&mi).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    fn codegen(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<Counted, String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Counted(self.0.clone()))
    }
}

#[test]
fn dropping_the_engine_and_its_caches_frees_every_code_instance() {
    let live = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &compiler_caching::Ty::any())
            .unwrap();
        for i in 0..20 {
            let f = engine.declare_function(&format!("f{i}")).unwrap();
            engine.add_method(f, &[int.clone()], ()).unwrap();
        }
        let cache = CompilerCache::new(&engine, "C", CountingCompiler(live.clone())).unwrap();
        {
            let guard = engine.pin();
            let mi = guard
                .dispatch(engine.function("f0").unwrap(), &[int.clone()])
                .unwrap();
            cache.compile(&guard, mi, &()).unwrap();
        }
        assert_eq!(live.load(Ordering::Relaxed), 20);
        // Invalidate half of the chain and recompile: old and new instances coexist.
        engine
            .add_method(engine.function("f10").unwrap(), &[int.clone()], ())
            .unwrap();
        let guard = engine.pin();
        let mi = guard
            .dispatch(engine.function("f0").unwrap(), &[int.clone()])
            .unwrap();
        cache.compile(&guard, mi, &()).unwrap();
        assert_eq!(live.load(Ordering::Relaxed), 31);
    }
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "backedges must not keep code instances alive"
    );
}

/// Calls are given per function as its source: `f` calls the functions listed.
struct Recursive(std::sync::Arc<AtomicUsize>);

impl compiler_caching::Compiler for Recursive {
    type Key = u8;
    type Inferred = ();
    type Artifact = ();
    type Linked = Counted;
    type Error = String;

    fn infer(&self, cx: &mut compiler_caching::InferCx<'_, Self>) -> Result<(), String> {
        let calls: Vec<&'static str> = cx
            .instance()
            .method()
            .source::<Vec<&'static str>>()
            .cloned()
            .unwrap_or_default();
        for name in calls {
            let f = cx.engine().function(name).map_err(|e| e.to_string())?;
            let mi = cx
                .dispatch(f, cx.instance().argtypes())
                .map_err(|e| e.to_string())?;
            cx.compile(&mi).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    fn codegen(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<Counted, String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Counted(self.0.clone()))
    }
}

/// Recursive code (a function calling itself, two calling each other) depends on its own slots;
/// that must not keep it alive once the cache and the engine are gone.
#[test]
fn dropping_the_engine_and_its_caches_frees_recursive_code() {
    let live = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &compiler_caching::Ty::any())
            .unwrap();
        let define = |name: &str, calls: Vec<&'static str>| {
            let f = engine.declare_function(name).unwrap();
            engine.add_method(f, &[int.clone()], calls).unwrap();
        };
        define("fact", vec!["fact"]);
        define("even", vec!["odd"]);
        define("odd", vec!["even"]);
        define("main", vec!["fact", "even", "main"]);
        let cache = CompilerCache::new(&engine, "C", Recursive(live.clone())).unwrap();
        for key in 0..3 {
            let guard = engine.pin();
            let mi = guard
                .dispatch(engine.function("main").unwrap(), &[int.clone()])
                .unwrap();
            cache.compile(&guard, mi, &key).unwrap();
        }
        assert_eq!(live.load(Ordering::Relaxed), 4 * 3);
        // Redefine one of them and recompile: old and new versions coexist for a while.
        engine
            .add_method(
                engine.function("odd").unwrap(),
                &[int.clone()],
                vec!["even"],
            )
            .unwrap();
        let guard = engine.pin();
        let mi = guard
            .dispatch(engine.function("main").unwrap(), &[int.clone()])
            .unwrap();
        cache.compile(&guard, mi, &0).unwrap();
        assert!(live.load(Ordering::Relaxed) > 12);
    }
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "recursive code kept itself alive after the engine was dropped"
    );
}

/// Each instance of a long call chain holds the one it calls, and once invalidated the one the
/// invalidation came through: reclaiming or dropping the chain must not recurse link by link.
#[test]
fn long_call_chains_are_reclaimed_and_dropped_without_deep_recursion() {
    const N: usize = 20_000;
    let run = || {
        let engine = Engine::new();
        let t = types(&engine);
        let cache = CompilerCache::new(&engine, "Test", Foreign::default()).unwrap();
        let names: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let f = engine.declare_function(name).unwrap();
            let ir = match i {
                0 => Ir::constant(0),
                _ => test_support::setups::calls(0, &[names[i - 1].as_str()], &t.int),
            };
            engine.add_method(f, &[t.int.clone()], ir).unwrap();
        }
        {
            let guard = engine.pin();
            for name in &names {
                let mi = guard
                    .dispatch(engine.function(name).unwrap(), &[t.int.clone()])
                    .unwrap();
                cache.compile(&guard, mi, &0).unwrap();
            }
        }
        let root = engine.function(&names[0]).unwrap();
        engine
            .add_method(root, &[t.int.clone()], Ir::constant(1))
            .unwrap();
        assert!(engine.stats().invalidated_code_instances >= N as u64);
        let census = engine.reclaim();
        assert!(census.code_instances < 8, "{census:?}");
        drop(cache);
        drop(engine);
    };
    // A small stack: recursing once per link would need far more.
    thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .expect("no stack overflow");
}

/// With automatic reclamation off, nothing is reclaimed until `reclaim` is called, whatever
/// accumulates; then everything no world can see goes at once.
#[test]
fn with_automatic_reclamation_off_garbage_waits_for_an_explicit_reclaim() {
    let CallerOfG {
        engine,
        int,
        f,
        g,
        cache,
    } = caller_of_g();
    engine.set_auto_reclaim(false);
    // Far more garbage than the automatic threshold (1024 entries): each round invalidates 64
    // compiled instances of f.
    const ROUNDS: i64 = 40;
    for i in 1..=ROUNDS {
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[int.clone()]).unwrap();
        for key in 0..64 {
            assert_eq!(*cache.compile(&guard, mi, &key).unwrap(), 1_000_000 + i - 1);
        }
        drop(guard);
        engine
            .add_method(g, &[int.clone()], Ir::constant(i))
            .unwrap();
    }
    let held = engine.census();
    assert!(
        held.code_instances >= 64 * ROUNDS as usize,
        "nothing was reclaimed automatically: {held:?}"
    );
    assert_eq!(engine.stats().reclaimed, 0, "{:?}", engine.stats());
    let after = engine.reclaim();
    assert_eq!(after.code_instances, 0, "{after:?}");
    assert!(engine.stats().reclaimed >= 64 * ROUNDS as u64);
    // Turned back on, reclamation runs by itself again.
    engine.set_auto_reclaim(true);
    for i in 0..ROUNDS {
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[int.clone()]).unwrap();
        for key in 0..64 {
            cache.compile(&guard, mi, &key).unwrap();
        }
        drop(guard);
        engine
            .add_method(g, &[int.clone()], Ir::constant(-i))
            .unwrap();
    }
    assert!(engine.census().code_instances < 64 * ROUNDS as usize / 2);
}

/// A world pinned while one function is redefined many more times than the length at which a
/// definition prunes the function's history (64) still answers as it stood, and so do the worlds
/// pinned in between. Every world from the oldest pin on can still be pinned, so everything they
/// see is kept until that pin goes.
#[test]
fn a_world_pinned_across_hundreds_of_redefinitions_answers_as_it_stood() {
    let engine = Engine::new();
    let t = types(&engine);
    let int = t.int.clone();
    let g = engine.declare_function("g").unwrap();
    let value = |guard: &compiler_caching::Guard<'_>| {
        guard
            .dispatch(g, &[int.clone()])
            .unwrap()
            .method()
            .source::<Ir>()
            .unwrap()
            .value
    };
    engine
        .add_method(g, &[int.clone()], Ir::constant(0))
        .unwrap();
    let first = engine.pin();
    let mut pinned = Vec::new();
    for i in 1..=300 {
        engine
            .add_method(g, &[int.clone()], Ir::constant(i))
            .unwrap();
        if i % 100 == 0 {
            pinned.push((i, engine.pin()));
        }
    }
    assert_eq!(value(&first), 0);
    for (i, guard) in &pinned {
        assert_eq!(value(guard), *i);
    }
    assert_eq!(value(&engine.pin()), 300);
    assert_eq!(engine.census().methods, 301);
    // Once the oldest pin goes, the history before the next one is pruned.
    drop(first);
    assert_eq!(engine.reclaim().methods, 201);
    let (i, guard) = &pinned[0];
    assert_eq!(value(guard), *i);
    drop(pinned);
    assert_eq!(engine.reclaim().methods, 1);
}

/// Code compiled in a pinned older world that a later mutation had changed is garbage once that
/// world is unpinned, and counts toward automatic reclamation (the compilation's own dependency,
/// already closed, closes it as it is recorded): a reader of an old world cannot compile any
/// amount that no reclamation is ever due for.
#[test]
fn code_compiled_in_an_old_world_counts_toward_automatic_reclamation() {
    let CallerOfG {
        engine,
        int,
        f,
        g,
        cache,
    } = caller_of_g();
    let old = engine.pin();
    engine
        .add_method(g, &[int.clone()], Ir::constant(1))
        .unwrap();
    // Twice the automatic threshold (1024 entries), all compiled in the old world only.
    const KEYS: u32 = 2048;
    let mi = old.dispatch(f, &[int.clone()]).unwrap();
    for key in 0..KEYS {
        let ci = cache.compile_instance(&old, mi, &key).unwrap();
        assert_eq!(*ci.linked().unwrap(), 1_000_000);
        assert_eq!(
            ci.validity().max,
            Some(engine.current_world()),
            "compiled for the old world only"
        );
    }
    drop(old);
    assert!(engine.census().code_instances >= KEYS as usize);
    let reclaimed = engine.stats().reclaimed;
    // One small mutation; what the old world compiled makes a reclamation due.
    let h = engine.declare_function("h").unwrap();
    engine
        .add_method(h, &[int.clone()], Ir::constant(2))
        .unwrap();
    let held = engine.census();
    assert!(
        engine.stats().reclaimed >= reclaimed + u64::from(KEYS),
        "the old world's code was not reclaimed: {held:?}, {:?}",
        engine.stats()
    );
    assert_eq!(held.code_instances, 0, "{held:?}");
}

/// The same for calls dispatched in an old world: each answer cached for it, closed where a
/// later mutation changed it, counts toward automatic reclamation as it is cached.
#[test]
fn calls_dispatched_in_an_old_world_count_toward_automatic_reclamation() {
    let engine = Engine::new();
    let l = engine.lattice();
    const TYPES: usize = 2048;
    let tys: Vec<compiler_caching::Ty> = (0..TYPES)
        .map(|i| {
            l.declare_concrete(&format!("T{i}"), &compiler_caching::Ty::any())
                .unwrap()
        })
        .collect();
    let g = engine.declare_function("g").unwrap();
    let any = compiler_caching::Ty::any();
    engine
        .add_method(g, &[any.clone()], Ir::constant(0))
        .unwrap();
    let old = engine.pin();
    engine
        .add_method(g, &[any.clone()], Ir::constant(1))
        .unwrap();
    for ty in &tys {
        let mi = old.dispatch(g, std::slice::from_ref(ty)).unwrap();
        assert_eq!(mi.method().source::<Ir>().unwrap().value, 0);
    }
    drop(old);
    let before = engine.census();
    assert!(before.dispatch_entries >= TYPES, "{before:?}");
    let h = engine.declare_function("h").unwrap();
    engine.add_method(h, &[any], Ir::constant(2)).unwrap();
    let held = engine.census();
    assert!(
        held.dispatch_entries < TYPES / 2,
        "the old world's answers were not reclaimed: {held:?}, {:?}",
        engine.stats()
    );
}

/// A reclamation that runs while an old world is pinned keeps what that world sees, and the
/// next automatic one waits for as much garbage again as it kept (so that each pass over what is
/// held is paid for by at least as much garbage): after the pin goes, what it held stays until
/// then, or until `reclaim` is called.
#[test]
fn a_reclamation_under_an_old_pin_sets_the_next_automatic_threshold() {
    let engine = Engine::new();
    let l = engine.lattice();
    const TYPES: usize = 2048;
    let tys: Vec<compiler_caching::Ty> = (0..TYPES)
        .map(|i| {
            l.declare_concrete(&format!("T{i}"), &compiler_caching::Ty::any())
                .unwrap()
        })
        .collect();
    let any = compiler_caching::Ty::any();
    let g = engine.declare_function("g").unwrap();
    let h = engine.declare_function("h").unwrap();
    engine
        .add_method(g, &[any.clone()], Ir::constant(0))
        .unwrap();
    let old = engine.pin();
    engine
        .add_method(g, &[any.clone()], Ir::constant(1))
        .unwrap();
    for ty in &tys {
        old.dispatch(g, std::slice::from_ref(ty)).unwrap();
    }
    // Run under the pin: the old world's answers are kept, and set the next threshold.
    assert!(engine.reclaim().dispatch_entries >= TYPES);
    drop(old);
    let reclaimed = engine.stats().reclaimed;
    // More garbage than the fixed minimum (1024), less than the pass kept.
    for i in 0..1500 {
        engine
            .add_method(h, &[any.clone()], Ir::constant(i))
            .unwrap();
    }
    assert_eq!(engine.stats().reclaimed, reclaimed, "{:?}", engine.census());
    assert!(engine.census().dispatch_entries >= TYPES);
    // An explicit reclamation frees them at once.
    assert!(engine.reclaim().dispatch_entries < TYPES / 2);
}
