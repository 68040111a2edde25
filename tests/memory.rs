//! Memory while a guard is held for a long time (docs/semantics.md §8): what is retained grows
//! linearly with what happens meanwhile. Eight callers of one function are compiled after each
//! of `n` redefinitions of it while one guard, pinned at the start, is held; every publication
//! used to copy the slot's whole version list, and the copies could not be freed while the guard
//! lived, so memory grew with `n²`. A counting allocator measures the bytes live.

use compiler_caching::{CompilerCache, Engine};
use test_support::alloc::CountingAlloc;
use test_support::foreign::{Foreign, Ir};
use test_support::setups::{calls, types};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc::new();

#[test]
fn memory_held_by_a_long_lived_guard_grows_linearly_with_redefinitions() {
    let engine = Engine::new();
    let t = types(&engine);
    let base = engine.declare_function("base").unwrap();
    engine
        .add_method(base, &[t.int.clone()], Ir::constant(0))
        .unwrap();
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let f = engine.declare_function(&format!("caller{i}")).unwrap();
            engine
                .add_method(f, &[t.int.clone()], calls(i as i64, &["base"], &t.int))
                .unwrap();
            f
        })
        .collect();
    let cache = CompilerCache::new(&engine, "C", Foreign::default()).unwrap();
    let long_lived = engine.pin();
    let redefine = |from: i64, to: i64| {
        for n in from..to {
            engine
                .add_method(base, &[t.int.clone()], Ir::constant(n))
                .unwrap();
            let guard = engine.pin();
            for &f in &callers {
                let mi = guard.dispatch(f, &[t.int.clone()]).unwrap();
                cache.compile(&guard, mi, &0).unwrap();
            }
        }
        ALLOCATOR.live_bytes()
    };
    let start = redefine(0, 100);
    let at_1000 = redefine(100, 1100);
    let at_2000 = redefine(1100, 2100);
    let (first, second) = (at_1000 - start, at_2000 - at_1000);
    eprintln!("bytes retained: first 1000 redefinitions {first}, next 1000 {second}");
    assert!(first > 0);
    // Linear: the second thousand retains about as much as the first (quadratic: three times).
    assert!(
        (second as f64) < 1.5 * first as f64,
        "first 1000: {first} bytes, next 1000: {second} bytes"
    );
    // And it is all released once the guard goes.
    drop(long_lived);
    engine.reclaim();
    engine.reclaim();
    let after = ALLOCATOR.live_bytes();
    assert!(
        after < start + first / 4,
        "{after} bytes after release, {start} at the start"
    );
}
