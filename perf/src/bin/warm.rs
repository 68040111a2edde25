//! Warm starts: the persistent tier against compiling, in one run.
//!
//! ```text
//! cargo run --release -p perf --bin warm [-- --quick]
//! ```
//!
//! - `jit`: the time to the first call of each of 10^3 functions of the demo's language (a chain:
//!   `f_i` calls `f_{i-1}`), each compiled by Cranelift, in a session with no store, an empty
//!   store, and the store the previous session filled (its records still to be linked: link
//!   copies the stored machine code into executable memory and fills in its relocations);
//! - `trivial`: the same with a compiler whose phases cost next to nothing (what the tier itself
//!   costs);
//! - `load`: one instance whose `infer` records k dispatch dependencies (k = 1, 10, 100),
//!   compiled with no store, and loaded from a warm store;
//! - `store`: gets and durable puts of 512-byte records on the redb store, 1 and 2 threads.
//!
//! Each figure is the best of several runs (`--quick`: fewer). Times are wall-clock on a shared
//! machine: compare the rows of one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use compiler_caching::{
    ArtifactStore, CompilerCache, Engine, Function, MemoryStore, RecordKey, RedbOptions, RedbStore,
    Ty,
};
use test_support::persisted::{Calls, Chain};

const N: usize = 1000;

fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn jit_script() -> String {
    let mut src = String::from("fn f_0(x: Int64) -> Int64 = x + 1\n");
    for i in 1..N {
        src.push_str(&format!(
            "fn f_{i}(x: Int64) -> Int64 = f_{}(x) * 3 + {i}\n",
            i - 1
        ));
    }
    for i in 0..N {
        src.push_str(&format!("print f_{i}(1)\n"));
    }
    src
}

/// One session over `cache` (none: no store): the time to run the script, and its infer runs.
fn jit_session(cache: Option<&std::path::Path>, script: &str) -> (Duration, u64) {
    let session = match cache {
        Some(dir) => jit::Session::with_cache(dir).unwrap(),
        None => jit::Session::new().unwrap(),
    };
    let start = Instant::now();
    session.run(script, &mut std::io::sink()).unwrap();
    let elapsed = start.elapsed();
    session.flush();
    (elapsed, session.engine.stats().infer_runs)
}

fn trivial_engine() -> (Engine, Vec<Function>, Ty) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let fs = (0..N)
        .map(|i| {
            let f = engine.declare_function(&format!("f_{i}")).unwrap();
            let calls = if i == 0 {
                Calls::value(1)
            } else {
                Calls::calling(1, &[&format!("f_{}", i - 1)])
            };
            engine.add_method(f, &[int.clone()], calls).unwrap();
            f
        })
        .collect();
    (engine, fs, int)
}

/// The time from creating the cache to the first call of every function.
fn trivial_run(store: Option<Arc<dyn ArtifactStore>>) -> (Duration, u64) {
    let (engine, fs, int) = trivial_engine();
    let start = Instant::now();
    let cache = match store {
        Some(store) => CompilerCache::with_store(&engine, "chain", Chain::new("1"), store),
        None => CompilerCache::new(&engine, "chain", Chain::new("1")),
    }
    .unwrap();
    {
        let guard = engine.pin();
        for &f in &fs {
            let mi = guard.dispatch(f, std::slice::from_ref(&int)).unwrap();
            cache.compile(&guard, mi, &0).unwrap();
        }
    }
    let elapsed = start.elapsed();
    (elapsed, engine.stats().infer_runs)
}

fn fanout(k: usize, store: Option<Arc<dyn ArtifactStore>>) -> (Duration, u64) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let names: Vec<String> = (0..k).map(|i| format!("leaf_{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let f = engine.declare_function(name).unwrap();
        engine
            .add_method(f, &[Ty::any()], Calls::value(i as u64))
            .unwrap();
    }
    let top = engine.declare_function("top").unwrap();
    let source = Calls {
        value: 1,
        dispatches: names,
        ..Calls::default()
    };
    engine.add_method(top, &[int.clone()], source).unwrap();
    let cache = match store {
        Some(store) => CompilerCache::with_store(&engine, "chain", Chain::new("1"), store),
        None => CompilerCache::new(&engine, "chain", Chain::new("1")),
    }
    .unwrap();
    let guard = engine.pin();
    let mi = guard.dispatch(top, std::slice::from_ref(&int)).unwrap();
    let start = Instant::now();
    cache.compile(&guard, mi, &0).unwrap();
    let elapsed = start.elapsed();
    drop(guard);
    let _ = cache.flush_store();
    (elapsed, engine.stats().infer_runs)
}

fn key(i: u64) -> RecordKey {
    let mut key = [3; 32];
    key[..8].copy_from_slice(&i.to_le_bytes());
    RecordKey(key)
}

/// Operations per second of `op` over `ops` operations on `threads` threads.
fn rate(threads: u64, ops: u64, op: impl Fn(u64) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || (t..ops).step_by(threads as usize).for_each(op));
        }
    });
    ops as f64 / start.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => {
            eprintln!("usage: warm [--quick] (not `{other}`)");
            std::process::exit(2);
        }
    };
    let runs = if quick { 2 } else { 5 };

    println!("| first calls of 10^3 functions | no store | cold store | warm store | warm / cold | infer runs, warm |");
    println!("|---|---|---|---|---|---|");
    let script = jit_script();
    let none = best(runs, || jit_session(None, &script).0);
    let cold = best(runs, || {
        let dir = tempfile::tempdir().unwrap();
        jit_session(Some(dir.path()), &script).0
    });
    let dir = tempfile::tempdir().unwrap();
    jit_session(Some(dir.path()), &script);
    let mut warm_infers = 0;
    let warm = best(runs, || {
        let (t, infers) = jit_session(Some(dir.path()), &script);
        warm_infers = infers;
        t
    });
    println!(
        "| jit (Cranelift) | {} | {} | {} | {:.2} | {warm_infers} |",
        ms(none),
        ms(cold),
        ms(warm),
        warm.as_secs_f64() / cold.as_secs_f64()
    );
    let none = best(runs, || trivial_run(None).0);
    let cold = best(runs, || {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("s.redb"), RedbOptions::default()).unwrap();
        trivial_run(Some(Arc::new(store))).0
    });
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ArtifactStore> =
        Arc::new(RedbStore::open(dir.path().join("s.redb"), RedbOptions::default()).unwrap());
    trivial_run(Some(store.clone()));
    let mut warm_infers = 0;
    let warm = best(runs, || {
        let (t, infers) = trivial_run(Some(store.clone()));
        warm_infers = infers;
        t
    });
    println!(
        "| trivial compiler | {} | {} | {} | {:.2} | {warm_infers} |",
        ms(none),
        ms(cold),
        ms(warm),
        warm.as_secs_f64() / cold.as_secs_f64()
    );

    println!(
        "\n| one instance, k dispatch dependencies | compile (no store) | load | load / compile |"
    );
    println!("|---|---|---|---|");
    for k in [1, 10, 100] {
        let compile = best(runs * 4, || fanout(k, None).0);
        let memory: Arc<dyn ArtifactStore> = Arc::new(MemoryStore::new());
        fanout(k, Some(memory.clone()));
        let load = best(runs * 4, || {
            let (t, infers) = fanout(k, Some(memory.clone()));
            assert_eq!(infers, 0);
            t
        });
        println!(
            "| k = {k} | {} | {} | {:.2} |",
            us(compile),
            us(load),
            load.as_secs_f64() / compile.as_secs_f64()
        );
    }

    println!("\n| redb store, 512-byte records | 1 thread | 2 threads |");
    println!("|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb"), RedbOptions::default()).unwrap();
    let record = vec![0x42u8; 512];
    const RECORDS: u64 = 4096;
    let batch: Vec<_> = (0..RECORDS).map(|i| (key(i), record.clone())).collect();
    store.put_batch(&batch).unwrap();
    let gets = if quick { 20_000 } else { 200_000 };
    let puts = if quick { 20 } else { 200 };
    let get = |threads| {
        rate(threads, gets, |i| {
            assert!(store.get(&key(i % RECORDS)).unwrap().is_some());
        })
    };
    let put = |threads| {
        rate(threads, puts, |i| {
            store.put(&key(i % RECORDS), &record).unwrap();
        })
    };
    let batched = |threads| {
        100.0
            * rate(threads, puts, |i| {
                let start = (i * 100) % RECORDS;
                let batch: Vec<_> = (start..start + 100)
                    .map(|j| (key(j % RECORDS), record.clone()))
                    .collect();
                store.put_batch(&batch).unwrap();
            })
    };
    println!("| gets/s | {:.0} | {:.0} |", get(1), get(2));
    println!(
        "| durable puts/s (one transaction each) | {:.0} | {:.0} |",
        put(1),
        put(2)
    );
    println!(
        "| records/s in batches of 100 | {:.0} | {:.0} |",
        batched(1),
        batched(2)
    );
}
