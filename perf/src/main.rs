//! Throughput harness. Runs each workload on the engine and, in the same run, on baselines that
//! implement the same cache semantics, and prints a table (or JSON with `--json`).
//!
//! ```text
//! cargo run --release -p perf -- [--quick] [--json] [--threads N] [WORKLOAD...]
//! ```
//!
//! Workloads (all by default):
//! - `hits`: read-only hits. The engine's op pins a world, dispatches and hits the code cache; a
//!   baseline's op is one lookup of an interned `(function, argtypes, owner, world)` key.
//! - `oversubscribed`: `hits` on 16 and 64 threads, more than this machine's cores: any lock or
//!   shared line written on the hit path shows as a collapse of the engine's rows against the
//!   baselines' when threads are preempted inside it.
//! - `redefinitions`: the same with one redefinition per 10^4 lookups (for a world-keyed baseline,
//!   a new world: every key misses once).
//! - `invalidation`: the walk alone, invalidating a 10^5-node DAG on 1..N rayon threads.
//! - `dedupe`: a miss storm. Each round every thread misses the same fresh key, whose compilation
//!   costs about 10 us; rows report compilations per key (1.00 = perfect deduplication).
//! - `storm`: an invalidation storm. 256 functions call `base`, which is redefined every 1000
//!   lookups; readers recompile what was invalidated (about 1 us each).
//!
//! Absolute numbers depend on the machine; compare rows of one run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use test_support::compilers::{simulated_work, Program as Ir, Sum};
use test_support::threads::SpinBarrier;

struct Row {
    workload: String,
    imp: String,
    threads: usize,
    ops_per_sec: f64,
    p50_ns: f64,
    p99_ns: f64,
}

impl Row {
    /// A row from what [`throughput`] and [`rounds`] return: ops/s, p50 and p99 in ns.
    fn new(
        workload: impl Into<String>,
        imp: impl Into<String>,
        threads: usize,
        (ops_per_sec, p50_ns, p99_ns): (f64, f64, f64),
    ) -> Row {
        Row {
            workload: workload.into(),
            imp: imp.into(),
            threads,
            ops_per_sec,
            p50_ns,
            p99_ns,
        }
    }
}

struct Options {
    quick: bool,
    json: bool,
    max_threads: usize,
    workloads: Vec<String>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        json: false,
        max_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        workloads: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--threads" => {
                o.max_threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--threads needs a positive number")?
            }
            "hits" | "oversubscribed" | "redefinitions" | "invalidation" | "dedupe" | "storm" => {
                o.workloads.push(a)
            }
            "-h" | "--help" => {
                return Err(
                    "usage: perf [--quick] [--json] [--threads N] [hits|oversubscribed|redefinitions|invalidation|dedupe|storm]..."
                        .into(),
                )
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if o.workloads.is_empty() {
        o.workloads = vec![
            "hits".into(),
            "oversubscribed".into(),
            "redefinitions".into(),
            "invalidation".into(),
            "dedupe".into(),
            "storm".into(),
        ];
    }
    Ok(o)
}

fn progress(o: &Options, msg: &str) {
    if !o.json {
        eprintln!("  .. {msg}");
    }
}

/// Runs `op` on `threads` threads for `dur`, sampling latency every 64 ops.
fn throughput<F: Fn(usize, u64) + Sync>(threads: usize, dur: Duration, op: F) -> (f64, f64, f64) {
    let barrier = Barrier::new(threads);
    let results: Vec<(u64, Vec<u64>, Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut n = 0u64;
                    let mut samples = Vec::new();
                    while start.elapsed() < dur {
                        for _ in 0..63 {
                            op(t, n);
                            n += 1;
                        }
                        let t0 = Instant::now();
                        op(t, n);
                        samples.push(t0.elapsed().as_nanos() as u64);
                        n += 1;
                    }
                    (n, samples, start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ops: u64 = results.iter().map(|r| r.0).sum();
    // Over the wall time from the first start to the last end: with more threads than cores,
    // threads start and stop at different times, and dividing by `dur` would count the stagger
    // as throughput.
    let first = results.iter().map(|r| r.2).min().unwrap();
    let last = results.iter().map(|r| r.3).max().unwrap();
    let wall = last.duration_since(first).max(dur);
    let mut samples: Vec<u64> = results.into_iter().flat_map(|r| r.1).collect();
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
    };
    (ops as f64 / wall.as_secs_f64(), pct(0.50), pct(0.99))
}

/// The key the baselines cache by: function, argument types (interned to an id, as a baseline
/// would do to avoid allocating per lookup), owner, world.
type Key = (u32, u32, u32, u64);

/// A cache implementing the baseline semantics: key (function, argtypes, owner, world) → result.
trait Baseline: Sync {
    fn name(&self) -> &'static str;
    fn get_or_compute(&self, key: &Key, compute: &dyn Fn() -> u64) -> u64;
}

struct MutexMap(Mutex<HashMap<Key, u64>>);
struct RwMap(RwLock<HashMap<Key, u64>>);
struct Dash(dashmap::DashMap<Key, u64>);
struct Moka(moka::sync::Cache<Key, u64>);

impl Baseline for MutexMap {
    fn name(&self) -> &'static str {
        "Mutex<HashMap>"
    }
    fn get_or_compute(&self, key: &Key, compute: &dyn Fn() -> u64) -> u64 {
        if let Some(v) = self.0.lock().unwrap().get(key) {
            return *v;
        }
        let v = compute();
        self.0.lock().unwrap().insert(*key, v);
        v
    }
}

impl Baseline for RwMap {
    fn name(&self) -> &'static str {
        "RwLock<HashMap>"
    }
    fn get_or_compute(&self, key: &Key, compute: &dyn Fn() -> u64) -> u64 {
        if let Some(v) = self.0.read().unwrap().get(key) {
            return *v;
        }
        let v = compute();
        self.0.write().unwrap().insert(*key, v);
        v
    }
}

impl Baseline for Dash {
    fn name(&self) -> &'static str {
        "dashmap"
    }
    fn get_or_compute(&self, key: &Key, compute: &dyn Fn() -> u64) -> u64 {
        if let Some(v) = self.0.get(key) {
            return *v;
        }
        *self.0.entry(*key).or_insert_with(compute)
    }
}

impl Baseline for Moka {
    fn name(&self) -> &'static str {
        "moka"
    }
    fn get_or_compute(&self, key: &Key, compute: &dyn Fn() -> u64) -> u64 {
        self.0.get_with_by_ref(key, compute)
    }
}

/// Read-mostly hits over 256 functions; with `redefine_every`, the op that completes every
/// that-many lookups redefines one function (a new world).
fn hits(o: &Options, rows: &mut Vec<Row>, redefine_every: Option<u64>, counts: &[usize]) {
    let workload = match redefine_every {
        None if counts.iter().any(|&t| t > o.max_threads) => "hits, oversubscribed".to_string(),
        None => "hits".to_string(),
        Some(n) => format!("hits, 1 redefinition per {n} lookups"),
    };
    let dur = Duration::from_millis(if o.quick { 300 } else { 2000 });
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let funcs: Vec<Function> = (0..256)
        .map(|i| {
            let f = engine.declare_function(&format!("f{i}")).unwrap();
            engine
                .add_method(f, &[int.clone()], Ir::constant(i))
                .unwrap();
            f
        })
        .collect();
    let cache = CompilerCache::new(&engine, "perf", Sum).unwrap();
    let args = [int.clone()];
    for &threads in counts {
        progress(o, &format!("{workload}, {threads} thread(s)"));
        // Thread 0 mutates every `every / threads` of its own lookups, so the whole run sees about
        // one mutation per `every` lookups without a shared counter (whose cache line, bouncing
        // between threads, cost more than a hit).
        let due = |t: usize, n: u64| match redefine_every {
            Some(every) => {
                let per_thread = (every / threads as u64).max(1);
                t == 0 && n % per_thread == per_thread - 1
            }
            None => false,
        };
        let (ops, p50, p99) = throughput(threads, dur, |t, n| {
            if due(t, n) {
                let f = funcs[(n % 256) as usize];
                engine
                    .add_method(f, &[int.clone()], Ir::constant(n))
                    .unwrap();
            }
            let g = engine.pin();
            let mi = g.dispatch(funcs[(n % 256) as usize], &args).unwrap();
            std::hint::black_box(cache.compile(&g, mi, &0).unwrap());
        });
        rows.push(Row::new(
            workload.clone(),
            "engine",
            threads,
            (ops, p50, p99),
        ));
        let world = AtomicU64::new(1);
        for b in &baselines() {
            let (ops, p50, p99) = throughput(threads, dur, |t, n| {
                // A redefinition is a new world: a world-keyed cache misses on every key.
                if due(t, n) {
                    world.fetch_add(1, Ordering::Relaxed);
                }
                let key: Key = ((n % 256) as u32, 0, 0, world.load(Ordering::Relaxed));
                std::hint::black_box(b.get_or_compute(&key, &|| n % 256));
            });
            rows.push(Row::new(
                workload.clone(),
                b.name(),
                threads,
                (ops, p50, p99),
            ));
        }
    }
}

/// The dependent graphs the invalidation workload walks.
#[derive(Clone, Copy)]
enum Shape {
    /// `f_i` calls `f_{i+1} ..= f_{i+4}`; the last function is redefined.
    Dag,
    /// `f_i` calls `f_{(i-1)/2}`, a binary tree of dependents; `f_0` is redefined.
    Tree,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::Dag => "DAG, 4 backedges/node",
            Shape::Tree => "binary tree",
        }
    }
}

/// Compiles `n` functions calling each other in `shape` and returns the one whose redefinition
/// invalidates them all.
fn dependent_graph(
    engine: &Engine,
    cache: &CompilerCache<Sum>,
    int: &Ty,
    n: usize,
    shape: Shape,
) -> Function {
    let funcs: Vec<Function> = (0..n)
        .map(|i| engine.declare_function(&format!("g{i}")).unwrap())
        .collect();
    for i in 0..n {
        let calls: Vec<Function> = match shape {
            Shape::Dag => (i + 1..=(i + 4).min(n - 1)).map(|j| funcs[j]).collect(),
            Shape::Tree if i == 0 => vec![],
            Shape::Tree => vec![funcs[(i - 1) / 2]],
        };
        let ir = Ir {
            value: 1,
            calls,
            work: 0,
        };
        engine.add_method(funcs[i], &[int.clone()], ir).unwrap();
    }
    let g = engine.pin();
    // Callees first, so no compilation recurses deeply.
    let order: Vec<usize> = match shape {
        Shape::Dag => (0..n).rev().collect(),
        Shape::Tree => (0..n).collect(),
    };
    for i in order {
        let mi = g.dispatch(funcs[i], &[int.clone()]).unwrap();
        cache.compile(&g, mi, &0).unwrap();
    }
    match shape {
        Shape::Dag => funcs[n - 1],
        Shape::Tree => funcs[0],
    }
}

fn invalidation(o: &Options, rows: &mut Vec<Row>) {
    let n = if o.quick { 20_000 } else { 100_000 };
    let rounds = if o.quick { 2 } else { 3 };
    for shape in [Shape::Dag, Shape::Tree] {
        for threads in 1..=o.max_threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut best = f64::MAX;
            let mut invalidated = 0;
            for round in 0..rounds {
                progress(
                    o,
                    &format!(
                        "invalidation of a {n}-node {}, {threads} thread(s), round {}",
                        shape.describe(),
                        round + 1
                    ),
                );
                let engine = Engine::new();
                let int = engine
                    .lattice()
                    .declare_concrete("Int64", &Ty::any())
                    .unwrap();
                let cache = CompilerCache::new(&engine, "perf", Sum).unwrap();
                let root = dependent_graph(&engine, &cache, &int, n, shape);
                // Time the walk alone; reclaiming the dead entries is a separate cost.
                engine.set_auto_reclaim(false);
                let before = engine.stats().invalidated_code_instances;
                let t0 = Instant::now();
                pool.install(|| {
                    engine
                        .add_method(root, &[int.clone()], Ir::constant(2))
                        .unwrap()
                });
                let secs = t0.elapsed().as_secs_f64();
                invalidated = engine.stats().invalidated_code_instances - before;
                best = best.min(secs);
            }
            let per_node = best * 1e9 / invalidated as f64;
            rows.push(Row::new(
                format!("invalidation ({n}-node {})", shape.describe()),
                "engine",
                threads,
                (invalidated as f64 / best, per_node, per_node),
            ));
        }
    }
}

/// Units of simulated work per compilation in the miss-path workloads (about 10 us).
const COMPILE_WORK: u32 = 10_000;

/// Runs `keys` rounds on `threads` threads, all getting key `i` in round `i`. Returns ops/s and
/// the p50/p99 of one get.
fn rounds(threads: usize, keys: usize, get: impl Fn(usize) + Sync) -> (f64, f64, f64) {
    let barrier = SpinBarrier::new(threads);
    let t0 = Instant::now();
    let mut samples: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, get) = (&barrier, &get);
                s.spawn(move || {
                    (0..keys)
                        .map(|i| {
                            barrier.wait();
                            let t = Instant::now();
                            get(i);
                            t.elapsed().as_nanos() as u64
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64;
    ((keys * threads) as f64 / secs, pct(0.50), pct(0.99))
}

/// A miss storm: every round, all threads miss one fresh key whose compilation costs about 10 us.
/// A deduplicating cache computes each key once; the others compute it once per thread.
fn dedupe(o: &Options, rows: &mut Vec<Row>) {
    let keys = if o.quick { 100 } else { 1000 };
    let mut counts: Vec<usize> = (1..=o.max_threads).chain([8, 16]).collect();
    counts.dedup();
    for threads in counts {
        progress(o, &format!("miss storm, {threads} threads x {keys} keys"));
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int64", &Ty::any())
            .unwrap();
        let cache = CompilerCache::new(&engine, "perf", Sum).unwrap();
        let funcs: Vec<Function> = (0..keys)
            .map(|i| {
                let f = engine.declare_function(&format!("d{i}")).unwrap();
                let ir = Ir {
                    work: COMPILE_WORK,
                    ..Ir::constant(1)
                };
                engine.add_method(f, &[int.clone()], ir).unwrap();
                f
            })
            .collect();
        let args = [int.clone()];
        let (ops, p50, p99) = rounds(threads, keys, |i| {
            let g = engine.pin();
            let mi = g.dispatch(funcs[i], &args).unwrap();
            std::hint::black_box(cache.compile(&g, mi, &0).unwrap());
        });
        let per_key = engine.stats().infer_runs as f64 / keys as f64;
        rows.push(Row::new(
            format!("miss storm ({per_key:.2} compilations per key)"),
            "engine",
            threads,
            (ops, p50, p99),
        ));
        for b in baselines() {
            let computed = AtomicU64::new(0);
            let (ops, p50, p99) = rounds(threads, keys, |i| {
                let key: Key = (i as u32, 0, 0, 1);
                std::hint::black_box(b.get_or_compute(&key, &|| {
                    computed.fetch_add(1, Ordering::Relaxed);
                    simulated_work(COMPILE_WORK)
                }));
            });
            let per_key = computed.into_inner() as f64 / keys as f64;
            rows.push(Row::new(
                format!("miss storm ({per_key:.2} compilations per key)"),
                b.name(),
                threads,
                (ops, p50, p99),
            ));
        }
    }
}

/// An invalidation storm: 256 functions all call `base`; every 1000 lookups `base` is redefined,
/// which invalidates all 256, and readers recompile what they look up next (about 1 us of work per
/// compilation). For a world-keyed baseline a redefinition is a new world: every key misses.
fn storm(o: &Options, rows: &mut Vec<Row>) {
    const EVERY: u64 = 1000;
    const WORK: u32 = 1000;
    let dur = Duration::from_millis(if o.quick { 300 } else { 2000 });
    for threads in 1..=o.max_threads {
        progress(o, &format!("invalidation storm, {threads} thread(s)"));
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int64", &Ty::any())
            .unwrap();
        let base = engine.declare_function("base").unwrap();
        engine
            .add_method(base, &[int.clone()], Ir::constant(0))
            .unwrap();
        let funcs: Vec<Function> = (0..256)
            .map(|i| {
                let f = engine.declare_function(&format!("s{i}")).unwrap();
                let ir = Ir {
                    value: i,
                    calls: vec![base],
                    work: WORK,
                };
                engine.add_method(f, &[int.clone()], ir).unwrap();
                f
            })
            .collect();
        let cache = CompilerCache::new(&engine, "perf", Sum).unwrap();
        let args = [int.clone()];
        // As in `hits`: thread 0 mutates, at a rate of about one per EVERY lookups overall.
        let per_thread = EVERY / threads as u64;
        let due = |t: usize, n: u64| t == 0 && n % per_thread == per_thread - 1;
        let redefinitions = AtomicU64::new(0);
        let (ops, p50, p99) = throughput(threads, dur, |t, n| {
            if due(t, n) {
                redefinitions.fetch_add(1, Ordering::Relaxed);
                engine
                    .add_method(base, &[int.clone()], Ir::constant(n))
                    .unwrap();
            }
            let g = engine.pin();
            let mi = g.dispatch(funcs[(n % 256) as usize], &args).unwrap();
            std::hint::black_box(cache.compile(&g, mi, &0).unwrap());
        });
        let invalidated = engine.stats().invalidated_code_instances;
        rows.push(Row::new(
            format!(
                "invalidation storm ({} invalidated per redefinition)",
                invalidated / redefinitions.into_inner().max(1)
            ),
            "engine",
            threads,
            (ops, p50, p99),
        ));
        for b in baselines() {
            let world = AtomicU64::new(1);
            let (ops, p50, p99) = throughput(threads, dur, |t, n| {
                if due(t, n) {
                    world.fetch_add(1, Ordering::Relaxed);
                }
                let key: Key = ((n % 256) as u32, 0, 0, world.load(Ordering::Relaxed));
                std::hint::black_box(b.get_or_compute(&key, &|| simulated_work(WORK)));
            });
            rows.push(Row::new(
                "invalidation storm (every key, new world)",
                b.name(),
                threads,
                (ops, p50, p99),
            ));
        }
    }
}

/// Fresh instances of every baseline.
fn baselines() -> Vec<Box<dyn Baseline>> {
    vec![
        Box::new(MutexMap(Mutex::new(HashMap::new()))),
        Box::new(RwMap(RwLock::new(HashMap::new()))),
        Box::new(Dash(dashmap::DashMap::new())),
        Box::new(Moka(moka::sync::Cache::new(1 << 20))),
    ]
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    let all: Vec<usize> = (1..=o.max_threads).collect();
    for w in o.workloads.clone() {
        match w.as_str() {
            "hits" => hits(&o, &mut rows, None, &all),
            "oversubscribed" => hits(&o, &mut rows, None, &[16, 64]),
            "redefinitions" => hits(&o, &mut rows, Some(10_000), &all),
            "invalidation" => invalidation(&o, &mut rows),
            "dedupe" => dedupe(&o, &mut rows),
            "storm" => storm(&o, &mut rows),
            _ => unreachable!("validated by parse"),
        }
    }
    if o.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"workload\":{:?},\"impl\":{:?},\"threads\":{},\"ops_per_sec\":{:.1},\"p50_ns\":{:.1},\"p99_ns\":{:.1}}}",
                    r.workload, r.imp, r.threads, r.ops_per_sec, r.p50_ns, r.p99_ns
                )
            })
            .collect();
        println!("{{\"results\":[{}]}}", items.join(","));
    } else {
        println!(
            "{:<55} {:<18} {:>7} {:>16} {:>10} {:>10}",
            "workload", "impl", "threads", "ops/s", "p50 ns", "p99 ns"
        );
        for r in &rows {
            println!(
                "{:<55} {:<18} {:>7} {:>16.0} {:>10.1} {:>10.1}",
                r.workload, r.imp, r.threads, r.ops_per_sec, r.p50_ns, r.p99_ns
            );
        }
    }
}
