//! How the hit path and definitions scale, each group with its floor in the same run:
//! - `dispatch_methods/N`: a cached dispatch hit for a function with N methods;
//! - `owners/N`: a code-cache hit when the method instance is compiled for N owner keys;
//! - `versions/N`: a code-cache hit when N older versions of the instance are retained;
//! - `define/N`: defining (replacing) a method while N unrelated entries are cached, and one
//!   reclamation pass over them.
//!
//! Every group includes `floor_papaya_get`, a pinned papaya `get` of a precomputed `u64` key.
//!
//! Run: `cargo bench --bench scaling`. `SCALING_MAX=1000000` adds the 10^6-entry definition case
//! (about a minute of setup).

use std::hint::black_box;
use std::time::Duration;

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rustc_hash::FxBuildHasher;
use test_support::compilers::Ids;

fn floor(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let map: papaya::HashMap<u64, u64, FxBuildHasher> = papaya::HashMap::with_hasher(FxBuildHasher);
    for i in 0..1024u64 {
        map.pin().insert(i, i);
    }
    let guard = map.guard();
    group.bench_function("floor_papaya_get", |b| {
        b.iter(|| black_box(map.get(black_box(&517), &guard)))
    });
}

fn dispatch_methods(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch_methods");
    floor(&mut group);
    for n in [1usize, 10, 100, 1000] {
        let engine = Engine::new();
        let l = engine.lattice();
        let types: Vec<Ty> = (0..n)
            .map(|i| l.declare_concrete(&format!("T{i}"), &Ty::any()).unwrap())
            .collect();
        let f = engine.declare_function("f").unwrap();
        for t in &types {
            engine.add_method(f, &[t.clone()], ()).unwrap();
        }
        let guard = engine.pin();
        let args = [types[n / 2].clone()];
        guard.dispatch(f, &args).unwrap();
        group.bench_with_input(BenchmarkId::new("hit", n), &n, |b, _| {
            b.iter(|| black_box(guard.dispatch(f, black_box(&args)).unwrap()))
        });
    }
    group.finish();
}

fn owners(c: &mut Criterion) {
    let mut group = c.benchmark_group("owners");
    floor(&mut group);
    for n in [1u32, 8, 64] {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[int.clone()], ()).unwrap();
        let cache = CompilerCache::new(&engine, "bench", Ids).unwrap();
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[int.clone()]).unwrap().clone();
        for key in 0..n {
            cache.compile(&guard, &mi, &key).unwrap();
        }
        let key = n / 2;
        group.bench_with_input(BenchmarkId::new("hit", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    cache
                        .compile(&guard, black_box(&mi), black_box(&key))
                        .unwrap(),
                )
            })
        });
    }
    group.finish();
}

fn versions(c: &mut Criterion) {
    let mut group = c.benchmark_group("versions");
    floor(&mut group);
    for n in [1usize, 100, 1000] {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        let f = engine.declare_function("f").unwrap();
        let dep = engine.declare_function("dep").unwrap();
        engine.add_method(f, &[int.clone()], dep).unwrap();
        engine.add_method(dep, &[int.clone()], ()).unwrap();
        let cache = CompilerCache::new(&engine, "bench", Ids).unwrap();
        // Pinning the first world retains every version compiled since.
        let first = engine.pin();
        let mi = first.dispatch(f, &[int.clone()]).unwrap().clone();
        for i in 0..n {
            if i > 0 {
                engine.add_method(dep, &[int.clone()], ()).unwrap();
            }
            let g = engine.pin();
            cache.compile(&g, &mi, &0).unwrap();
        }
        assert_eq!(cache.versions(&mi, &0).len(), n);
        let guard = engine.pin();
        group.bench_with_input(BenchmarkId::new("hit", n), &n, |b, _| {
            b.iter(|| black_box(cache.compile(&guard, black_box(&mi), &0).unwrap()))
        });
        drop(first);
    }
    group.finish();
}

fn define(c: &mut Criterion) {
    let mut group = c.benchmark_group("define");
    group.sample_size(20);
    floor(&mut group);
    let max: usize = std::env::var("SCALING_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut sizes = vec![1_000usize, 100_000];
    if max >= 1_000_000 {
        sizes.push(1_000_000);
    }
    for n in sizes {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        let cache = CompilerCache::new(&engine, "bench", Ids).unwrap();
        {
            let funcs: Vec<Function> = (0..n)
                .map(|i| {
                    let f = engine.declare_function(&format!("u{i}")).unwrap();
                    engine.add_method(f, &[int.clone()], ()).unwrap();
                    f
                })
                .collect();
            let g = engine.pin();
            for &f in &funcs {
                let mi = g.dispatch(f, &[int.clone()]).unwrap();
                cache.compile(&g, mi, &0).unwrap();
            }
        }
        let target = engine.declare_function("target").unwrap();
        group.bench_with_input(BenchmarkId::new("replace_method", n), &n, |b, _| {
            b.iter(|| engine.add_method(target, &[int.clone()], ()).unwrap())
        });
        // One automatic reclamation runs per (survivors) units of garbage, so its amortized
        // share of a definition is this pass's time over that; the mean above includes a pass
        // only if the measurement produced that much garbage.
        group.bench_with_input(BenchmarkId::new("reclaim_pass", n), &n, |b, _| {
            b.iter(|| engine.reclaim())
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = dispatch_methods, owners, versions, define }
criterion_main!(benches);
