//! The persistent tier, each figure beside its baseline in the same run:
//!
//! - `first_calls/{no_store,cold_store,warm_store}`: from creating the cache to the first call
//!   of each of N = 10^3 functions (a chain: `f_i` calls `f_{i-1}`), with a trivial compiler
//!   ([`Chain`]), over no store, an empty redb store, and a redb store a previous run filled.
//!   Defining the methods is outside the measurement; writing the cold run's records is not on
//!   its critical path (they are written behind) but shares the machine.
//! - `load/{compile,load}/k`: one instance whose `infer` records k dispatch dependencies
//!   (k = 1, 10, 100), compiled with no store, and loaded from a warm store (read, checksum,
//!   decode, k dispatches re-issued and compared, publish, link).
//! - `store/{get,put,put_batch_100}/threads`: redb store operations on 1 and 2 threads (a put
//!   is one durable transaction).
//!
//! Run: `cargo bench --bench persist`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use compiler_caching::{
    ArtifactStore, CompilerCache, Engine, Function, MemoryStore, RecordKey, RedbOptions, RedbStore,
    Ty,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use test_support::persisted::{Calls, Chain};

const N: usize = 1000;

/// An engine with the chain `f_0 .. f_{N-1}` defined; returns it with the functions.
fn chain_engine() -> (Engine, Vec<Function>, Ty) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let mut fs = Vec::with_capacity(N);
    for i in 0..N {
        let f = engine.declare_function(&format!("f_{i}")).unwrap();
        let calls = if i == 0 {
            Calls::value(1)
        } else {
            Calls::calling(1, &[&format!("f_{}", i - 1)])
        };
        engine.add_method(f, &[int.clone()], calls).unwrap();
        fs.push(f);
    }
    (engine, fs, int)
}

/// Calls every function once, in order (each first call compiles or loads one new instance).
fn first_calls(engine: &Engine, cache: &CompilerCache<Chain>, fs: &[Function], int: &Ty) -> u64 {
    let guard = engine.pin();
    let mut total = 0u64;
    for &f in fs {
        let mi = guard.dispatch(f, std::slice::from_ref(int)).unwrap();
        total = total.wrapping_add(*cache.compile(&guard, mi, &0).unwrap());
    }
    total
}

fn redb(dir: &tempfile::TempDir, name: &str) -> Arc<RedbStore> {
    Arc::new(RedbStore::open(dir.path().join(name), RedbOptions::default()).unwrap())
}

fn first_call_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_calls");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("no_store", |b| {
        b.iter_batched(
            chain_engine,
            |(engine, fs, int)| {
                let cache = CompilerCache::new(&engine, "chain", Chain::new("1")).unwrap();
                first_calls(&engine, &cache, &fs, &int)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cold_store", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = redb(&dir, "cold.redb");
                (chain_engine(), store, dir)
            },
            |((engine, fs, int), store, dir)| {
                let cache =
                    CompilerCache::with_store(&engine, "chain", Chain::new("1"), store).unwrap();
                let total = first_calls(&engine, &cache, &fs, &int);
                // Dropped (and the records written) outside the measurement.
                (total, cache, dir)
            },
            BatchSize::PerIteration,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let warm = redb(&dir, "warm.redb");
    {
        let (engine, fs, int) = chain_engine();
        let cache =
            CompilerCache::with_store(&engine, "chain", Chain::new("1"), warm.clone()).unwrap();
        first_calls(&engine, &cache, &fs, &int);
        cache.flush_store().unwrap();
    }
    group.bench_function("warm_store", |b| {
        b.iter_batched(
            chain_engine,
            |(engine, fs, int)| {
                let cache =
                    CompilerCache::with_store(&engine, "chain", Chain::new("1"), warm.clone())
                        .unwrap();
                let total = first_calls(&engine, &cache, &fs, &int);
                assert_eq!(engine.stats().infer_runs, 0);
                (total, cache)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// An engine where `top(Int)` dispatches `k` functions; returns it, `top` and `Int`.
fn fanout_engine(k: usize) -> (Engine, Function, Ty) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let mut names = Vec::with_capacity(k);
    for i in 0..k {
        let name = format!("leaf_{i}");
        let f = engine.declare_function(&name).unwrap();
        engine
            .add_method(f, &[Ty::any()], Calls::value(i as u64))
            .unwrap();
        names.push(name);
    }
    let top = engine.declare_function("top").unwrap();
    let source = Calls {
        value: 1,
        dispatches: names,
        ..Calls::default()
    };
    engine.add_method(top, &[int.clone()], source).unwrap();
    (engine, top, int)
}

fn load_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(2));
    for k in [1usize, 10, 100] {
        let compile_once = |engine: &Engine, cache: &CompilerCache<Chain>, top, int: &Ty| {
            let guard = engine.pin();
            let mi = guard.dispatch(top, std::slice::from_ref(int)).unwrap();
            *cache.compile(&guard, mi, &0).unwrap()
        };
        group.bench_with_input(BenchmarkId::new("compile", k), &k, |b, &k| {
            b.iter_batched(
                || {
                    let (engine, top, int) = fanout_engine(k);
                    let cache = CompilerCache::new(&engine, "chain", Chain::new("1")).unwrap();
                    (engine, cache, top, int)
                },
                |(engine, cache, top, int)| {
                    let v = compile_once(&engine, &cache, top, &int);
                    (v, cache, engine)
                },
                BatchSize::PerIteration,
            )
        });
        let store = Arc::new(MemoryStore::new());
        {
            let (engine, top, int) = fanout_engine(k);
            let cache = CompilerCache::with_store(&engine, "chain", Chain::new("1"), store.clone())
                .unwrap();
            compile_once(&engine, &cache, top, &int);
            cache.flush_store().unwrap();
        }
        group.bench_with_input(BenchmarkId::new("load", k), &k, |b, &k| {
            b.iter_batched(
                || {
                    let (engine, top, int) = fanout_engine(k);
                    let cache =
                        CompilerCache::with_store(&engine, "chain", Chain::new("1"), store.clone())
                            .unwrap();
                    (engine, cache, top, int)
                },
                |(engine, cache, top, int)| {
                    let v = compile_once(&engine, &cache, top, &int);
                    (v, cache, engine)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn key(i: u64) -> RecordKey {
    let mut key = [7; 32];
    key[..8].copy_from_slice(&i.to_le_bytes());
    RecordKey(key)
}

/// Runs `iters` operations split over `threads` threads; the time until all are done.
fn on_threads(threads: u64, iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for i in (t..iters).step_by(threads as usize) {
                    op(i);
                }
            });
        }
    });
    start.elapsed()
}

fn store_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let store = redb(&dir, "throughput.redb");
    let record = vec![0x42u8; 512];
    const RECORDS: u64 = 4096;
    let batch: Vec<_> = (0..RECORDS).map(|i| (key(i), record.clone())).collect();
    store.put_batch(&batch).unwrap();
    for threads in [1u64, 2] {
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("get", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |i| {
                    assert!(store.get(&key(i % RECORDS)).unwrap().is_some());
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("put", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |i| {
                    store.put(&key(i % RECORDS), &record).unwrap();
                })
            })
        });
        group.throughput(Throughput::Elements(100));
        group.bench_with_input(
            BenchmarkId::new("put_batch_100", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |i| {
                        let start = (i * 100) % RECORDS;
                        let batch: Vec<_> = (start..start + 100)
                            .map(|j| (key(j % RECORDS), record.clone()))
                            .collect();
                        store.put_batch(&batch).unwrap();
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, first_call_bench, load_bench, store_bench);
criterion_main!(benches);
