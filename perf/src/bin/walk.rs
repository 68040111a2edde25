//! The invalidation walk through the public API: redefining the root of a compiled call graph of
//! `N` functions (default 10^5) invalidates every one of them, on 1 and on 2 rayon threads.
//!
//! ```text
//! cargo run --release -p perf --bin walk -- [chain|tree|dag|wide ...]
//! N=1000000 cargo run --release -p perf --bin walk -- chain
//! ```
//!
//! Shapes: each function calls its predecessor (`chain`), its parent in a binary tree (`tree`),
//! its four predecessors (`dag`: a DAG four functions wide, whose walk has little to share between
//! threads), or four functions picked among its 1024 predecessors (`wide`: a DAG with a wide
//! frontier).
//!
//! Prints dependents invalidated per second for each shape and thread count, and the 2-thread
//! speedup. It also prints how long an idle rayon worker of the same 2-thread pool takes to start
//! a spawned job (median of 15): a walk can use its second thread only from then on, so on a
//! machine where that is milliseconds, a walk of a few milliseconds cannot gain much. `measured_redefine` is the only code between the clock reads, so
//! `valgrind --tool=callgrind --toggle-collect='*measured_redefine*'` counts the walk's
//! instructions alone.

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::compilers::{Program, Sum};

const ROUNDS: u32 = 5;

fn main() {
    let mut shapes: Vec<String> = std::env::args().skip(1).collect();
    if shapes.is_empty() {
        shapes = vec!["chain".into(), "tree".into(), "dag".into(), "wide".into()];
    }
    let n: usize = match std::env::var("N") {
        Ok(v) => v.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("N must be a positive number of functions, not {v:?}");
            std::process::exit(2)
        }),
        Err(_) => 100_000,
    };
    println!(
        "idle rayon worker wake-up (spawn to start, median of 15): {:.0} us",
        wake_up_median().as_secs_f64() * 1e6
    );
    println!("shape   functions  threads  invalidated/s  speedup");
    for shape in &shapes {
        if !["chain", "tree", "dag", "wide"].contains(&shape.as_str()) {
            eprintln!("unknown shape {shape:?}: chain, tree, dag or wide");
            std::process::exit(2);
        }
        let one = run(shape, n, 1);
        let two = run(shape, n, 2);
        println!("{shape:<7} {n:>9}  1        {:>10.2} M", one / 1e6);
        println!(
            "{shape:<7} {n:>9}  2        {:>10.2} M  {:.2}x",
            two / 1e6,
            two / one
        );
    }
}

/// Four distinct functions among the 1024 before `i` (fewer near the start), picked by a fixed
/// multiplicative hash so that every run builds the same graph.
fn wide_callees(i: usize) -> Vec<usize> {
    let span = i.min(1024) as u64;
    let mut callees: Vec<usize> = (1..=4u64)
        .map(|k| {
            let h = (i as u64 ^ (k << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
            i - 1 - (h % span) as usize
        })
        .collect();
    callees.sort_unstable();
    callees.dedup();
    callees
}

/// The median time an idle worker of a 2-thread pool takes to start a job spawned from the other
/// while that one keeps working, as a walk does; each after the pool idled for 20 ms (as it does
/// between a run's compilations and its walk). A spawning thread that blocked instead would hand
/// its own core to the woken worker, which is much faster on a virtual machine.
fn wake_up_median() -> Duration {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut times: Vec<Duration> = (0..15)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            pool.install(|| {
                let started = Arc::new(AtomicU64::new(0));
                let start = Instant::now();
                let seen = Arc::clone(&started);
                rayon::spawn(move || {
                    seen.store(start.elapsed().as_nanos() as u64 + 1, Ordering::Release);
                });
                loop {
                    match started.load(Ordering::Acquire) {
                        0 => std::hint::spin_loop(),
                        ns => break Duration::from_nanos(ns - 1),
                    }
                }
            })
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// Invalidated dependents per second, over [`ROUNDS`] redefinitions of the root.
fn run(shape: &str, n: usize, threads: usize) -> f64 {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let funcs: Vec<Function> = (0..n)
        .map(|i| engine.declare_function(&format!("f{i}")).unwrap())
        .collect();
    for (i, &f) in funcs.iter().enumerate() {
        // Every function calls only earlier ones and at least one, so the root reaches all.
        let calls: Vec<Function> = match (i, shape) {
            (0, _) => vec![],
            (_, "chain") => vec![funcs[i - 1]],
            (_, "tree") => vec![funcs[(i - 1) / 2]],
            (_, "wide") => wide_callees(i).into_iter().map(|j| funcs[j]).collect(),
            _ => (i.saturating_sub(4)..i).rev().map(|j| funcs[j]).collect(),
        };
        engine
            .add_method(f, &[int.clone()], Program::calling(calls))
            .unwrap();
    }
    let cache = CompilerCache::new(&engine, "walk", Sum).unwrap();
    engine.set_auto_reclaim(false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        {
            let guard = engine.pin();
            for &f in &funcs {
                let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                cache.compile(&guard, mi, &0).unwrap();
            }
        }
        let before = engine.stats().invalidated_code_instances;
        let start = Instant::now();
        pool.install(|| measured_redefine(&engine, funcs[0], &int));
        total += start.elapsed();
        let invalidated = engine.stats().invalidated_code_instances - before;
        assert!(
            invalidated >= n as u64 - 1,
            "redefining the root invalidated {invalidated} of {n} code instances"
        );
        engine.reclaim();
    }
    f64::from(ROUNDS) * n as f64 / total.as_secs_f64()
}

#[inline(never)]
fn measured_redefine(engine: &Engine, f: Function, int: &Ty) {
    engine
        .add_method(f, &[int.clone()], Program::calling(vec![]))
        .unwrap();
}
