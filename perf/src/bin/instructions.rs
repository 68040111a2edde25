//! Instructions per hit, counted by callgrind rather than timed (counts are repeatable on a noisy
//! machine; times are not).
//!
//! Each measured loop is its own never-inlined function, so callgrind can collect inside it alone
//! (`--toggle-collect`); the loop's total divided by its iteration count is the cost of one
//! operation plus about four instructions of loop. `perf/callgrind.sh` runs every loop and prints
//! the table:
//!
//! ```text
//! bash perf/callgrind.sh            # builds the release binary, needs valgrind
//! ```
//!
//! Run directly, `instructions LOOP N` runs one loop N times (LOOP is one of `code_hit`,
//! `dispatch_hit`, `dispatch_signature`, `full_hit`, `one_call`, `one_call_floor`, `miss`,
//! `papaya_u64`, `papaya_key`, `std_key`; `miss` dispatches and compiles N fresh functions, one
//! miss each; `one_call` pins and unpins a world around each call).

use std::collections::HashMap;
use std::hint::black_box;

use compiler_caching::{CompilerCache, Engine, Function, Ty};
use rustc_hash::FxBuildHasher;

use test_support::compilers::Const;
use test_support::setups::HitSetup;

type DispatchKey = (u32, u32, Box<[Ty]>);

#[inline(never)]
fn measured_code_hit(
    cache: &CompilerCache<Const>,
    guard: &compiler_caching::Guard<'_>,
    mi: &compiler_caching::MethodInstance,
    n: u64,
) {
    for _ in 0..n {
        black_box(cache.compile(guard, black_box(mi), black_box(&0)).unwrap());
    }
}

#[inline(never)]
fn measured_dispatch_signature(
    guard: &compiler_caching::Guard<'_>,
    f: Function,
    signature: &compiler_caching::Signature,
    n: u64,
) {
    for _ in 0..n {
        black_box(guard.dispatch_signature(f, black_box(signature)).unwrap());
    }
}

#[inline(never)]
fn measured_dispatch_hit(guard: &compiler_caching::Guard<'_>, f: Function, args: &[Ty], n: u64) {
    for _ in 0..n {
        black_box(guard.dispatch(f, black_box(args)).unwrap());
    }
}

#[inline(never)]
fn measured_full_hit(
    cache: &CompilerCache<Const>,
    guard: &compiler_caching::Guard<'_>,
    f: Function,
    args: &[Ty],
    n: u64,
) {
    for _ in 0..n {
        let mi = guard.dispatch(f, black_box(args)).unwrap();
        black_box(cache.compile(guard, mi, &0).unwrap());
    }
}

#[inline(never)]
fn measured_miss(engine: &Engine, cache: &CompilerCache<Const>, funcs: &[Function], args: &[Ty]) {
    let guard = engine.pin();
    for &f in funcs {
        let mi = guard.dispatch(f, args).unwrap();
        black_box(cache.compile(&guard, mi, &0).unwrap());
    }
}

#[inline(never)]
fn measured_papaya_u64(map: &papaya::HashMap<u64, u64, FxBuildHasher>, key: u64, n: u64) {
    let guard = map.guard();
    for _ in 0..n {
        black_box(map.get(black_box(&key), &guard));
    }
}

#[inline(never)]
fn measured_papaya_key(
    map: &papaya::HashMap<DispatchKey, u64, FxBuildHasher>,
    key: &DispatchKey,
    n: u64,
) {
    let guard = map.guard();
    for _ in 0..n {
        black_box(map.get(black_box(key), &guard));
    }
}

#[inline(never)]
fn measured_one_call(
    engine: &Engine,
    cache: &CompilerCache<Const>,
    f: Function,
    signature: &compiler_caching::Signature,
    n: u64,
) {
    for _ in 0..n {
        let guard = engine.pin();
        let mi = guard.dispatch_signature(f, black_box(signature)).unwrap();
        black_box(*cache.compile(&guard, mi, &0).unwrap());
    }
}

#[inline(never)]
fn measured_one_call_floor(map: &papaya::HashMap<u64, u64, FxBuildHasher>, key: u64, n: u64) {
    for _ in 0..n {
        let guard = map.guard();
        black_box(map.get(black_box(&key), &guard));
        black_box(map.get(black_box(&key), &guard));
    }
}

#[inline(never)]
fn measured_std_key(map: &HashMap<DispatchKey, u64, FxBuildHasher>, key: &DispatchKey, n: u64) {
    for _ in 0..n {
        black_box(map.get(black_box(key)));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (which, n) = match (args.next(), args.next().and_then(|n| n.parse::<u64>().ok())) {
        (Some(w), Some(n)) => (w, n),
        _ => {
            eprintln!("usage: instructions LOOP N  (LOOP: code_hit dispatch_hit dispatch_signature full_hit one_call one_call_floor miss papaya_u64 papaya_key std_key)");
            std::process::exit(2);
        }
    };

    // The same setup as benches/hit_path.rs.
    let setup = HitSetup::new();
    let (engine, f, argtypes) = (&setup.engine, setup.f, setup.args.clone());
    let cache = setup.cache("instructions");
    if which == "one_call" {
        // Pins its own guards: no other guard of this thread may be alive, as in a JIT's call.
        let signature = engine.signature(&argtypes);
        {
            let guard = engine.pin();
            let mi = guard.dispatch_signature(f, &signature).unwrap();
            cache.compile(&guard, mi, &0).unwrap();
        }
        return measured_one_call(engine, &cache, f, &signature, n);
    }
    let guard = engine.pin();
    let mi = guard.dispatch(f, &argtypes).unwrap().clone();
    cache.compile(&guard, &mi, &0).unwrap();

    let std_map: HashMap<DispatchKey, u64, FxBuildHasher> = (0..64u32)
        .map(|i| ((i, 0, Box::from(argtypes.clone())), u64::from(i)))
        .collect();
    let papaya_key: papaya::HashMap<DispatchKey, u64, FxBuildHasher> =
        papaya::HashMap::with_hasher(FxBuildHasher);
    for i in 0..64u32 {
        papaya_key
            .pin()
            .insert((i, 0, Box::from(argtypes.clone())), u64::from(i));
    }
    let papaya_u64: papaya::HashMap<u64, u64, FxBuildHasher> =
        papaya::HashMap::with_hasher(FxBuildHasher);
    for i in 0..64u64 {
        papaya_u64.pin().insert(mi.id() + i, i);
    }
    let key: DispatchKey = (7, 0, Box::from(argtypes.clone()));

    let fresh: Vec<Function> = if which == "miss" {
        (0..n)
            .map(|i| {
                let g = engine.declare_function(&format!("fresh{i}")).unwrap();
                engine.add_method(g, &[Ty::any(), Ty::any()], ()).unwrap();
                g
            })
            .collect()
    } else {
        Vec::new()
    };

    match which.as_str() {
        "miss" => measured_miss(engine, &cache, &fresh, &argtypes),
        "code_hit" => measured_code_hit(&cache, &guard, &mi, n),
        "dispatch_hit" => measured_dispatch_hit(&guard, f, &argtypes, n),
        "dispatch_signature" => {
            // A function of its own, whose answer this path caches, as a JIT's call site would.
            let g = engine.declare_function("by_signature").unwrap();
            engine.add_method(g, &[Ty::any(), Ty::any()], ()).unwrap();
            let signature = engine.signature(&argtypes);
            let guard = engine.pin();
            guard.dispatch_signature(g, &signature).unwrap();
            measured_dispatch_signature(&guard, g, &signature, n)
        }
        "full_hit" => measured_full_hit(&cache, &guard, f, &argtypes, n),
        "papaya_u64" => measured_papaya_u64(&papaya_u64, mi.id(), n),
        "one_call_floor" => measured_one_call_floor(&papaya_u64, mi.id(), n),
        "papaya_key" => measured_papaya_key(&papaya_key, &key, n),
        "std_key" => measured_std_key(&std_map, &key, n),
        other => {
            eprintln!("unknown loop `{other}`");
            std::process::exit(2);
        }
    }
}
