//! Scale: the costs that used to grow faster than the input, each measured at two sizes in one
//! run, with the ratio beside the target.
//!
//! ```text
//! cargo run --release -p perf --bin scale [-- --quick]
//! ```
//!
//! - `define`: adding one method to a function that has 10^3, then 10^5, methods already (and the
//!   total time to add the 10^5);
//! - `old-world`: the first dispatch in a pinned world after 10^4, then 2·10^4, later
//!   redefinitions of an applicable method that never change its answer;
//! - `old-world cycles`: the same after 10^4, then 2·10^4, later deletions and re-additions of
//!   such a method (each re-addition starts a new run of its lineage), with the winner deleted
//!   at the end so that the answer changes later; and the same dispatch again, from the cache;
//! - `overlays`: creating one overlay table, and adding one method of a function to one, when
//!   10^4, then 4·10^4, overlays exist (each holding a method of the function);
//! - `hierarchy`: memory per declared type, and a subtype query, in a chain of abstract types
//!   10^4, then 3·10^4, levels deep;
//! - `union`: building a union of 10^4, then 2·10^4, members, and the first dispatch on it;
//! - `chain`: a cold compile of a call chain 10^3, then 10^4, calls deep.
//!
//! `--quick` divides the large sizes by ten (for CI). Times are wall-clock on a shared machine:
//! compare the two sizes of one row, not rows of different runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use compiler_caching::{CompilerCache, Engine, Ty};
use test_support::alloc::CountingAlloc;
use test_support::foreign::{Foreign, Ir};
use test_support::setups::{calls, types};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc::new();

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Row {
    case: String,
    small: String,
    large: String,
    ratio: f64,
    target: &'static str,
}

/// The time to add one method to a function that already has `n` (averaged over 100 additions
/// at that size), and the time to add all `n`.
fn define(n: usize) -> (Duration, Duration) {
    let engine = Engine::new();
    let l = engine.lattice();
    let types: Vec<Ty> = (0..n + 100)
        .map(|i| l.declare_concrete(&format!("T{i}"), &Ty::any()).unwrap())
        .collect();
    let f = engine.declare_function("f").unwrap();
    engine.set_auto_reclaim(false);
    let ((), all) = timed(|| {
        for t in &types[..n] {
            engine.add_method(f, std::slice::from_ref(t), ()).unwrap();
        }
    });
    let ((), next) = timed(|| {
        for t in &types[n..] {
            engine.add_method(f, std::slice::from_ref(t), ()).unwrap();
        }
    });
    (next / 100, all)
}

/// The first dispatch in a world pinned before `n` redefinitions of a less specific applicable
/// method (which never change the answer), and a second one (served from the history): the
/// fastest of five runs, each on a fresh engine (a single cold call is noisy).
fn old_world(n: usize) -> (Duration, Duration) {
    (0..5).map(|_| old_world_once(n)).min().expect("five runs")
}

fn old_world_once(n: usize) -> (Duration, Duration) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[int.clone()], 0usize).unwrap();
    engine.add_method(f, &[Ty::any()], 0usize).unwrap();
    let old = engine.pin();
    for i in 0..n {
        engine.add_method(f, &[Ty::any()], i).unwrap();
    }
    let (_, first) = timed(|| black_box(old.dispatch(f, &[int.clone()]).unwrap().id()));
    let (_, second) = timed(|| black_box(old.dispatch(f, &[int.clone()]).unwrap().id()));
    (first, second)
}

/// The first dispatch in a world pinned before `n` deletions and re-additions of a less specific
/// applicable method (which never change the answer), the winner being deleted at the end, and a
/// second one (served from the cache): the fastest of five runs, each on a fresh engine.
fn old_world_cycles(n: usize) -> (Duration, Duration) {
    (0..5)
        .map(|_| old_world_cycles_once(n))
        .min()
        .expect("five runs")
}

fn old_world_cycles_once(n: usize) -> (Duration, Duration) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    let winner = engine.add_method(f, &[int.clone()], 0usize).unwrap();
    let mut loser = engine.add_method(f, &[Ty::any()], 0usize).unwrap();
    let old = engine.pin();
    for i in 0..n {
        engine.delete_method(&loser).unwrap();
        loser = engine.add_method(f, &[Ty::any()], i).unwrap();
    }
    engine.delete_method(&winner).unwrap();
    let dispatch = || black_box(old.dispatch(f, &[int.clone()]).unwrap().id());
    let (first_id, first) = timed(dispatch);
    let (second_id, second) = timed(dispatch);
    assert_eq!(first_id, second_id);
    (first, second)
}

/// The time to create one overlay, and to add one method of one function to one overlay, when
/// `n` overlays exist, each already holding a method of that function (averaged over 100).
fn overlays(n: usize) -> (Duration, Duration) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    engine.set_auto_reclaim(false);
    let tables: Vec<_> = (0..n)
        .map(|i| engine.new_overlay(&format!("overlay{i}")).unwrap())
        .collect();
    for &table in &tables {
        engine.add_method_to(table, f, &[int.clone()], ()).unwrap();
    }
    let (more, create) = timed(|| {
        (n..n + 100)
            .map(|i| engine.new_overlay(&format!("overlay{i}")).unwrap())
            .collect::<Vec<_>>()
    });
    let ((), define) = timed(|| {
        for &table in &more {
            engine.add_method_to(table, f, &[int.clone()], ()).unwrap();
        }
    });
    (create / 100, define / 100)
}

/// Bytes per declared type, and the time of one subtype query leaf <: root, in a chain `n` deep.
fn hierarchy(n: usize) -> (f64, Duration) {
    let before = ALLOCATOR.live_bytes();
    let engine = Engine::new();
    let l = engine.lattice();
    let root = l.declare_abstract("A0", &Ty::any()).unwrap();
    let mut leaf = root.clone();
    for i in 1..n {
        leaf = l.declare_abstract(&format!("A{i}"), &leaf).unwrap();
    }
    let bytes = (ALLOCATOR.live_bytes() - before) as f64 / n as f64;
    let (_, query) = timed(|| {
        for _ in 0..1000 {
            black_box(black_box(&leaf).is_subtype(black_box(&root)));
        }
    });
    (bytes, query / 1000)
}

/// The time to build a union of `n` concrete types, and of the first dispatch on one of them.
fn union(n: usize) -> (Duration, Duration) {
    let engine = Engine::new();
    let l = engine.lattice();
    let root = l.declare_abstract("Root", &Ty::any()).unwrap();
    let members: Vec<Ty> = (0..n)
        .map(|i| l.declare_concrete(&format!("M{i}"), &root).unwrap())
        .collect();
    let (u, build) = timed(|| Ty::union(members.iter().cloned()).unwrap());
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[u], ()).unwrap();
    engine.add_method(f, &[root], ()).unwrap();
    let guard = engine.pin();
    let (_, first) =
        timed(|| black_box(guard.dispatch(f, &[members[n / 2].clone()]).unwrap().id()));
    (build, first)
}

/// Records the stack address each level of a compile chain reaches, to measure the stack one
/// nested `InferCx::compile` costs.
struct Probe(std::sync::Mutex<Vec<usize>>);

impl compiler_caching::Compiler for Probe {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = ();
    type Error = String;
    fn infer(&self, cx: &mut compiler_caching::InferCx<'_, Self>) -> Result<(), String> {
        let here = 0u8;
        self.0
            .lock()
            .unwrap()
            .push(black_box(&here) as *const u8 as usize);
        if let Some(next) = cx
            .instance()
            .method()
            .source::<Option<compiler_caching::Function>>()
            .copied()
            .flatten()
        {
            let mi = cx
                .dispatch(next, cx.instance().argtypes())
                .map_err(|e| e.to_string())?;
            cx.compile(&mi).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    fn codegen(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &compiler_caching::PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
}

/// The median stack, in bytes, between two consecutive levels of a nested compile.
fn stack_per_level() -> usize {
    let engine = Engine::new();
    let funcs: Vec<_> = (0..64)
        .map(|i| engine.declare_function(&format!("p{i}")).unwrap())
        .collect();
    for (i, &f) in funcs.iter().enumerate() {
        engine
            .add_method(f, &[Ty::any()], funcs.get(i + 1).copied())
            .unwrap();
    }
    let cache = CompilerCache::new(&engine, "P", Probe(Default::default())).unwrap();
    let guard = engine.pin();
    let top = guard.dispatch(funcs[0], &[Ty::any()]).unwrap();
    cache.compile(&guard, top, &()).unwrap();
    let addresses = cache.compiler().0.lock().unwrap().clone();
    let mut steps: Vec<usize> = addresses.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
    steps.sort_unstable();
    steps[steps.len() / 2]
}

/// A cold compile of a call chain `n` calls deep.
fn chain(n: usize) -> Duration {
    let engine = Engine::new();
    let t = types(&engine);
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let f = engine.declare_function(name).unwrap();
        let ir = match names.get(i + 1) {
            Some(next) => calls(1, &[next.as_str()], &t.int),
            None => Ir::constant(1),
        };
        engine.add_method(f, &[t.int.clone()], ir).unwrap();
    }
    let cache = CompilerCache::new(&engine, "C", Foreign::default()).unwrap();
    let guard = engine.pin();
    let top = guard
        .dispatch(engine.function("c0").unwrap(), &[t.int.clone()])
        .unwrap();
    let (value, time) = timed(|| *cache.compile(&guard, top, &0).unwrap());
    assert_eq!(value, n as i64);
    time
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = |n: usize| if quick { n / 10 } else { n };
    let mut rows = Vec::new();

    eprintln!("define...");
    let (small_next, _) = define(1_000);
    let (large_next, large_all) = define(scale(100_000));
    rows.push(Row {
        case: format!(
            "add one method beside 10^3 / {} methods (all {} added in {:.2} s)",
            scale(100_000),
            scale(100_000),
            large_all.as_secs_f64()
        ),
        small: format!("{:.2} us", us(small_next)),
        large: format!("{:.2} us", us(large_next)),
        ratio: large_next.as_secs_f64() / small_next.as_secs_f64(),
        target: "<= 10x",
    });

    eprintln!("old-world...");
    let (a_first, _) = old_world(scale(10_000));
    let (b_first, b_second) = old_world(scale(20_000));
    rows.push(Row {
        case: format!(
            "first old-world dispatch after {} / {} redefinitions (again: {:.2} us)",
            scale(10_000),
            scale(20_000),
            us(b_second)
        ),
        small: format!("{:.0} us", us(a_first)),
        large: format!("{:.0} us", us(b_first)),
        ratio: b_first.as_secs_f64() / a_first.as_secs_f64(),
        target: "~2x (n log n)",
    });

    eprintln!("old-world cycles...");
    let (a_first, _) = old_world_cycles(scale(10_000));
    let (b_first, b_second) = old_world_cycles(scale(20_000));
    rows.push(Row {
        case: format!(
            "first old-world dispatch after {} / {} delete/re-add cycles (again: {:.2} us)",
            scale(10_000),
            scale(20_000),
            us(b_second)
        ),
        small: format!("{:.0} us", us(a_first)),
        large: format!("{:.0} us", us(b_first)),
        ratio: b_first.as_secs_f64() / a_first.as_secs_f64(),
        target: "~2x (n log^2 n)",
    });

    eprintln!("overlays...");
    let (a_create, a_define) = overlays(scale(10_000));
    let (b_create, b_define) = overlays(scale(40_000));
    rows.push(Row {
        case: format!(
            "create one overlay beside {} / {} overlays",
            scale(10_000),
            scale(40_000)
        ),
        small: format!("{:.2} us", us(a_create)),
        large: format!("{:.2} us", us(b_create)),
        ratio: b_create.as_secs_f64() / a_create.as_secs_f64(),
        target: "~1x",
    });
    rows.push(Row {
        case: format!(
            "add f's method to one more overlay, f in {} / {} overlays",
            scale(10_000),
            scale(40_000)
        ),
        small: format!("{:.2} us", us(a_define)),
        large: format!("{:.2} us", us(b_define)),
        ratio: b_define.as_secs_f64() / a_define.as_secs_f64(),
        target: "<= 2x (log n)",
    });

    eprintln!("hierarchy...");
    let (a_bytes, a_query) = hierarchy(scale(10_000));
    let (b_bytes, b_query) = hierarchy(scale(30_000));
    rows.push(Row {
        case: format!(
            "bytes per type, chain {} / {} deep",
            scale(10_000),
            scale(30_000)
        ),
        small: format!("{a_bytes:.0} B"),
        large: format!("{b_bytes:.0} B"),
        ratio: b_bytes / a_bytes,
        target: "~1x (linear memory)",
    });
    rows.push(Row {
        case: format!(
            "leaf <: root, chain {} / {} deep",
            scale(10_000),
            scale(30_000)
        ),
        small: format!("{:.0} ns", us(a_query) * 1e3),
        large: format!("{:.0} ns", us(b_query) * 1e3),
        ratio: b_query.as_secs_f64() / a_query.as_secs_f64(),
        target: "O(log depth)",
    });

    eprintln!("union...");
    let (a_build, a_first) = union(scale(10_000));
    let (b_build, b_first) = union(scale(20_000));
    rows.push(Row {
        case: format!(
            "build a union of {} / {} members",
            scale(10_000),
            scale(20_000)
        ),
        small: format!("{:.1} ms", us(a_build) / 1e3),
        large: format!("{:.1} ms", us(b_build) / 1e3),
        ratio: b_build.as_secs_f64() / a_build.as_secs_f64(),
        target: "~2x (n log n)",
    });
    rows.push(Row {
        case: format!(
            "first dispatch on it, {} / {} members",
            scale(10_000),
            scale(20_000)
        ),
        small: format!("{:.0} us", us(a_first)),
        large: format!("{:.0} us", us(b_first)),
        ratio: b_first.as_secs_f64() / a_first.as_secs_f64(),
        target: "~2x",
    });

    eprintln!("chain...");
    let a = chain(scale(1_000));
    let b = chain(scale(10_000));
    let per_level = stack_per_level();
    rows.push(Row {
        case: format!(
            "cold compile of a call chain {} / {} deep ({per_level} B of stack per level)",
            scale(1_000),
            scale(10_000)
        ),
        small: format!("{:.1} ms", us(a) / 1e3),
        large: format!("{:.1} ms", us(b) / 1e3),
        ratio: b.as_secs_f64() / a.as_secs_f64(),
        target: "~10x, no overflow",
    });

    println!(
        "{:<88} {:>12} {:>12} {:>8}   target",
        "case", "small", "large", "ratio"
    );
    for r in rows {
        println!(
            "{:<88} {:>12} {:>12} {:>7.2}x   {}",
            r.case, r.small, r.large, r.ratio, r.target
        );
    }
}
