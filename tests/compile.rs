//! The compile API's paths (docs/semantics.md §6, §7), each reached on purpose rather than by a
//! race: hits and misses and their counters, `compile_instance`, `lookup`, a top-level compile
//! re-entering itself, and a code instance published already closed because its dependency
//! changed while it was compiled.

use std::sync::OnceLock;
use std::thread;

use compiler_caching::{CompileError, Compiler, CompilerCache, Engine, InferCx, PhaseCx, Ty};
use test_support::foreign::{Foreign, Ir};
use test_support::setups::types;
use test_support::threads::{watchdog, Signal};

#[test]
fn hits_and_misses_are_counted_and_compile_instance_agrees_with_compile() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    engine
        .add_method(f, &[t.int.clone()], Ir::constant(3))
        .unwrap();
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
    let guard = engine.pin();
    let mi = &guard.dispatch(f, &[t.int.clone()]).unwrap().clone();
    assert!(
        cache.lookup(&guard, mi, &0).unwrap().is_none(),
        "nothing compiled yet"
    );

    // A miss through compile_instance runs every phase once and returns the instance.
    let ci = cache.compile_instance(&guard, mi, &0).unwrap();
    assert_eq!(ci.linked(), Some(&3));
    assert_eq!(ci.inferred(), &3);
    assert_eq!(ci.artifact(), Some(&3i64.to_le_bytes().to_vec()));
    assert_eq!(ci.instance(), mi);
    assert_eq!(ci.key(), &0);
    assert_eq!(ci.compiled_in(), guard.world());
    assert!(ci.is_valid_in(guard.world()));
    assert!(ci.invalidation().is_none());
    // Then compile and compile_instance hit the same instance.
    assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 3);
    let again = cache.compile_instance(&guard, mi, &0).unwrap();
    assert_eq!(again.validity(), ci.validity());
    assert_eq!(cache.versions(mi, &0).len(), 1);
    assert_eq!(log.runs("f", compiler_caching::Phase::Infer), 1);
    drop(guard);
    let stats = engine.stats();
    assert_eq!(stats.code_misses, 1, "{stats:?}");
    assert_eq!(stats.code_hits, 2, "{stats:?}");
    assert_eq!(stats.compile_waits, 0, "{stats:?}");

    // Another key is another miss; a lookup finds what compile made, whatever its phases.
    let guard = engine.pin();
    assert_eq!(*cache.compile(&guard, mi, &1).unwrap(), 3);
    assert!(cache.lookup(&guard, mi, &1).unwrap().is_some());
    drop(guard);
    assert_eq!(engine.stats().code_misses, 2);
}

/// A compiler whose infer compiles its own instance again through the top-level API.
struct Reenter;

static REENTER_CACHE: OnceLock<CompilerCache<Reenter>> = OnceLock::new();

impl Compiler for Reenter {
    type Key = ();
    type Inferred = String;
    type Artifact = String;
    type Linked = String;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<String, String> {
        let cache = REENTER_CACHE.get().ok_or("no cache")?;
        let guard = cx.engine().pin();
        Ok(match cache.compile(&guard, cx.instance(), &()) {
            Err(e @ CompileError::Reentered { .. }) => e.to_string(),
            other => format!("unexpected {other:?}"),
        })
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &String) -> Result<String, String> {
        Ok(v.clone())
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &String) -> Result<String, String> {
        Ok(v.clone())
    }
}

#[test]
fn a_top_level_compile_from_inside_the_same_compilation_is_reentered_not_deadlocked() {
    watchdog(30, || {
        let engine = Engine::new();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[Ty::any()], ()).unwrap();
        let cache =
            REENTER_CACHE.get_or_init(|| CompilerCache::new(&engine, "C", Reenter).unwrap());
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[Ty::any()]).unwrap();
        let got = cache.compile(&guard, mi, &()).unwrap();
        assert!(got.contains("re-entered itself"), "{got}");
        assert!(got.contains("InferCx::compile"), "{got}");
    });
}

/// `f`'s infer dispatches `g`, then blocks until released.
#[derive(Default)]
struct Blocking {
    inferred: Signal,
    release: Signal,
    block: std::sync::atomic::AtomicBool,
}

impl Compiler for Blocking {
    type Key = ();
    type Inferred = i64;
    type Artifact = i64;
    type Linked = i64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
        let g = cx.engine().function("g").map_err(|e| e.to_string())?;
        let callee = cx
            .dispatch(g, cx.instance().argtypes())
            .map_err(|e| e.to_string())?;
        let value = *callee.method().source::<i64>().ok_or("not a number")?;
        if self.block.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.inferred.raise();
            self.release.wait_for(1);
        }
        Ok(value)
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> {
        Ok(*v)
    }
}

/// A dependency invalidated while its dependent is being compiled: the mutation's own walk reaches
/// the running compilation (its dependencies are registered as they are recorded), so the
/// dependent is published already closed at the invalidating world with the mutation as its
/// cause, still answers its own world, and is recompiled in the new one.
#[test]
fn an_instance_whose_dependency_changes_mid_compile_is_published_closed() {
    watchdog(30, || {
        let engine = Engine::new();
        let t = types(&engine);
        let int = t.int.clone();
        let f = engine.declare_function("f").unwrap();
        let g = engine.declare_function("g").unwrap();
        engine.add_method(f, &[int.clone()], ()).unwrap();
        engine.add_method(g, &[int.clone()], 1_i64).unwrap();
        let cache = CompilerCache::new(&engine, "C", Blocking::default()).unwrap();
        cache
            .compiler()
            .block
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let compiled_in = engine.current_world();
        thread::scope(|s| {
            let compile = s.spawn(|| {
                let guard = engine.pin();
                let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                *cache.compile(&guard, mi, &()).unwrap()
            });
            // Staged: infer has read g's answer and is blocked; now g changes.
            cache.compiler().inferred.wait_for(1);
            engine.add_method(g, &[int.clone()], 2_i64).unwrap();
            cache.compiler().release.raise();
            assert_eq!(compile.join().unwrap(), 1, "answered in its own world");
        });
        let changed_in = engine.current_world();
        let mi = engine
            .method_instance(f, &[int.clone()], changed_in, engine.global_stack())
            .unwrap();
        let versions = cache.versions(&mi, &());
        assert_eq!(versions.len(), 1);
        let closed = &versions[0];
        assert_eq!(closed.compiled_in(), compiled_in);
        assert_eq!(closed.validity().max, Some(changed_in));
        assert!(!closed.is_valid_in(changed_in));
        let why = closed
            .invalidation()
            .expect("published closed, with a cause");
        assert_eq!(why.world, changed_in);
        assert!(why.mutation.contains("g(Int64) replaced"), "{why}");
        assert!(why.trigger.contains("dispatch g(Int64)"), "{why}");
        assert_eq!(why.chain.len(), 1, "{why}");
        // The new world compiles afresh against the new g.
        let guard = engine.pin();
        assert_eq!(*cache.compile(&guard, &mi, &()).unwrap(), 2);
        assert_eq!(cache.versions(&mi, &()).len(), 2);
    });
}

/// A cold compile of a call chain 10^4 calls deep nests one compilation per call; on a thread
/// with a 2 MiB stack (and in a debug build) it continues on heap-allocated stack segments
/// instead of overflowing.
#[test]
fn a_cold_compile_of_a_ten_thousand_deep_call_chain_completes() {
    const N: usize = 10_000;
    let run = || {
        let engine = Engine::new();
        let t = types(&engine);
        let names: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let f = engine.declare_function(name).unwrap();
            let ir = match names.get(i + 1) {
                Some(next) => test_support::setups::calls(1, &[next.as_str()], &t.int),
                None => Ir::constant(1),
            };
            engine.add_method(f, &[t.int.clone()], ir).unwrap();
        }
        let compiler = Foreign::default();
        let log = compiler.log.clone();
        let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
        let guard = engine.pin();
        let top = guard
            .dispatch(engine.function("c0").unwrap(), &[t.int.clone()])
            .unwrap();
        assert_eq!(*cache.compile(&guard, top, &0).unwrap(), N as i64);
        assert_eq!(log.total(compiler_caching::Phase::Infer), N);
    };
    watchdog(300, move || {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .expect("no stack overflow");
    });
}

/// Dispatches the function its method's source names, then fails inference unless `succeed`.
struct DispatchThenFail {
    succeed: bool,
}

impl Compiler for DispatchThenFail {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = ();
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<(), String> {
        let callee = *cx
            .instance()
            .method()
            .source::<compiler_caching::Function>()
            .unwrap();
        cx.dispatch(callee, &[Ty::any()])
            .map_err(|e| e.to_string())?;
        if self.succeed {
            Ok(())
        } else {
            Err("inference failed after recording a dependency".into())
        }
    }

    fn codegen(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }

    fn link(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn a_failed_inference_is_not_counted_as_an_invalidated_code_instance() {
    for succeed in [false, true] {
        let engine = Engine::new();
        let g = engine.declare_function("g").unwrap();
        engine.add_method(g, &[Ty::any()], ()).unwrap();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[Ty::any()], g).unwrap();
        let cache = CompilerCache::new(&engine, "C", DispatchThenFail { succeed }).unwrap();
        let mi = engine.pin().dispatch(f, &[Ty::any()]).unwrap().clone();
        for _ in 0..5 {
            let guard = engine.pin();
            assert_eq!(cache.compile(&guard, &mi, &()).is_ok(), succeed);
        }
        let before = engine.stats().invalidated_code_instances;
        // Redefining the callee reaches whatever registered on its dispatch answer.
        engine.add_method(g, &[Ty::any()], ()).unwrap();
        let invalidated = engine.stats().invalidated_code_instances - before;
        // Five failed attempts published nothing; one success published one instance.
        assert_eq!(invalidated, u64::from(succeed), "succeed = {succeed}");
        let guard = engine.pin();
        assert_eq!(cache.compile(&guard, &mi, &()).is_ok(), succeed);
    }
}
