//! Retention (SEMANTICS §8): pinned worlds stay answerable; what no pinned or current world can
//! see is reclaimed, so memory stays bounded under a steady churn of redefinitions.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use common::{types, Call, Foreign, Ir};
use compiler_caching::{CompilerCache, Engine, Error};

fn caller(int: &compiler_caching::Ty) -> Ir {
    Ir {
        value: 1_000_000,
        calls: vec![Call {
            function: "g".into(),
            args: vec![int.clone()],
        }],
        opaque_deps: Vec::new(),
    }
}

#[test]
fn pinned_worlds_survive_reclamation_and_unpinned_ones_do_not() {
    let engine = Engine::new();
    let t = types(&engine);
    let g = engine.declare_function("g").unwrap();
    engine
        .add_method(g, &[t.int.clone()], Ir::constant(1))
        .unwrap();
    let old = engine.pin();
    let old_world = old.world();
    let unpinned_world = {
        engine
            .add_method(g, &[t.int.clone()], Ir::constant(2))
            .unwrap();
        engine.current_world()
    };
    engine
        .add_method(g, &[t.int.clone()], Ir::constant(3))
        .unwrap();
    engine.reclaim();
    // The pinned world still answers as it stood.
    let mi = old.dispatch(g, &[t.int.clone()]).unwrap();
    assert_eq!(mi.method().source::<Ir>().unwrap().value, 1);
    // A world after the oldest pin is still retained too (the horizon is the oldest pin).
    assert!(engine.pin_world(unpinned_world).is_ok());
    drop(old);
    let census = engine.reclaim();
    assert_eq!(census.methods, 1, "only the live method is left");
    assert_eq!(
        engine.pin_world(old_world).unwrap_err(),
        Error::WorldNotRetained {
            world: old_world,
            oldest: engine.current_world()
        }
    );
    assert_eq!(engine.oldest_retained_world(), engine.current_world());
    let now = engine.pin();
    let mi = now.dispatch(g, &[t.int.clone()]).unwrap();
    assert_eq!(mi.method().source::<Ir>().unwrap().value, 3);
}

#[test]
fn memory_stays_bounded_under_100k_redefinitions_with_readers() {
    let engine = Engine::new();
    let t = types(&engine);
    let int = t.int.clone();
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(f, &[int.clone()], caller(&int)).unwrap();
    engine
        .add_method(g, &[int.clone()], Ir::constant(0))
        .unwrap();
    let cache = CompilerCache::new(&engine, "C", Foreign::default());
    let stop = AtomicBool::new(false);
    let peak = AtomicUsize::new(0);
    const REDEFINITIONS: i64 = 100_000;
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let guard = engine.pin();
                    let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                    let v = *cache.compile(&guard, mi, &0).unwrap();
                    assert!((1_000_000..=1_000_000 + REDEFINITIONS).contains(&v));
                }
            });
        }
        s.spawn(|| {
            for i in 1..=REDEFINITIONS {
                engine
                    .add_method(g, &[int.clone()], Ir::constant(i))
                    .unwrap();
                if i % 1000 == 0 {
                    peak.fetch_max(engine.census().total(), Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("peak census: {peak} entries over {REDEFINITIONS} redefinitions");
    // Reclamation runs once garbage passes 1024 entries, so the peak stays a small multiple of
    // that however many redefinitions happen.
    assert!(
        peak < 20_000,
        "peak census {peak} entries after {REDEFINITIONS} redefinitions"
    );
    let after = engine.reclaim();
    assert!(after.total() < 64, "{after:?}");
    assert!(
        engine.stats().reclaimed > REDEFINITIONS as u64,
        "{:?}",
        engine.stats()
    );
}
