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

/// One line of the report: a quantity at the small and at the large size, and their ratio
/// beside the target.
struct Row {
    case: String,
    small: String,
    large: String,
    ratio: f64,
    target: &'static str,
}

/// What a row compares: a time, or a number of bytes.
trait Quantity: Copy {
    /// The number whose ratio (large / small) the row shows.
    fn value(self) -> f64;
}

impl Quantity for Duration {
    fn value(self) -> f64 {
        self.as_secs_f64()
    }
}

impl Quantity for f64 {
    fn value(self) -> f64 {
        self
    }
}

impl Row {
    /// The row of `case` for the measurements at the small and the large size, each shown by
    /// `show`.
    fn new<Q: Quantity>(
        case: String,
        [small, large]: [Q; 2],
        show: fn(Q) -> String,
        target: &'static str,
    ) -> Row {
        Row {
            case,
            small: show(small),
            large: show(large),
            ratio: large.value() / small.value(),
            target,
        }
    }
}

// How a row shows a time or a number of bytes.

fn us_0(d: Duration) -> String {
    format!("{:.0} us", us(d))
}

fn us_2(d: Duration) -> String {
    format!("{:.2} us", us(d))
}

fn ns_0(d: Duration) -> String {
    format!("{:.0} ns", us(d) * 1e3)
}

fn ms_1(d: Duration) -> String {
    format!("{:.1} ms", us(d) / 1e3)
}

fn bytes(b: f64) -> String {
    format!("{b:.0} B")
}

/// Announces `what` on stderr, then runs `measure` at the small and then at the large size.
fn at_two_sizes<T>(
    what: &str,
    [small, large]: [usize; 2],
    mut measure: impl FnMut(usize) -> T,
) -> [T; 2] {
    eprintln!("{what}...");
    let at_small = measure(small);
    [at_small, measure(large)]
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
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => {
            eprintln!("usage: scale [--quick] (not `{other}`)");
            std::process::exit(2);
        }
    };
    let scale = |n: usize| if quick { n / 10 } else { n };
    let mut rows = Vec::new();

    let (s, l) = (1_000, scale(100_000));
    let [(small, _), (large, all)] = at_two_sizes("define", [s, l], define);
    rows.push(Row::new(
        format!(
            "add one method beside 10^3 / {l} methods (all {l} added in {:.2} s)",
            all.as_secs_f64()
        ),
        [small, large],
        us_2,
        "<= 10x",
    ));

    let (s, l) = (scale(10_000), scale(20_000));
    let [(small, _), (large, again)] = at_two_sizes("old-world", [s, l], old_world);
    rows.push(Row::new(
        format!(
            "first old-world dispatch after {s} / {l} redefinitions (again: {:.2} us)",
            us(again)
        ),
        [small, large],
        us_0,
        "~2x (n log n)",
    ));

    let [(small, _), (large, again)] = at_two_sizes("old-world cycles", [s, l], old_world_cycles);
    rows.push(Row::new(
        format!(
            "first old-world dispatch after {s} / {l} delete/re-add cycles (again: {:.2} us)",
            us(again)
        ),
        [small, large],
        us_0,
        "~1x (log n; runs written alike)",
    ));

    let (s, l) = (scale(10_000), scale(40_000));
    let [small, large] = at_two_sizes("overlays", [s, l], overlays);
    rows.push(Row::new(
        format!("create one overlay beside {s} / {l} overlays"),
        [small.0, large.0],
        us_2,
        "~1x",
    ));
    rows.push(Row::new(
        format!("add f's method to one more overlay, f in {s} / {l} overlays"),
        [small.1, large.1],
        us_2,
        "<= 2x (log n)",
    ));

    let (s, l) = (scale(10_000), scale(30_000));
    let [small, large] = at_two_sizes("hierarchy", [s, l], hierarchy);
    rows.push(Row::new(
        format!("bytes per type, chain {s} / {l} deep"),
        [small.0, large.0],
        bytes,
        "~1x (linear memory)",
    ));
    rows.push(Row::new(
        format!("leaf <: root, chain {s} / {l} deep"),
        [small.1, large.1],
        ns_0,
        "O(log depth)",
    ));

    let (s, l) = (scale(10_000), scale(20_000));
    let [small, large] = at_two_sizes("union", [s, l], union);
    rows.push(Row::new(
        format!("build a union of {s} / {l} members"),
        [small.0, large.0],
        ms_1,
        "~2x (n log n)",
    ));
    rows.push(Row::new(
        format!("first dispatch on it, {s} / {l} members"),
        [small.1, large.1],
        us_0,
        "~2x",
    ));

    let (s, l) = (scale(1_000), scale(10_000));
    let times = at_two_sizes("chain", [s, l], chain);
    let per_level = stack_per_level();
    rows.push(Row::new(
        format!("cold compile of a call chain {s} / {l} deep ({per_level} B of stack per level)"),
        times,
        ms_1,
        "~10x, no overflow",
    ));

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
