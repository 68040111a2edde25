//! The invalidation walk through the public API: redefining the root of a compiled call graph of
//! `N` functions (default 10^5) invalidates every one of them, on 1 and on 2 rayon threads.
//!
//! ```text
//! cargo run --release -p perf --bin walk -- [chain|tree|dag ...]
//! N=1000000 cargo run --release -p perf --bin walk -- chain
//! ```
//!
//! Prints dependents invalidated per second for each shape and thread count, and the 2-thread
//! speedup. `measured_redefine` is the only code between the clock reads, so
//! `valgrind --tool=callgrind --toggle-collect='*measured_redefine*'` counts the walk's
//! instructions alone.

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use std::time::{Duration, Instant};
use test_support::compilers::{Program, Sum};

const ROUNDS: u32 = 5;

fn main() {
    let mut shapes: Vec<String> = std::env::args().skip(1).collect();
    if shapes.is_empty() {
        shapes = vec!["chain".into(), "tree".into(), "dag".into()];
    }
    let n: usize = match std::env::var("N") {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("N must be a number of functions, not {v:?}");
            std::process::exit(2)
        }),
        Err(_) => 100_000,
    };
    println!("shape   functions  threads  invalidated/s  speedup");
    for shape in &shapes {
        if !["chain", "tree", "dag"].contains(&shape.as_str()) {
            eprintln!("unknown shape {shape:?}: chain, tree or dag");
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
        // Each function calls: its predecessor (chain), its parent in a binary tree (tree), or
        // its four predecessors (dag), so the root reaches every function.
        let calls: Vec<Function> = match (i, shape) {
            (0, _) => vec![],
            (_, "chain") => vec![funcs[i - 1]],
            (_, "tree") => vec![funcs[(i - 1) / 2]],
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
