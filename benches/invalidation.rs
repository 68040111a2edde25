//! Invalidation walks over dependent graphs of compiled code, on 1 and 2 rayon threads:
//! - `chain`: `f_i` calls `f_{i-1}` (no parallelism to find);
//! - `tree`: `f_i` calls `f_{(i-1)/2}`, a binary tree of dependents;
//! - `dag`: `f_i` calls `f_{i-1} .. f_{i-4}`, four backedges per node.
//!
//! Every case redefines `f_0`, which invalidates all `N` compiled instances; only the redefinition
//! is timed (building and compiling the graph is setup), with automatic reclamation off so the
//! walk is measured alone. The floor, in the same run, is the least any walk must do: a depth-first
//! search over the same graph held as index adjacency lists, lowering a `u64` per node with
//! `fetch_min`.
//!
//! Run: `cargo bench --bench invalidation`. Sizes are 10^3, 10^4 and 10^5 dependents;
//! `INVALIDATION_MAX=1000000` adds 10^6 (several minutes of setup). Throughput is reported in
//! invalidated instances per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use test_support::compilers::{Program, Sum};

#[derive(Clone, Copy)]
enum Shape {
    Chain,
    Tree,
    Dag,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Tree => "tree",
            Shape::Dag => "dag",
        }
    }

    /// The callees of node `i` (its dependencies); node 0 calls nothing.
    fn callees(self, i: usize) -> Vec<usize> {
        match (self, i) {
            (_, 0) => vec![],
            (Shape::Chain, _) => vec![i - 1],
            (Shape::Tree, _) => vec![(i - 1) / 2],
            (Shape::Dag, _) => (i.saturating_sub(4)..i).rev().collect(),
        }
    }
}

/// An engine with `n` functions compiled in the shape, and `f_0`.
struct Graph {
    engine: Engine,
    int: Ty,
    root: Function,
    _cache: CompilerCache<Sum>,
}

fn build(shape: Shape, n: usize) -> Graph {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let funcs: Vec<Function> = (0..n)
        .map(|i| engine.declare_function(&format!("f{i}")).unwrap())
        .collect();
    for (i, &f) in funcs.iter().enumerate() {
        let calls = shape.callees(i).into_iter().map(|j| funcs[j]).collect();
        engine
            .add_method(f, &[int.clone()], Program::calling(calls))
            .unwrap();
    }
    let cache = CompilerCache::new(&engine, "bench", Sum).unwrap();
    {
        let g = engine.pin();
        for &f in &funcs {
            let mi = g.dispatch(f, &[int.clone()]).unwrap();
            cache.compile(&g, mi, &0).unwrap();
        }
    }
    engine.set_auto_reclaim(false);
    Graph {
        engine,
        int,
        root: funcs[0],
        _cache: cache,
    }
}

/// The floor: the same graph as index lists of dependents, walked depth-first.
fn floor_walk(dependents: &[Vec<u32>], max: &[AtomicU64], world: u64) -> usize {
    let mut stack = vec![0u32];
    let mut lowered = 0;
    while let Some(i) = stack.pop() {
        for &d in &dependents[i as usize] {
            if max[d as usize].fetch_min(world, Ordering::AcqRel) > world {
                lowered += 1;
                stack.push(d);
            }
        }
    }
    lowered
}

fn invalidation(c: &mut Criterion) {
    let max_n: usize = std::env::var("INVALIDATION_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sizes: Vec<usize> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= max_n)
        .collect();
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2]
        .into_iter()
        .map(|t| {
            (
                t,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    for shape in [Shape::Chain, Shape::Tree, Shape::Dag] {
        let mut group = c.benchmark_group(format!("invalidate_{}", shape.name()));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(100));
        group.measurement_time(Duration::from_millis(500));
        for &n in &sizes {
            group.throughput(Throughput::Elements(n as u64));
            let mut dependents = vec![Vec::new(); n];
            for i in 0..n {
                for j in shape.callees(i) {
                    dependents[j].push(i as u32);
                }
            }
            let max: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(u64::MAX)).collect();
            group.bench_with_input(BenchmarkId::new("floor_index_dfs", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for round in 0..iters {
                        max.iter()
                            .for_each(|m| m.store(u64::MAX, Ordering::Relaxed));
                        let t0 = Instant::now();
                        let lowered = floor_walk(&dependents, &max, 10 + round);
                        total += t0.elapsed();
                        assert_eq!(lowered, n - 1);
                    }
                    total
                })
            });
            for (threads, pool) in &pools {
                let id = BenchmarkId::new(format!("engine_{threads}_thread"), n);
                group.bench_with_input(id, &n, |b, &n| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let g = build(shape, n);
                            let before = g.engine.stats().invalidated_code_instances;
                            let t0 = Instant::now();
                            pool.install(|| {
                                g.engine
                                    .add_method(g.root, &[g.int.clone()], Program::calling(vec![]))
                                    .unwrap()
                            });
                            total += t0.elapsed();
                            let lowered = g.engine.stats().invalidated_code_instances - before;
                            assert_eq!(lowered, n as u64, "every compiled instance invalidated");
                        }
                        total
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, invalidation);
criterion_main!(benches);
