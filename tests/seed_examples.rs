//! The seed document's examples (CompilerCaching.jl README), in Rust, asserting phase-run counts.

use compiler_caching::{CompilerCache, Engine, Error, Phase, Ty};
use test_support::foreign::{Foreign, Ir};
use test_support::setups::types;

#[test]
fn basic_example_compiles_once_then_hits() {
    // my_function(x::Int) = x + 100; cache = CompilerCache(:MyCompiler); call(my_function, 42)
    let engine = Engine::new();
    let t = types(&engine);
    let my_function = engine.declare_function("my_function").unwrap();
    engine
        .add_method(my_function, &[t.int.clone()], Ir::constant(100))
        .unwrap();
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(&engine, "MyCompiler", compiler).unwrap();

    let call = |args: &[Ty]| -> i64 {
        let guard = engine.pin();
        let mi = guard.dispatch(my_function, args).unwrap();
        *cache.compile(&guard, mi, &0).unwrap()
    };
    assert_eq!(call(&[t.int.clone()]), 100);
    for phase in [Phase::Infer, Phase::Codegen, Phase::Link] {
        assert_eq!(log.runs("my_function", phase), 1, "{phase}");
    }
    let hits = engine.stats().code_hits;
    assert_eq!(call(&[t.int.clone()]), 100);
    assert_eq!(engine.stats().code_hits, hits + 1);
    assert_eq!(log.total(Phase::Infer), 1, "a hit runs no phase");
    // The seed's `throw(MethodError(f, args))`: no method is a typed error, not a panic.
    let guard = engine.pin();
    assert!(matches!(
        guard.dispatch(my_function, &[t.float.clone()]),
        Err(Error::NoMethod { .. })
    ));
}

#[test]
fn sharding_keys_partition_the_cache() {
    // CompilerCache{@NamedTuple{opt_level::Int}}(:MyCompiler)
    let engine = Engine::new();
    let t = types(&engine);
    let my_function = engine.declare_function("my_function").unwrap();
    engine
        .add_method(my_function, &[t.int.clone()], Ir::constant(100))
        .unwrap();
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(&engine, "MyCompiler", compiler).unwrap();
    let guard = engine.pin();
    let mi = guard.dispatch(my_function, &[t.int.clone()]).unwrap();
    cache.compile(&guard, mi, &1).unwrap();
    cache.compile(&guard, mi, &2).unwrap();
    assert_eq!(
        log.runs("my_function", Phase::Infer),
        2,
        "two keys, two compiles"
    );
    cache.compile(&guard, mi, &1).unwrap();
    cache.compile(&guard, mi, &2).unwrap();
    assert_eq!(log.runs("my_function", Phase::Link), 2, "same key, a hit");
    assert_eq!(cache.versions(mi, &1).len(), 1);
    assert_eq!(cache.versions(mi, &3).len(), 0);
    // A second cache (another owner tag) shares nothing with the first.
    let other = CompilerCache::new(&engine, "Other", Foreign { log: log.clone() }).unwrap();
    other.compile(&guard, mi, &1).unwrap();
    assert_eq!(log.runs("my_function", Phase::Infer), 3);
}

#[test]
fn overlay_method_table_example() {
    // @overlay method_table device_kernel(x::Int) = x * 2; device_kernel(args...) = error(...)
    let engine = Engine::new();
    let t = types(&engine);
    let method_table = engine.new_overlay("method_table").unwrap();
    let device_kernel = engine.declare_function("device_kernel").unwrap();
    engine
        .add_method_to(
            method_table,
            device_kernel,
            &[t.int.clone()],
            Ir::constant(2),
        )
        .unwrap();
    engine
        .add_method(device_kernel, &[Ty::any()], Ir::constant(-1))
        .unwrap();
    let stack = engine
        .stack(&[method_table, engine.global_table()])
        .unwrap();
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::with_stack(&engine, "MyCompiler", stack, compiler).unwrap();
    assert_eq!(cache.stack(), stack);

    let guard = engine.pin();
    let mi = guard
        .dispatch_in(cache.stack(), device_kernel, &[t.int.clone()])
        .unwrap();
    assert!(mi.method().table() == method_table);
    assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 2);
    // Outside the overlay, the global fallback is what dispatch finds.
    let global_mi = guard.dispatch(device_kernel, &[t.int.clone()]).unwrap();
    assert_eq!(*cache.compile(&guard, global_mi, &0).unwrap(), -1);
    assert_eq!(log.runs("device_kernel", Phase::Infer), 2);
}

#[test]
fn foreign_ir_with_dependency_tracking() {
    // add_method(cache, really_special, (Int,), MyCustomIR(...)), callees compiled in infer and
    // recorded as dependencies; redefining a callee recompiles exactly its dependents.
    let engine = Engine::new();
    let t = types(&engine);
    let int = t.int.clone();
    for name in ["really_special", "helper", "leaf", "unrelated"] {
        engine.declare_function(name).unwrap();
    }
    let f = |n: &str| engine.function(n).unwrap();
    engine
        .add_method(
            f("really_special"),
            &[int.clone()],
            Ir::calling(1000, &[("helper", &[int.clone()])]),
        )
        .unwrap();
    engine
        .add_method(
            f("helper"),
            &[int.clone()],
            Ir::calling(100, &[("leaf", &[int.clone()])]),
        )
        .unwrap();
    engine
        .add_method(f("leaf"), &[int.clone()], Ir::constant(10))
        .unwrap();
    engine
        .add_method(f("unrelated"), &[int.clone()], Ir::constant(1))
        .unwrap();
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(&engine, "MyCompiler", compiler).unwrap();

    let run = |name: &str| -> i64 {
        let guard = engine.pin();
        let mi = guard.dispatch(f(name), &[int.clone()]).unwrap();
        *cache.compile(&guard, mi, &0).unwrap()
    };
    assert_eq!(run("really_special"), 1110);
    assert_eq!(run("unrelated"), 1);
    for name in ["really_special", "helper", "leaf", "unrelated"] {
        assert_eq!(log.runs(name, Phase::Infer), 1, "{name}");
    }
    // Redefine the leaf: leaf, helper and really_special recompile; unrelated does not.
    engine
        .add_method(f("leaf"), &[int.clone()], Ir::constant(20))
        .unwrap();
    assert_eq!(run("really_special"), 1120);
    assert_eq!(run("unrelated"), 1);
    assert_eq!(log.runs("really_special", Phase::Infer), 2);
    assert_eq!(log.runs("helper", Phase::Infer), 2);
    assert_eq!(log.runs("leaf", Phase::Infer), 2);
    assert_eq!(log.runs("unrelated", Phase::Infer), 1);
}
