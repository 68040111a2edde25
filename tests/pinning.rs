//! Pinning from the outside: guards that outlive their thread's bookkeeping, threads by the
//! thousand, several engines on one thread, and long-lived guards racing reclamation on many
//! threads. Each test ends by reclaiming and checking which worlds are still retained, which is
//! where a lost or stale announcement shows.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use compiler_caching::{Engine, Function, Guard, Ty};
use test_support::foreign::Ir;
use test_support::setups::types;

fn engine_with_g() -> (Engine, Function, Ty) {
    let engine = Engine::new();
    let t = types(&engine);
    let g = engine.declare_function("g").unwrap();
    engine
        .add_method(g, &[t.int.clone()], Ir::constant(0))
        .unwrap();
    (engine, g, t.int)
}

fn value_of(guard: &Guard<'_>, g: Function, int: &Ty) -> i64 {
    let mi = guard.dispatch(g, std::slice::from_ref(int)).unwrap();
    mi.method().source::<Ir>().unwrap().value
}

/// After the last guard is gone and the world moved on, reclamation reaches the current world.
fn assert_nothing_pinned(engine: &Engine, g: Function, int: &Ty) {
    engine
        .add_method(g, std::slice::from_ref(int), Ir::constant(-1))
        .unwrap();
    engine.reclaim();
    assert_eq!(engine.oldest_retained_world(), engine.current_world());
}

#[test]
fn threads_by_the_thousand_give_their_pins_back_when_they_exit() {
    let (engine, g, int) = engine_with_g();
    for batch in 0..125 {
        thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    let outer = engine.pin();
                    let inner = engine.pin();
                    assert_eq!(value_of(&outer, g, &int), value_of(&inner, g, &int));
                });
            }
        });
        engine
            .add_method(g, std::slice::from_ref(&int), Ir::constant(batch))
            .unwrap();
    }
    assert_nothing_pinned(&engine, g, &int);
}

#[test]
fn a_guard_leaked_by_an_exited_thread_keeps_its_world() {
    let (engine, g, int) = engine_with_g();
    let leaked = thread::scope(|s| {
        s.spawn(|| {
            let guard = engine.pin();
            let world = guard.world();
            std::mem::forget(guard);
            world
        })
        .join()
        .unwrap()
    });
    for i in 1..=100 {
        engine
            .add_method(g, std::slice::from_ref(&int), Ir::constant(i))
            .unwrap();
    }
    engine.reclaim();
    assert_eq!(engine.oldest_retained_world(), leaked);
    let old = engine.pin_world(leaked).unwrap();
    assert_eq!(value_of(&old, g, &int), 0);
}

thread_local! {
    /// A guard kept in a thread-local, dropped by the thread's destructors.
    static HELD: RefCell<Option<Guard<'static>>> = const { RefCell::new(None) };
}

/// Thread-local destructors run in the reverse order of first use, so touching `HELD` before the
/// first pin makes it drop its guard after the thread's own list of pins is gone (and touching it
/// after, before). Either way the pin is released.
#[test]
fn guards_dropped_by_thread_local_destructors_are_released() {
    let (engine, g, int) = engine_with_g();
    let engine: &'static Engine = Box::leak(Box::new(engine));
    for held_first in [true, false] {
        thread::spawn(move || {
            if held_first {
                HELD.with(|h| assert!(h.borrow().is_none()));
            }
            let guard = engine.pin();
            HELD.with(|h| *h.borrow_mut() = Some(guard));
        })
        .join()
        .unwrap();
        assert_nothing_pinned(engine, g, &int);
    }
}

#[test]
fn one_thread_pins_in_several_engines_and_outlives_some_of_them() {
    let (a, ga, int) = engine_with_g();
    let (b, gb, b_int) = engine_with_g();
    let held_b = b.pin();
    let held_b_world = held_b.world();
    {
        let held_a = a.pin();
        b.add_method(gb, std::slice::from_ref(&b_int), Ir::constant(1))
            .unwrap();
        assert_eq!(value_of(&held_a, ga, &int), 0);
        assert_eq!(value_of(&b.pin(), gb, &b_int), 1);
    }
    drop(a);
    // A new engine on the same thread after one was dropped.
    let (c, gc, c_int) = engine_with_g();
    let held_c = c.pin();
    b.reclaim();
    assert_eq!(b.oldest_retained_world(), held_b_world);
    assert_eq!(value_of(&held_b, gb, &b_int), 0);
    drop(held_b);
    assert_nothing_pinned(&b, gb, &b_int);
    drop(held_c);
    assert_nothing_pinned(&c, gc, &c_int);
}

/// Sixteen threads each hold a guard across hundreds of nested pins while one thread redefines
/// and another reclaims as fast as it can: every outer guard keeps answering as its world stood,
/// and nested guards never see an older definition than the outer one.
#[test]
fn long_lived_guards_answer_as_they_stood_while_reclamation_races() {
    let (engine, g, int) = engine_with_g();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let readers: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    let mut rounds = 0;
                    while !stop.load(Ordering::Relaxed) || rounds == 0 {
                        let outer = engine.pin();
                        let first = value_of(&outer, g, &int);
                        for _ in 0..200 {
                            let inner = engine.pin();
                            assert!(value_of(&inner, g, &int) >= first);
                            assert!(inner.world() >= outer.world());
                        }
                        assert_eq!(value_of(&outer, g, &int), first);
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                engine.reclaim();
            }
        });
        for i in 1..=2_000 {
            engine
                .add_method(g, std::slice::from_ref(&int), Ir::constant(i))
                .unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
    // With every guard gone, what the racing reclamations left is dropped now: each of the 2,000
    // replaced definitions, whichever reclamation dropped it.
    engine.reclaim();
    assert!(engine.stats().reclaimed >= 2_000, "{:?}", engine.stats());
    assert_nothing_pinned(&engine, g, &int);
}
