//! The hit path, beside its floors measured in the same run:
//! - a cached dispatch (`Guard::dispatch`) vs a `std::collections::HashMap` (Fx hasher) lookup of
//!   the same key and a pinned papaya `get` of a precomputed key;
//! - a code-cache hit (`CompilerCache::compile`) vs the same papaya `get`;
//! - the whole hit path (dispatch then code-cache hit);
//! - pinning a world (`Engine::pin` and drop) vs entering and leaving a seize collector and a
//!   crossbeam-epoch pin.
//!
//! Run: `cargo bench --bench hit_path`. Compare ratios within one run, not absolute times.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use compiler_caching::Ty;
use criterion::{criterion_group, criterion_main, Criterion};
use rustc_hash::FxBuildHasher;

use test_support::setups::HitSetup;

fn hit_path(c: &mut Criterion) {
    let setup = HitSetup::new();
    let (engine, f, args) = (&setup.engine, setup.f, setup.args.clone());
    let cache = setup.cache("bench");
    let guard = engine.pin();
    let mi = guard.dispatch(f, &args).unwrap().clone();
    cache.compile(&guard, &mi, &0).unwrap();

    // Floors: the same shape of key in a std HashMap and in papaya.
    let mut std_map: HashMap<(u32, u32, Box<[Ty]>), u64, FxBuildHasher> = HashMap::default();
    let papaya_map: papaya::HashMap<(u32, u32, Box<[Ty]>), u64, FxBuildHasher> =
        papaya::HashMap::with_hasher(FxBuildHasher);
    for i in 0..64u32 {
        let key = (i, 0, Box::from(args.clone()));
        std_map.insert(key.clone(), u64::from(i));
        papaya_map.pin().insert(key, u64::from(i));
    }
    let key = (7u32, 0u32, Box::<[Ty]>::from(args.clone()));
    let papaya_guard = papaya_map.guard();
    let papaya_int: papaya::HashMap<u64, u64, FxBuildHasher> =
        papaya::HashMap::with_hasher(FxBuildHasher);
    papaya_int.pin().insert(mi.id(), 1);
    let papaya_int_guard = papaya_int.guard();

    let mut group = c.benchmark_group("dispatch_hit");
    group.bench_function("engine_dispatch", |b| {
        b.iter(|| black_box(guard.dispatch(f, black_box(&args)).unwrap()))
    });
    group.bench_function("std_hashmap_fx_get", |b| {
        b.iter(|| black_box(std_map.get(black_box(&key))))
    });
    group.bench_function("papaya_pinned_get", |b| {
        b.iter(|| black_box(papaya_map.get(black_box(&key), &papaya_guard)))
    });
    group.finish();

    let mut group = c.benchmark_group("code_hit");
    group.bench_function("engine_compile_hit", |b| {
        b.iter(|| {
            black_box(
                cache
                    .compile(&guard, black_box(&mi), black_box(&0))
                    .unwrap(),
            )
        })
    });
    group.bench_function("papaya_pinned_get_u64", |b| {
        b.iter(|| black_box(papaya_int.get(black_box(&mi.id()), &papaya_int_guard)))
    });
    group.finish();

    let mut group = c.benchmark_group("pin");
    group.bench_function("engine_pin_unpin", |b| {
        b.iter(|| black_box(engine.pin().world()))
    });
    let collector = seize::Collector::new();
    group.bench_function("seize_enter_leave", |b| {
        b.iter(|| drop(black_box(collector.enter())))
    });
    group.bench_function("crossbeam_epoch_pin", |b| {
        b.iter(|| drop(black_box(crossbeam_epoch::pin())))
    });
    group.finish();

    let mut group = c.benchmark_group("full_hit");
    group.bench_function("dispatch_then_compile", |b| {
        b.iter(|| {
            let mi = guard.dispatch(f, black_box(&args)).unwrap();
            black_box(cache.compile(&guard, mi, &0).unwrap())
        })
    });
    group.finish();

    // One call as a JIT makes it: pin, dispatch the call site's interned signature, hit the code
    // cache, unpin; the floor is one seize pin and two pinned papaya gets of u64 keys.
    let site = engine.signature(&args);
    // No pin may be held across this group: each iteration pins afresh.
    drop((guard, papaya_guard, papaya_int_guard));
    let mut group = c.benchmark_group("one_call");
    group.bench_function("engine_pin_dispatch_signature_hit", |b| {
        b.iter(|| {
            let guard = engine.pin();
            let mi = guard.dispatch_signature(f, black_box(&site)).unwrap();
            black_box(*cache.compile(&guard, mi, &0).unwrap());
        })
    });
    group.bench_function("seize_pin_two_papaya_u64_gets", |b| {
        b.iter(|| {
            let guard = papaya_int.guard();
            black_box(papaya_int.get(black_box(&mi.id()), &guard));
            black_box(papaya_int.get(black_box(&mi.id()), &guard));
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! { name = benches; config = config(); targets = hit_path }
criterion_main!(benches);
