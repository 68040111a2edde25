//! Loom models of the protocols in `compiler_caching::raw` and the world counter: the shipped
//! code, compiled with `--cfg loom` so its atomics and locks are loom's.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`
//! (preemption bound: 3, see README.md).
#![cfg(loom)]

use compiler_caching::raw::edges::EdgeSet;
use compiler_caching::raw::job::{Job, WaitGraph, Waited};
use compiler_caching::raw::pins::{PinError, Pins};
use compiler_caching::raw::share::{Offered, Share};
use compiler_caching::raw::slot::{Begin, SlotCell};
use compiler_caching::raw::validity::Validity;
use compiler_caching::{World, WorldCounter};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

const OPEN: u64 = u64::MAX;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// A backedge set of `Arc<Validity>` dependents, as the models use it.
type Edges = EdgeSet<Arc<Validity>>;

/// Races a compilation that registers a new dependent (compiled in world 2) on `edges`, reading
/// `dependency`'s bound under the lock as the engine does, against `invalidate`, which lowers
/// `dependency` to world 5 and deals with the set. Returns the dependent once both are done.
fn race_registration(
    dependency: &Arc<Validity>,
    edges: &Arc<Edges>,
    invalidate: fn(&Validity, &Edges),
) -> Arc<Validity> {
    let dependent = Arc::new(Validity::new(2, 1));
    let publisher = {
        let (dependency, edges, dependent) = (dependency.clone(), edges.clone(), dependent.clone());
        thread::spawn(move || {
            let max = edges.register(dependent.clone(), || dependency.max(), |d| d.max() != OPEN);
            dependent.lower(max);
        })
    };
    let invalidator = {
        let (dependency, edges) = (dependency.clone(), edges.clone());
        thread::spawn(move || invalidate(&dependency, &edges))
    };
    publisher.join().unwrap();
    invalidator.join().unwrap();
    dependent
}

/// The insert-versus-invalidate race (docs/semantics.md §7): a compilation registers with a dependency while a mutation invalidates
/// it. Whatever the interleaving, the dependent ends closed at or before the invalidating world.
#[test]
fn edges_register_vs_invalidate() {
    model(|| {
        let dependency = Arc::new(Validity::new(1, 1));
        let edges = Arc::new(EdgeSet::new());
        let dependent = race_registration(&dependency, &edges, |dependency, edges| {
            dependency.lower(5);
            for d in edges.take(|d| d.compile_world() < 5) {
                d.lower(5);
            }
        });
        assert!(
            dependent.max() <= 5,
            "published valid past the invalidation: {}",
            dependent.max()
        );
        assert!(!dependent.contains(5));
    });
}

/// The same race with the invalidator lowering dependents in place, under the lock, as the walk
/// does through a code instance's node ([`EdgeSet::for_each`], which leaves the entries for a
/// walk at an older world), and a third dependent registered ahead of time so that the set is not
/// empty when the race starts.
#[test]
fn edges_register_vs_in_place_invalidation() {
    model(|| {
        let dependency = Arc::new(Validity::new(1, 1));
        let edges = Arc::new(EdgeSet::new());
        let earlier = Arc::new(Validity::new(1, 1));
        edges.register(earlier.clone(), || (), |_| false);
        let dependent = race_registration(&dependency, &edges, |dependency, edges| {
            dependency.lower(5);
            edges.for_each(|d| {
                if d.compile_world() < 5 {
                    d.lower(5);
                }
            });
        });
        for (name, v) in [("published", &dependent), ("registered earlier", &earlier)] {
            assert!(
                v.max() <= 5,
                "{name} valid past the invalidation: {}",
                v.max()
            );
        }
        // The walk takes nothing out: both entries stay, whichever came first.
        assert_eq!(edges.len(), 2, "the walk keeps the entries it visits");
    });
}

/// The race with a walk that skips a set nothing was registered on without locking it
/// ([`EdgeSet::may_have_entries`]): the invalidator lowers the dependency and then checks the
/// flag, while a compilation registers on the set for the first time. Whatever the interleaving,
/// either the walk sees the registration and lowers the dependent, or the registration reads the
/// lowered bound.
#[test]
fn edges_register_vs_skipped_set() {
    model(|| {
        let dependency = Arc::new(Validity::new(1, 1));
        let edges = Arc::new(EdgeSet::new());
        let dependent = race_registration(&dependency, &edges, |dependency, edges| {
            if dependency.lower(5) && edges.may_have_entries() {
                edges.for_each(|d| {
                    d.lower(5);
                });
            }
        });
        assert!(
            dependent.max() <= 5,
            "published valid past the invalidation: {}",
            dependent.max()
        );
    });
}

/// The same race with the flag checked *before* the dependency is lowered: loom must find the
/// interleaving where the walk skips the set and the registration reads the old bound, which
/// shows the model above has teeth.
#[test]
#[should_panic(expected = "published valid past the invalidation")]
fn edges_model_catches_a_skip_checked_before_lowering() {
    model(|| {
        let dependency = Arc::new(Validity::new(1, 1));
        let edges = Arc::new(EdgeSet::new());
        let dependent = race_registration(&dependency, &edges, |dependency, edges| {
            let may_have_entries = edges.may_have_entries();
            if dependency.lower(5) && may_have_entries {
                edges.for_each(|d| {
                    d.lower(5);
                });
            }
        });
        assert!(
            dependent.max() <= 5,
            "published valid past the invalidation: {}",
            dependent.max()
        );
    });
}

/// The same race with the bound read *before* registering (outside the lock): loom must find the
/// interleaving that publishes a stale dependent, which shows the model above has teeth.
#[test]
#[should_panic(expected = "published valid past the invalidation")]
fn edges_model_catches_a_read_outside_the_lock() {
    model(|| {
        let dependency = Arc::new(Validity::new(1, 1));
        let edges: Arc<EdgeSet<Arc<Validity>>> = Arc::new(EdgeSet::new());
        let dependent = Arc::new(Validity::new(2, 1));
        let publisher = {
            let (dependency, edges, dependent) =
                (dependency.clone(), edges.clone(), dependent.clone());
            thread::spawn(move || {
                let max = dependency.max();
                edges.register(dependent.clone(), || (), |d| d.max() != OPEN);
                dependent.lower(max);
            })
        };
        let invalidator = {
            let (dependency, edges) = (dependency.clone(), edges.clone());
            thread::spawn(move || {
                dependency.lower(5);
                for d in edges.take(|d| d.compile_world() < 5) {
                    d.lower(5);
                }
            })
        };
        publisher.join().unwrap();
        invalidator.join().unwrap();
        assert!(
            dependent.max() <= 5,
            "published valid past the invalidation: {}",
            dependent.max()
        );
    });
}

/// Concurrent lowering keeps the minimum, and exactly one lowerer of the final bound reports it.
#[test]
fn validity_lowering_is_monotonic() {
    model(|| {
        let v = Arc::new(Validity::new(1, 1));
        let a = {
            let v = v.clone();
            thread::spawn(move || v.lower(7))
        };
        let b = {
            let v = v.clone();
            thread::spawn(move || v.lower(4))
        };
        a.join().unwrap();
        let lowered_to_4 = b.join().unwrap();
        assert_eq!(v.max(), 4);
        assert!(
            lowered_to_4,
            "lowering to the smaller bound always succeeds"
        );
    });
}

/// A job's outcome, success or failure, reaches a waiter; nobody waits forever.
#[test]
fn job_outcome_reaches_every_waiter() {
    model(|| {
        let graph = Arc::new(WaitGraph::new());
        let job: Arc<Job<Result<u32, &'static str>>> = Arc::new(Job::new());
        let waiter = {
            let (graph, job) = (graph.clone(), job.clone());
            thread::spawn(move || job.wait(&graph))
        };
        job.complete(Err("phase failed"));
        assert_eq!(waiter.join().unwrap(), Waited::Done(Err("phase failed")));
        assert!(job.is_done());
    });
}

/// Per-key deduplication as the compile path does it: the first thread to find no job creates one
/// and runs the work; a thread that finds a job waits for it. The work runs exactly once and both
/// threads see its result.
#[test]
fn job_dedupes_concurrent_misses() {
    model(|| {
        let graph = Arc::new(WaitGraph::new());
        let slot: Arc<loom::sync::Mutex<(Option<u32>, Option<Arc<Job<u32>>>)>> =
            Arc::new(loom::sync::Mutex::new((None, None)));
        let runs = Arc::new(AtomicU64::new(0));
        let miss = {
            let (graph, slot, runs) = (graph.clone(), slot.clone(), runs.clone());
            move || -> u32 {
                loop {
                    let mut s = slot.lock().unwrap();
                    if let Some(v) = s.0 {
                        return v;
                    }
                    if let Some(job) = s.1.clone() {
                        drop(s);
                        match job.wait(&graph) {
                            Waited::Done(v) => return v,
                            Waited::Cycle => unreachable!("no thread waits on its own job here"),
                        }
                    }
                    let job = Arc::new(Job::new());
                    s.1 = Some(job.clone());
                    drop(s);
                    runs.fetch_add(1, Ordering::Relaxed);
                    let mut s = slot.lock().unwrap();
                    s.0 = Some(42);
                    s.1 = None;
                    drop(s);
                    job.complete(42);
                    return 42;
                }
            }
        };
        let other = thread::spawn(miss.clone());
        assert_eq!(miss(), 42);
        assert_eq!(other.join().unwrap(), 42);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    });
}

/// One compile slot as the engine keeps it: the published value, and the job running the work.
type CompileSlot = loom::sync::Mutex<(Option<u32>, Option<Arc<Job<u32>>>)>;

/// The compile path's miss protocol over `slots[key]`, as the engine runs it: a thread that finds
/// a job waits on it and looks again; the first to find none creates one, runs `work`, publishes
/// the value, removes the job from the slot and completes it. A thread told `Cycle` goes on
/// without the result, as a compiler does with `Callee::InProgress`: it counts the report in
/// `cycles` and uses 0.
fn compile(
    graph: &WaitGraph,
    slots: &[CompileSlot; 2],
    cycles: &AtomicU64,
    key: usize,
    work: &dyn Fn() -> u32,
) -> u32 {
    loop {
        let mut slot = slots[key].lock().unwrap();
        if let Some(v) = slot.0 {
            return v;
        }
        if let Some(job) = slot.1.clone() {
            drop(slot);
            match job.wait(graph) {
                Waited::Done(_) => continue,
                Waited::Cycle => {
                    cycles.fetch_add(1, Ordering::Relaxed);
                    return 0;
                }
            }
        }
        let job = Arc::new(Job::new());
        slot.1 = Some(job.clone());
        drop(slot);
        let value = work();
        let mut slot = slots[key].lock().unwrap();
        slot.0 = Some(value);
        slot.1 = None;
        drop(slot);
        job.complete(value);
        return value;
    }
}

/// `f` calls `g`; nothing is recursive. One thread compiles `f` (whose work compiles `g`), the
/// other compiles `g` and then `f`. Whatever the interleaving, with completion included, no
/// thread is told `Cycle`: a job that has completed (its former owner may by then wait on the
/// asking thread's job) is never part of a cycle.
#[test]
fn acyclic_compiles_are_never_told_cycle() {
    model(|| {
        let graph = Arc::new(WaitGraph::new());
        let slots: Arc<[CompileSlot; 2]> = Arc::new([
            loom::sync::Mutex::new((None, None)),
            loom::sync::Mutex::new((None, None)),
        ]);
        let cycles = Arc::new(AtomicU64::new(0));
        const F: usize = 0;
        const G: usize = 1;
        let compile_f = |graph: &WaitGraph, slots: &[CompileSlot; 2], cycles: &AtomicU64| {
            compile(graph, slots, cycles, F, &|| {
                compile(graph, slots, cycles, G, &|| 1) + 10
            })
        };
        let other = {
            let (graph, slots, cycles) = (graph.clone(), slots.clone(), cycles.clone());
            thread::spawn(move || compile_f(&graph, &slots, &cycles))
        };
        let g = compile(&graph, &slots, &cycles, G, &|| 1);
        let f = compile_f(&graph, &slots, &cycles);
        let f_other = other.join().unwrap();
        assert_eq!(
            cycles.load(Ordering::Relaxed),
            0,
            "an acyclic compile was told Cycle"
        );
        assert_eq!((g, f, f_other), (1, 11, 11));
    });
}

/// A cache's map reduced to one key: the slot currently published for it, if any.
type SlotMap = loom::sync::Mutex<Option<Arc<SlotCell<u32, u32>>>>;

/// The cache's slot lookup: the published slot, or a new one published now.
fn find_slot(map: &SlotMap) -> Arc<SlotCell<u32, u32>> {
    map.lock()
        .unwrap()
        .get_or_insert_with(|| Arc::new(SlotCell::new()))
        .clone()
}

/// Reclamation's removal of an idle slot: decided under the slot's lock, removing the slot from
/// the map only if it is still the one published.
fn retire(map: &SlotMap, backedges: &AtomicU64) -> bool {
    let Some(slot) = map.lock().unwrap().clone() else {
        return false;
    };
    slot.retire_if_idle(
        || backedges.load(Ordering::SeqCst) == 0,
        || {
            let mut published = map.lock().unwrap();
            if published.as_ref().is_some_and(|p| Arc::ptr_eq(p, &slot)) {
                *published = None;
            }
        },
    )
}

/// The compile path over the map: look up the slot, begin, and run the work if it is ours.
fn compile_in(map: &SlotMap, graph: &WaitGraph, runs: &AtomicU64) -> u32 {
    loop {
        let slot = find_slot(map);
        match slot.begin(|versions| versions.last(), |_| true, || 0) {
            Begin::Retired => continue,
            Begin::Ready(v) => return v,
            Begin::Wait(job) => match job.wait(graph) {
                Waited::Done(_) => continue,
                Waited::Cycle => unreachable!("nothing is recursive here"),
            },
            Begin::Run { .. } => {
                runs.fetch_add(1, Ordering::SeqCst);
                slot.lock().versions.push(42);
                slot.finish(42);
                return 42;
            }
        }
    }
}

/// Reclamation retires the (empty) slot while a thread compiles its key; afterwards another
/// compile of the key finds the first one's result. The work runs exactly once whatever the
/// interleaving: a job never starts in a slot reclamation has removed.
#[test]
fn compile_vs_retire() {
    model(|| {
        let map: Arc<SlotMap> = Arc::new(loom::sync::Mutex::new(Some(Arc::new(SlotCell::new()))));
        let graph = Arc::new(WaitGraph::new());
        let runs = Arc::new(AtomicU64::new(0));
        let backedges = Arc::new(AtomicU64::new(0));
        let reclaimer = {
            let (map, backedges) = (map.clone(), backedges.clone());
            thread::spawn(move || retire(&map, &backedges))
        };
        assert_eq!(compile_in(&map, &graph, &runs), 42);
        reclaimer.join().unwrap();
        assert_eq!(compile_in(&map, &graph, &runs), 42);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran twice");
    });
}

/// Two threads miss the same slot at once. The running job's `Job` is made only by the first
/// thread that waits on it, under the slot's lock, so it can race the owner finishing: whatever
/// the interleaving, the work runs once, both threads get its result, and no waiter is left
/// without an outcome (loom reports a deadlock if one is).
#[test]
fn slot_dedupes_misses_with_a_job_made_by_the_first_waiter() {
    model(|| {
        let map: Arc<SlotMap> = Arc::new(loom::sync::Mutex::new(Some(Arc::new(SlotCell::new()))));
        let graph = Arc::new(WaitGraph::new());
        let runs = Arc::new(AtomicU64::new(0));
        let other = {
            let (map, graph, runs) = (map.clone(), graph.clone(), runs.clone());
            thread::spawn(move || compile_in(&map, &graph, &runs))
        };
        assert_eq!(compile_in(&map, &graph, &runs), 42);
        assert_eq!(other.join().unwrap(), 42);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran twice");
    });
}

/// A compilation records a dependency on a slot (holding it), then registers its backedge and
/// releases the hold, while reclamation tries to retire the slot. Whatever the interleaving, the
/// slot the dependency registered on is the one published: invalidating what is compiled for the
/// key later reaches the dependent.
#[test]
fn hold_vs_retire() {
    model(|| {
        let map: Arc<SlotMap> = Arc::new(loom::sync::Mutex::new(Some(Arc::new(SlotCell::new()))));
        let backedges = Arc::new(AtomicU64::new(0));
        let reclaimer = {
            let (map, backedges) = (map.clone(), backedges.clone());
            thread::spawn(move || retire(&map, &backedges))
        };
        let held = loop {
            let slot = find_slot(&map);
            if slot.hold(|_| None).is_some() {
                break slot;
            }
        };
        backedges.fetch_add(1, Ordering::SeqCst);
        held.release();
        reclaimer.join().unwrap();
        let published = map.lock().unwrap().clone();
        assert!(
            published.is_some_and(|p| Arc::ptr_eq(&p, &held)),
            "the slot a dependency registered on was retired"
        );
    });
}

/// Two threads each own a job and then wait on the other's (mutual recursion across threads):
/// at least one is told `Cycle` instead of blocking, so both finish.
#[test]
fn cross_thread_cycle_is_detected_not_deadlocked() {
    model(|| {
        let graph = Arc::new(WaitGraph::new());
        let slots: Arc<loom::sync::Mutex<[Option<Arc<Job<u32>>>; 2]>> =
            Arc::new(loom::sync::Mutex::new([None, None]));
        let ready = Arc::new(AtomicU64::new(0));
        let side = |me: usize| {
            let (graph, slots, ready) = (graph.clone(), slots.clone(), ready.clone());
            move || -> bool {
                let mine = Arc::new(Job::new());
                slots.lock().unwrap()[me] = Some(mine.clone());
                ready.fetch_add(1, Ordering::SeqCst);
                while ready.load(Ordering::SeqCst) < 2 {
                    thread::yield_now();
                }
                let theirs = slots.lock().unwrap()[1 - me].clone().unwrap();
                let cycle = matches!(theirs.wait(&graph), Waited::Cycle);
                mine.complete(me as u32);
                cycle
            }
        };
        let t = thread::spawn(side(1));
        let cycle0 = side(0)();
        let cycle1 = t.join().unwrap();
        assert!(cycle0 || cycle1, "one side must detect the cycle");
    });
}

/// A mutation's effects are written before its world is published, so a reader that observes the
/// new world sees them (docs/semantics.md §1: all of a mutation or none of it).
#[test]
fn world_publication_is_atomic_to_readers() {
    model(|| {
        let counter = Arc::new(WorldCounter::new());
        let effect = Arc::new(AtomicU64::new(0));
        let writer = {
            let (counter, effect) = (counter.clone(), effect.clone());
            thread::spawn(move || {
                effect.store(1, Ordering::Relaxed);
                counter.publish(World::FIRST.next());
            })
        };
        let seen = counter.current();
        if seen == World::FIRST.next() {
            assert_eq!(
                effect.load(Ordering::Relaxed),
                1,
                "saw the world but not its effect"
            );
        }
        let later = counter.current();
        assert!(later >= seen, "world went backwards");
        writer.join().unwrap();
    });
}

/// A reader pinning the current world races a writer that advances the world and reclaims. The
/// horizon the reclaimer computes never passes a world that is pinned, and a world below the
/// floor can no longer be pinned (docs/semantics.md §8).
#[test]
fn pin_vs_reclaim() {
    model(|| {
        let pins = Arc::new(Pins::new());
        let world = Arc::new(AtomicU64::new(1));
        let reclaimer = {
            let (pins, world) = (pins.clone(), world.clone());
            thread::spawn(move || {
                world.store(2, Ordering::SeqCst);
                pins.horizon(|| world.load(Ordering::SeqCst))
            })
        };
        let (pinned, slot) = pins.pin_current(|| world.load(Ordering::Acquire));
        let horizon = reclaimer.join().unwrap();
        assert!(
            horizon <= pinned,
            "reclaimed past pinned world {pinned}: horizon {horizon}"
        );
        pins.unpin(pinned, slot, [0; 2]);
        let after = pins.horizon(|| world.load(Ordering::SeqCst));
        assert_eq!(after, 2);
        assert_eq!(
            pins.pin(1, || 2).unwrap_err(),
            PinError::Reclaimed { oldest: 2 }
        );
        assert_eq!(
            pins.pin(3, || 2).unwrap_err(),
            PinError::Future { current: 2 }
        );
    });
}

/// Pinning an *older* world races reclamation: either the pin lands first and holds the horizon
/// at or below it, or it is refused because the world fell below the floor.
#[test]
fn old_world_pin_vs_reclaim() {
    model(|| {
        let pins = Arc::new(Pins::new());
        let world = Arc::new(AtomicU64::new(2));
        let reclaimer = {
            let (pins, world) = (pins.clone(), world.clone());
            thread::spawn(move || pins.horizon(|| world.load(Ordering::SeqCst)))
        };
        let pinned = pins.pin(1, || world.load(Ordering::SeqCst));
        let horizon = reclaimer.join().unwrap();
        match pinned {
            Ok(slot) => {
                assert!(
                    horizon <= 1,
                    "reclaimed past pinned world 1: horizon {horizon}"
                );
                pins.unpin(1, slot, [0; 2]);
            }
            Err(e) => assert_eq!(e, PinError::Reclaimed { oldest: 2 }),
        }
    });
}

/// The pinning protocol with the light barrier left out (a copy of it, written here): a reader
/// announces the world it read with a plain store and checks the world again, while reclamation
/// scans after its heavy barrier. Without the reader's barrier the store can be missed by the scan
/// while the reader's second read still sees the old world: loom must find the interleaving that
/// reclaims past a pinned world, which shows `pin_vs_reclaim` has teeth.
#[test]
#[should_panic(expected = "reclaimed past a pinned world")]
fn pin_without_the_light_barrier_is_caught() {
    model(|| {
        let announced = Arc::new(AtomicU64::new(u64::MAX));
        let world = Arc::new(AtomicU64::new(1));
        let reclaimer = {
            let (announced, world) = (announced.clone(), world.clone());
            thread::spawn(move || {
                world.store(2, Ordering::Release);
                let current = world.load(Ordering::Acquire);
                loom::sync::atomic::fence(Ordering::SeqCst);
                current.min(announced.load(Ordering::Relaxed))
            })
        };
        let pinned = loop {
            let w = world.load(Ordering::Acquire);
            announced.store(w, Ordering::Relaxed);
            // (the light barrier belongs here)
            if world.load(Ordering::Acquire) == w {
                break w;
            }
        };
        let horizon = reclaimer.join().unwrap();
        assert!(horizon <= pinned, "reclaimed past a pinned world");
    });
}

/// Guards hand their hit tallies to their pin slot when they unpin: two threads counting at once,
/// then a third that may take over a slot one of them gave back when it exited, add exactly, with
/// no locked instruction (each slot has one writer at a time).
#[test]
fn pin_slot_counts_add_exactly_across_threads_and_slot_reuse() {
    model(|| {
        let pins = Arc::new(Pins::new());
        let counters: Vec<_> = [[1, 2], [10, 20]]
            .into_iter()
            .map(|counts| {
                let pins = pins.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        let (world, slot) = pins.pin_current(|| 1);
                        pins.unpin(world, slot, counts);
                    }
                })
            })
            .collect();
        for counter in counters {
            counter.join().unwrap();
        }
        let late = {
            let pins = pins.clone();
            thread::spawn(move || {
                let (world, slot) = pins.pin_current(|| 1);
                pins.unpin(world, slot, [100, 0]);
            })
        };
        late.join().unwrap();
        assert_eq!(pins.counted(), [122, 44]);
    });
}

/// Pins nest on a thread and are released in any order: the thread's announcement holds the oldest
/// world it pinned until its last pin goes, while reclamation runs on another thread.
#[test]
fn nested_pins_hold_the_oldest_world_until_the_last_goes() {
    model(|| {
        let pins = Arc::new(Pins::new());
        let world = Arc::new(AtomicU64::new(1));
        let (outer, first) = pins.pin_current(|| world.load(Ordering::Acquire));
        assert_eq!(outer, 1);
        world.store(2, Ordering::Release);
        let (inner, second) = pins.pin_current(|| world.load(Ordering::Acquire));
        assert_eq!(inner, 2);
        world.store(3, Ordering::Release);
        let reclaimer = {
            let (pins, world) = (pins.clone(), world.clone());
            thread::spawn(move || pins.horizon(|| world.load(Ordering::Acquire)))
        };
        pins.unpin(1, first, [0; 2]);
        let horizon = reclaimer.join().unwrap();
        assert!(horizon <= 2, "reclaimed past the inner pin: {horizon}");
        // Once the outer pin is gone, the announcement rises to exactly the inner one.
        assert_eq!(pins.horizon(|| world.load(Ordering::Acquire)), 2);
        pins.unpin(2, second, [0; 2]);
        assert_eq!(pins.horizon(|| world.load(Ordering::Acquire)), 3);
    });
}

/// A helper's share of a walk: whatever the interleaving, the owner finishes only once the helper
/// has left the result of the batch it took (or the owner took the batch back itself), and every
/// offered entry is worked on exactly once.
#[test]
fn share_owner_sees_every_result() {
    model(|| {
        let share: Arc<Share<u32, u32>> = Arc::new(Share::new());
        assert_eq!(share.offer(vec![1, 2], 1), Offered::StartHelper);
        let helper = {
            let share = share.clone();
            thread::spawn(move || {
                let mut worked = 0;
                let mut done = None;
                while let Some(batch) = share.take(done.take()) {
                    worked += batch.len() as u32;
                    done = Some(batch.iter().sum::<u32>());
                }
                worked
            })
        };
        // The owner works on, offering once more, then runs out.
        let offered_again = share.is_hungry();
        if offered_again {
            share.offer(vec![4], 1);
        }
        let mut owner_sum = 0;
        while let Some(batch) = share.owner_next() {
            owner_sum += batch.iter().sum::<u32>();
        }
        let helper_sum: u32 = share.take_results().iter().sum();
        let expected = if offered_again { 7 } else { 3 };
        assert_eq!(
            owner_sum + helper_sum,
            expected,
            "each entry once, every result seen"
        );
        helper.join().unwrap();
        assert!(
            share.take_results().is_empty(),
            "no result left after the owner finished"
        );
    });
}

/// A helper that starts after the owner took everything back finds nothing and leaves; the owner
/// never waits for it (loom reports a deadlock if it did).
#[test]
fn share_late_helper_finds_nothing() {
    model(|| {
        let share: Arc<Share<u32, u32>> = Arc::new(Share::new());
        assert_eq!(share.offer(vec![1], 1), Offered::StartHelper);
        let mut owner_sum = 0;
        while let Some(batch) = share.owner_next() {
            owner_sum += batch.iter().sum::<u32>();
        }
        assert_eq!(owner_sum, 1);
        let helper = {
            let share = share.clone();
            thread::spawn(move || share.take(None))
        };
        assert_eq!(helper.join().unwrap(), None);
    });
}
