//! Concurrent misses on one key: `T` threads, released together by a barrier, all compile the same
//! fresh method instance; the time is from the release until every thread has the result. Each
//! round uses a new key, so every round is a miss that one thread compiles and the others wait
//! for.
//!
//! The floor, in the same run, is the same round on a fresh `std::sync::OnceLock` per key with the
//! same (trivial) computation: the least a deduplicating cache must do. The difference is the
//! engine's miss path (slot creation, job, three phases, publication, waking the waiters).
//!
//! Run: `cargo bench --bench concurrent_miss`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use test_support::compilers::Const;
use test_support::threads::SpinBarrier;

/// Runs `iters` rounds on `threads` threads; `round(i)` is what every thread does in round `i`.
/// Returns the summed time from each round's release to its last finisher, as seen by thread 0.
fn rounds(threads: usize, iters: u64, round: impl Fn(usize) + Sync) -> Duration {
    let start = SpinBarrier::new(threads);
    let end = SpinBarrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (start, end, round) = (&start, &end, &round);
                s.spawn(move || {
                    let mut total = Duration::ZERO;
                    for i in 0..iters as usize {
                        start.wait();
                        let t0 = Instant::now();
                        round(i);
                        end.wait();
                        if t == 0 {
                            total += t0.elapsed();
                        }
                    }
                    total
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

fn concurrent_miss(c: &mut Criterion) {
    let mut group = c.benchmark_group("concurrent_miss");
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(20);
    for threads in [1usize, 2, 8] {
        group.bench_with_input(
            BenchmarkId::new("floor_once_lock", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let cells: Vec<OnceLock<u64>> = (0..iters).map(|_| OnceLock::new()).collect();
                    rounds(threads, iters, |i| {
                        std::hint::black_box(cells[i].get_or_init(|| i as u64));
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("engine_compile", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let engine = Engine::new();
                    let int = engine
                        .lattice()
                        .declare_concrete("Int64", &Ty::any())
                        .unwrap();
                    let cache = CompilerCache::new(&engine, "bench", Const).unwrap();
                    let funcs: Vec<Function> = (0..iters)
                        .map(|i| {
                            let f = engine.declare_function(&format!("f{i}")).unwrap();
                            engine.add_method(f, &[int.clone()], ()).unwrap();
                            f
                        })
                        .collect();
                    let args = [int.clone()];
                    let took = rounds(threads, iters, |i| {
                        let g = engine.pin();
                        let mi = g.dispatch(funcs[i], &args).unwrap();
                        std::hint::black_box(cache.compile(&g, mi, &0).unwrap());
                    });
                    assert_eq!(
                        engine.stats().infer_runs,
                        iters,
                        "one compilation per key whatever the number of threads"
                    );
                    took
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, concurrent_miss);
criterion_main!(benches);
