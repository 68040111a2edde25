//! Reclamation racing the compile path (docs/semantics.md §6: each phase runs at most once per
//! code instance). Reclamation removes a slot once it holds nothing; a compilation that found the slot
//! just before must not be lost with it, or the next caller would make a second slot and run
//! `infer` again. The threads are ordered by staged signals: the test observes reclamation
//! emptying the slot, starts a compilation in it, lets reclamation finish, and only then sends a
//! second caller, which must wait for the first compilation instead of starting its own.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;

use compiler_caching::{Compiler, CompilerCache, Engine, InferCx, PhaseCx};
use test_support::setups::types;
use test_support::threads::{watchdog, Signal};

thread_local! {
    /// Set on the thread whose key comparisons the test watches.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// Set once the watched thread compared a key with one in the cache: it has found the slot.
static FOUND_SLOT: AtomicBool = AtomicBool::new(false);

/// An owner key whose comparisons on the watched thread are observable. The engine compares keys
/// only when a lookup finds an entry with the same hash, so a comparison means "found the slot".
#[derive(Clone, Debug, Eq)]
struct Key(u32);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        if WATCHED.with(Cell::get) {
            FOUND_SLOT.store(true, Ordering::SeqCst);
        }
        self.0 == other.0
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Counts infers per `(key, world)`; with `gated` set, an infer of key 0 raises `started` and
/// blocks until `open` is raised.
#[derive(Default)]
struct Gated {
    infers: Mutex<HashMap<(u32, u64), usize>>,
    gated: AtomicBool,
    started: Signal,
    open: Signal,
}

impl Compiler for Gated {
    type Key = Key;
    type Inferred = i64;
    type Artifact = i64;
    type Linked = i64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
        let key = cx.key().0;
        *self
            .infers
            .lock()
            .unwrap()
            .entry((key, cx.world().get()))
            .or_default() += 1;
        let g = cx.engine().function("g").map_err(|e| e.to_string())?;
        let callee = cx
            .dispatch(g, cx.instance().argtypes())
            .map_err(|e| e.to_string())?;
        if key == 0 && self.gated.load(Ordering::SeqCst) {
            self.started.raise();
            self.open.wait_for(1);
        }
        Ok(*callee.method().source::<i64>().ok_or("not a number")?)
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> {
        Ok(*v)
    }
}

/// Other keys compiled beside key 0, so that a reclamation pass over them outlasts the start of
/// a compilation (the slot of key 0 is emptied somewhere in the middle of the pass).
const FILLER: u32 = 20_000;

/// One staged round. Returns the number of infers of key 0 in the new world.
fn round() -> usize {
    let engine = Engine::new();
    let t = types(&engine);
    let int = t.int.clone();
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(f, &[int.clone()], 0_i64).unwrap();
    engine.add_method(g, &[int.clone()], 1_i64).unwrap();
    engine.set_auto_reclaim(false);
    let cache = CompilerCache::new(&engine, "C", Gated::default()).unwrap();
    let mi = engine
        .method_instance(
            f,
            &[int.clone()],
            engine.current_world(),
            engine.global_stack(),
        )
        .unwrap();
    {
        let guard = engine.pin();
        for key in 0..=FILLER {
            cache.compile(&guard, &mi, &Key(key)).unwrap();
        }
    }
    // Every compiled version of `f` is now invalid in the new world.
    engine.add_method(g, &[int.clone()], 2_i64).unwrap();
    let world = engine.current_world().get();
    let gated = cache.compiler();
    gated.gated.store(true, Ordering::SeqCst);
    let compile = |watched: bool| {
        WATCHED.with(|w| w.set(watched));
        let guard = engine.pin();
        *cache.compile(&guard, &mi, &Key(0)).unwrap()
    };
    thread::scope(|s| {
        let reclaimer = s.spawn(|| engine.reclaim());
        // Stage 1: reclamation has dropped key 0's invalid version and republished its slot empty.
        while !cache.versions(&mi, &Key(0)).is_empty() {
            thread::yield_now();
        }
        // Stage 2: a compilation of key 0 starts in that slot and blocks inside infer.
        let first = s.spawn(|| compile(false));
        gated.started.wait_for(1);
        // Stage 3: the reclamation pass is over.
        reclaimer.join().unwrap();
        // Stage 4: a second caller finds the slot and waits for the first compilation, or (the
        // bug) finds no slot, makes a new one and runs infer again.
        FOUND_SLOT.store(false, Ordering::SeqCst);
        let second = s.spawn(|| compile(true));
        while !FOUND_SLOT.load(Ordering::SeqCst) && gated.started.get() < 2 {
            thread::yield_now();
        }
        gated.open.raise();
        assert_eq!(first.join().unwrap(), 2);
        assert_eq!(second.join().unwrap(), 2);
    });
    let infers = gated.infers.lock().unwrap();
    infers.get(&(0, world)).copied().unwrap_or(0)
}

#[test]
fn a_compilation_that_found_a_slot_is_not_lost_when_reclamation_removes_it() {
    watchdog(300, || {
        for n in 0..3 {
            assert_eq!(round(), 1, "round {n}: key 0 inferred twice in one world");
        }
    });
}
