//! Stress: 8 threads (more than this machine's cores) run a bounded mix of compiles in the current
//! and in older pinned worlds, redefinitions, deletions, dispatches and reclamations (any thread
//! may reclaim while the others compile), checking invariants as they go: every compiled value
//! equals what the methods of the world it was asked in give (so no stale result survives an
//! invalidation), every compile is accounted for, no callee of the acyclic call graph is ever
//! reported in progress, and a watchdog fails the test instead of hanging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;

use compiler_caching::{CompilerCache, Engine, Error, Function, Guard, Method, Ty};
use test_support::foreign::{Call, Foreign, Ir};

const THREADS: usize = 8;
const OPS_PER_THREAD: u64 = if cfg!(debug_assertions) {
    10_000
} else {
    50_000
};
const FUNCS: usize = 6;

/// The value `f(arg)` must compile to in the guard's world, recomputed through dispatch.
fn oracle(engine: &Engine, guard: &Guard<'_>, f: Function, arg: &Ty) -> Option<i64> {
    let mi = match guard.dispatch(f, std::slice::from_ref(arg)) {
        Ok(mi) => mi,
        Err(Error::NoMethod { .. }) => return None,
        Err(e) => panic!("unexpected dispatch error {e}"),
    };
    let ir = mi.method().source::<Ir>().unwrap();
    let mut total = ir.value;
    for call in &ir.calls {
        let callee = engine.function(&call.function).unwrap();
        total += oracle(engine, guard, callee, &call.args[0]).unwrap_or(0);
    }
    Some(total)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn eight_threads_of_mixed_operations_keep_every_invariant() {
    test_support::threads::watchdog(240, run);
}

fn run() {
    let engine = Engine::new();
    let l = engine.lattice();
    let real = l.declare_abstract("Real", &Ty::any()).unwrap();
    let int = l.declare_concrete("Int", &real).unwrap();
    let float = l.declare_concrete("Float", &real).unwrap();
    let sigs = [Ty::any(), real.clone(), int.clone(), float.clone()];
    let args = [int.clone(), float.clone()];
    let funcs: Vec<Function> = (0..FUNCS)
        .map(|i| engine.declare_function(&format!("s{i}")).unwrap())
        .collect();
    let methods: Mutex<Vec<Method>> = Mutex::new(Vec::new());
    // Calls go to higher-numbered functions only (no cycles), with a fixed argument type.
    let ir_for = |rng: &mut Rng, f: usize| {
        let mut calls = Vec::new();
        for c in f + 1..FUNCS {
            if rng.below(3) == 0 {
                let arg = args[rng.below(args.len())].clone();
                calls.push(Call {
                    function: format!("s{c}"),
                    args: vec![arg],
                });
            }
        }
        Ir {
            value: rng.below(1000) as i64,
            calls,
            opaque_deps: Vec::new(),
        }
    };
    let mut seed = Rng(0xC0FFEE);
    for (i, &f) in funcs.iter().enumerate() {
        let m = engine
            .add_method(f, &[Ty::any()], ir_for(&mut seed, i))
            .unwrap();
        methods.lock().unwrap().push(m);
    }
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(&engine, "stress", compiler).unwrap();
    let attempted = AtomicU64::new(0);
    let succeeded = AtomicU64::new(0);
    let checked_old = AtomicU64::new(0);

    thread::scope(|s| {
        for t in 0..THREADS {
            let (engine, cache, funcs, methods, sigs, args) =
                (&engine, &cache, &funcs, &methods, &sigs, &args);
            let (attempted, succeeded, checked_old) = (&attempted, &succeeded, &checked_old);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9 + t as u64 * 7919);
                let mut old: Option<Guard<'_>> = None;
                for _ in 0..OPS_PER_THREAD {
                    match rng.below(20) {
                        // Compile in the current world (most operations).
                        0..=10 => {
                            let guard = engine.pin();
                            let f = funcs[rng.below(FUNCS)];
                            let arg = &args[rng.below(args.len())];
                            let Some(want) = oracle(engine, &guard, f, arg) else {
                                continue;
                            };
                            let mi = guard.dispatch(f, std::slice::from_ref(arg)).unwrap();
                            attempted.fetch_add(1, Ordering::Relaxed);
                            let got = *cache.compile(&guard, mi, &0).unwrap();
                            assert_eq!(
                                got,
                                want,
                                "stale result for {mi} in world {}",
                                guard.world()
                            );
                            succeeded.fetch_add(1, Ordering::Relaxed);
                        }
                        // Compile in an older pinned world.
                        11..=12 => {
                            if let Some(guard) = &old {
                                let f = funcs[rng.below(FUNCS)];
                                let arg = &args[rng.below(args.len())];
                                if let Some(want) = oracle(engine, guard, f, arg) {
                                    let mi = guard.dispatch(f, std::slice::from_ref(arg)).unwrap();
                                    attempted.fetch_add(1, Ordering::Relaxed);
                                    let got = *cache.compile(guard, mi, &1).unwrap();
                                    assert_eq!(
                                        got,
                                        want,
                                        "wrong result in old world {}",
                                        guard.world()
                                    );
                                    succeeded.fetch_add(1, Ordering::Relaxed);
                                    checked_old.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if rng.below(4) == 0 {
                                old = Some(engine.pin());
                            }
                        }
                        // Redefine (add or replace) a method.
                        13..=16 => {
                            let i = rng.below(FUNCS);
                            let sig = sigs[rng.below(sigs.len())].clone();
                            let m = engine
                                .add_method(funcs[i], &[sig], ir_for(&mut rng, i))
                                .unwrap();
                            methods.lock().unwrap().push(m);
                        }
                        // Delete a method (it may already be gone: a typed error).
                        17 => {
                            let m = {
                                let ms = methods.lock().unwrap();
                                ms[rng.below(ms.len())].clone()
                            };
                            match engine.delete_method(&m) {
                                Ok(()) | Err(Error::MethodNotLive { .. }) => {}
                                Err(e) => panic!("unexpected {e}"),
                            }
                        }
                        18 => {
                            old = None;
                            engine.reclaim();
                        }
                        _ => {
                            let guard = engine.pin();
                            let _ = guard
                                .dispatch(funcs[rng.below(FUNCS)], &[args[rng.below(2)].clone()]);
                        }
                    }
                }
            });
        }
    });
    let (a, s) = (
        attempted.load(Ordering::Relaxed),
        succeeded.load(Ordering::Relaxed),
    );
    eprintln!(
        "stress: {} operations, {a} compiles ({} in older worlds), world {}, {:?}",
        THREADS as u64 * OPS_PER_THREAD,
        checked_old.load(Ordering::Relaxed),
        engine.current_world(),
        engine.stats()
    );
    assert_eq!(a, s, "every compile is accounted for");
    // Calls only go to higher-numbered functions: nothing is recursive, so no callee may ever be
    // reported in progress (a false report would also have shown up as a wrong value above).
    assert_eq!(
        log.in_progress.load(Ordering::Relaxed),
        0,
        "a false recursion report"
    );
    assert!(a > 5_000 && checked_old.load(Ordering::Relaxed) > 100);
    let methods_len = methods.lock().unwrap().len();
    assert!(methods_len > 1_000);
}
