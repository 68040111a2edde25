//! Throughput harness. Runs each workload on the engine and, in the same run, on baselines that
//! implement the same cache semantics, and prints a table (or JSON with `--json`).
//!
//! ```text
//! cargo run --release -p perf -- [--quick] [--json] [--threads N] [WORKLOAD...]
//! ```
//!
//! Workloads: `hits` (read-only hits: a dispatch and a code-cache hit per op for the engine, one
//! lookup of `(function, argtypes, owner, world)` for the baselines), `redefinitions` (the same with
//! one redefinition per 10^4 lookups; for a world-keyed baseline that is a new world), `invalidation` (invalidate a dependent graph on 1..N rayon
//! threads), `dedupe` (N threads missing one key). Absolute numbers depend on the machine; compare
//! rows of one run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use compiler_caching::{Callee, Compiler, CompilerCache, Engine, Function, InferCx, PhaseCx, Ty};

/// A method's source: a constant and the functions it calls (with the same argument types).
#[derive(Clone)]
struct Ir {
    value: u64,
    calls: Vec<Function>,
}

struct Sum;

impl Compiler for Sum {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        let ir = cx
            .instance()
            .method()
            .source::<Ir>()
            .cloned()
            .ok_or("not Ir")?;
        let args = cx.instance().argtypes().to_vec();
        let mut total = ir.value;
        for f in ir.calls {
            let mi = cx.dispatch(f, &args).map_err(|e| e.to_string())?;
            if let Callee::Ready(ci) = cx.compile(&mi).map_err(|e| e.to_string())? {
                total = total.wrapping_add(ci.linked().copied().unwrap_or(0));
            }
        }
        Ok(total)
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
}

struct Row {
    workload: String,
    imp: String,
    threads: usize,
    ops_per_sec: f64,
    p50_ns: f64,
    p99_ns: f64,
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
            "hits" | "redefinitions" | "invalidation" | "dedupe" => o.workloads.push(a),
            "-h" | "--help" => {
                return Err(
                    "usage: perf [--quick] [--json] [--threads N] [hits|redefinitions|invalidation|dedupe]..."
                        .into(),
                )
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if o.workloads.is_empty() {
        o.workloads = vec![
            "hits".into(),
            "redefinitions".into(),
            "invalidation".into(),
            "dedupe".into(),
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
    let results: Vec<(u64, Vec<u64>)> = std::thread::scope(|s| {
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
                    (n, samples)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ops: u64 = results.iter().map(|r| r.0).sum();
    let mut samples: Vec<u64> = results.into_iter().flat_map(|r| r.1).collect();
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
    };
    (ops as f64 / dur.as_secs_f64(), pct(0.50), pct(0.99))
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
fn hits(o: &Options, rows: &mut Vec<Row>, redefine_every: Option<u64>) {
    let workload = match redefine_every {
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
                .add_method(
                    f,
                    &[int.clone()],
                    Ir {
                        value: i,
                        calls: vec![],
                    },
                )
                .unwrap();
            f
        })
        .collect();
    let cache = CompilerCache::new(&engine, "perf", Sum);
    let args = [int.clone()];
    let lookups = AtomicU64::new(0);
    let redefine = |n: u64| {
        if let Some(every) = redefine_every {
            if lookups.fetch_add(1, Ordering::Relaxed) % every == every - 1 {
                let f = funcs[(n % 256) as usize];
                engine
                    .add_method(
                        f,
                        &[int.clone()],
                        Ir {
                            value: n,
                            calls: vec![],
                        },
                    )
                    .unwrap();
            }
        }
    };
    for threads in 1..=o.max_threads {
        progress(o, &format!("{workload}, {threads} thread(s)"));
        let (ops, p50, p99) = throughput(threads, dur, |_, n| {
            redefine(n);
            let g = engine.pin();
            let mi = g.dispatch(funcs[(n % 256) as usize], &args).unwrap();
            std::hint::black_box(cache.compile(&g, mi, &0).unwrap());
        });
        rows.push(Row {
            workload: workload.clone(),
            imp: "engine".into(),
            threads,
            ops_per_sec: ops,
            p50_ns: p50,
            p99_ns: p99,
        });
        let world = AtomicU64::new(1);
        let baselines: Vec<Box<dyn Baseline>> = vec![
            Box::new(MutexMap(Mutex::new(HashMap::new()))),
            Box::new(RwMap(RwLock::new(HashMap::new()))),
            Box::new(Dash(dashmap::DashMap::new())),
            Box::new(Moka(moka::sync::Cache::new(1 << 20))),
        ];
        for b in &baselines {
            let (ops, p50, p99) = throughput(threads, dur, |_, n| {
                if let Some(every) = redefine_every {
                    // A redefinition is a new world: a world-keyed cache misses on every key.
                    if lookups.fetch_add(1, Ordering::Relaxed) % every == every - 1 {
                        world.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let key: Key = ((n % 256) as u32, 0, 0, world.load(Ordering::Relaxed));
                std::hint::black_box(b.get_or_compute(&key, &|| n % 256));
            });
            rows.push(Row {
                workload: workload.clone(),
                imp: b.name().into(),
                threads,
                ops_per_sec: ops,
                p50_ns: p50,
                p99_ns: p99,
            });
        }
    }
}

/// Builds a DAG of `n` compiled functions where function `i` calls `i+1 ..= i+fanout`, so every
/// function depends transitively on the last one, and returns the last one's function.
fn dependent_graph(
    engine: &Engine,
    cache: &CompilerCache<Sum>,
    int: &Ty,
    n: usize,
    fanout: usize,
) -> Function {
    let funcs: Vec<Function> = (0..n)
        .map(|i| engine.declare_function(&format!("g{i}")).unwrap())
        .collect();
    for i in 0..n {
        let calls = (i + 1..=(i + fanout).min(n - 1))
            .map(|j| funcs[j])
            .collect();
        engine
            .add_method(funcs[i], &[int.clone()], Ir { value: 1, calls })
            .unwrap();
    }
    let g = engine.pin();
    for i in (0..n).rev() {
        let mi = g.dispatch(funcs[i], &[int.clone()]).unwrap();
        cache.compile(&g, mi, &0).unwrap();
    }
    funcs[n - 1]
}

fn invalidation(o: &Options, rows: &mut Vec<Row>) {
    let n = if o.quick { 20_000 } else { 100_000 };
    let rounds = if o.quick { 2 } else { 3 };
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
                    "invalidation of {n} dependents, {threads} thread(s), round {}",
                    round + 1
                ),
            );
            let engine = Engine::new();
            let int = engine
                .lattice()
                .declare_concrete("Int64", &Ty::any())
                .unwrap();
            let cache = CompilerCache::new(&engine, "perf", Sum);
            let last = dependent_graph(&engine, &cache, &int, n, 4);
            // Time the walk alone; reclaiming the 10^5 dead entries is a separate cost.
            engine.set_auto_reclaim(false);
            let before = engine.stats().invalidated_code_instances;
            let t0 = Instant::now();
            pool.install(|| {
                engine
                    .add_method(
                        last,
                        &[int.clone()],
                        Ir {
                            value: 2,
                            calls: vec![],
                        },
                    )
                    .unwrap()
            });
            let secs = t0.elapsed().as_secs_f64();
            invalidated = engine.stats().invalidated_code_instances - before;
            best = best.min(secs);
        }
        rows.push(Row {
            workload: format!("invalidation({n} dependents)"),
            imp: "engine".into(),
            threads,
            ops_per_sec: invalidated as f64 / best,
            p50_ns: best * 1e9 / invalidated as f64,
            p99_ns: best * 1e9 / invalidated as f64,
        });
    }
}

fn dedupe(o: &Options, rows: &mut Vec<Row>) {
    let rounds = if o.quick { 50 } else { 500 };
    for threads in [o.max_threads, 8, 16] {
        progress(o, &format!("dedupe, {threads} threads x {rounds} keys"));
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int64", &Ty::any())
            .unwrap();
        let cache = CompilerCache::new(&engine, "perf", Sum);
        let funcs: Vec<Function> = (0..rounds)
            .map(|i| {
                let f = engine.declare_function(&format!("d{i}")).unwrap();
                engine
                    .add_method(
                        f,
                        &[int.clone()],
                        Ir {
                            value: 1,
                            calls: vec![],
                        },
                    )
                    .unwrap();
                f
            })
            .collect();
        let barrier = Barrier::new(threads);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for &f in &funcs {
                        barrier.wait();
                        let g = engine.pin();
                        let mi = g.dispatch(f, &[int.clone()]).unwrap();
                        cache.compile(&g, mi, &0).unwrap();
                    }
                });
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        let runs = engine.stats().infer_runs;
        rows.push(Row {
            workload: format!(
                "dedupe(infer runs per {threads} concurrent misses = {:.2})",
                runs as f64 / rounds as f64
            ),
            imp: "engine".into(),
            threads,
            ops_per_sec: (rounds * threads) as f64 / secs,
            p50_ns: 0.0,
            p99_ns: 0.0,
        });
    }
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
    for w in o.workloads.clone() {
        match w.as_str() {
            "hits" => hits(&o, &mut rows, None),
            "redefinitions" => hits(&o, &mut rows, Some(10_000)),
            "invalidation" => invalidation(&o, &mut rows),
            "dedupe" => dedupe(&o, &mut rows),
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
