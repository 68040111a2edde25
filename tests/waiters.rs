//! Threads that wait on another thread's compilation of the same slot (docs/semantics.md §6):
//! callers of one instance, owner and world share one execution and its failure; a caller from
//! another world does not take a failure it would not have; user code that unwinds as a job
//! starts leaves no job behind for waiters to block on. Every test runs under a watchdog.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use compiler_caching::{
    Callee, CompileError, Compiler, CompilerCache, Engine, Function, InferCx, PhaseCx, Ty,
};
use test_support::compilers::Linking;
use test_support::threads::{watchdog, Signal};

/// Set while an owner key's `Clone` should panic.
static CLONE_PANICS: AtomicBool = AtomicBool::new(false);

/// An owner key whose `Clone` panics while [`CLONE_PANICS`] is set.
#[derive(Debug, PartialEq, Eq)]
struct TouchyKey(u32);

impl Clone for TouchyKey {
    fn clone(&self) -> Self {
        if CLONE_PANICS.load(Ordering::SeqCst) {
            panic!("TouchyKey::clone");
        }
        TouchyKey(self.0)
    }
}

impl Hash for TouchyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Set while an `infer` should panic (so that the slot exists with no version).
static INFER_PANICS: AtomicBool = AtomicBool::new(false);

fn panic_if_asked() {
    if INFER_PANICS.load(Ordering::SeqCst) {
        panic!("the first inference fails");
    }
}

/// A compilation starts by cloning the owner key into the new code instance. If that clone
/// panics, the caller gets an error and the slot must be as before: a later call on this thread
/// compiles (instead of being told it re-entered its own compilation), and a call on another
/// thread does not wait forever on a job nobody runs.
#[test]
fn a_key_clone_that_panics_as_a_job_starts_leaves_no_job_behind() {
    watchdog(120, || {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[int.clone()], ()).unwrap();
        let compiler = Linking::<TouchyKey>::to(7).on_infer(panic_if_asked);
        let cache = CompilerCache::new(&engine, "touchy", compiler).unwrap();
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[int.clone()]).unwrap();
        let key = TouchyKey(1);
        // The slot is made (cloning the key while clones work) and left with no version.
        INFER_PANICS.store(true, Ordering::SeqCst);
        let failed = cache.compile(&guard, mi, &key);
        INFER_PANICS.store(false, Ordering::SeqCst);
        assert!(matches!(failed, Err(CompileError::Panicked { .. })));
        CLONE_PANICS.store(true, Ordering::SeqCst);
        let panicked = cache.compile(&guard, mi, &key);
        CLONE_PANICS.store(false, Ordering::SeqCst);
        match panicked {
            Err(CompileError::Panicked { message, .. }) => {
                assert!(message.contains("TouchyKey::clone"), "{message}")
            }
            other => panic!("expected the clone's panic as an error, got {other:?}"),
        }
        assert_eq!(cache.compile(&guard, mi, &key).copied().ok(), Some(7));
        drop(guard);
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                let guard = engine.pin();
                let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                cache.compile(&guard, mi, &TouchyKey(1)).copied().ok()
            });
            assert_eq!(other.join().unwrap(), Some(7));
        });
        // `infer` ran twice: the panic, and the one compilation that followed the clone's panic.
        let stats = engine.stats();
        assert_eq!((stats.infer_runs, stats.phase_failures), (1, 1));
    });
}

/// The source of [`Gated`]: a leaf whose value is fine or broken in a world, or a call of one.
enum Source {
    Leaf(Result<u64, ()>),
    Calls(Function),
}

/// Compiles [`Source`]s; a caller's `infer` in `hold_world` stops at a gate until the test opens
/// it, after raising `entered`.
#[derive(Default)]
struct Gated {
    hold_world: AtomicU64,
    entered: Signal,
    gate: Signal,
}

impl Compiler for Gated {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        match cx.instance().method().source::<Source>() {
            Some(Source::Leaf(Ok(v))) => Ok(*v),
            Some(Source::Leaf(Err(()))) => Err("the leaf is broken in this world".into()),
            Some(Source::Calls(g)) => {
                if cx.world().get() == self.hold_world.load(Ordering::SeqCst) {
                    self.entered.raise();
                    self.gate.wait_for(1);
                }
                let mi = cx
                    .dispatch(*g, cx.instance().argtypes())
                    .map_err(|e| e.to_string())?;
                match cx.compile(&mi).map_err(|e| format!("callee: {e}"))? {
                    Callee::Ready(ci) => Ok(1 + ci.linked().copied().unwrap_or(0)),
                    Callee::InProgress => Err("unexpected cycle".into()),
                }
            }
            None => Err("not a Source".into()),
        }
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
}

/// `f` calls `g`; `g` is fine in world A and broken in world B. A thread compiling `f` in world B
/// is held inside `infer` while a thread pinned in world A asks for `f` and waits on that job (a
/// slot runs one job at a time, whatever its world). The job fails; the waiter must not receive
/// that failure, since `f` compiles in world A.
#[test]
fn a_waiter_from_another_world_does_not_take_the_jobs_failure() {
    watchdog(120, || {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        let f = engine.declare_function("f").unwrap();
        let g = engine.declare_function("g").unwrap();
        engine
            .add_method(g, &[int.clone()], Source::Leaf(Ok(41)))
            .unwrap();
        engine
            .add_method(f, &[int.clone()], Source::Calls(g))
            .unwrap();
        let cache = CompilerCache::new(&engine, "gated", Gated::default()).unwrap();
        let compiler = cache.compiler();
        let pinned = Signal::default();
        let go = Signal::default();
        let (engine, cache, int) = (&engine, &cache, &int);
        std::thread::scope(|s| {
            let in_a = s.spawn(|| {
                let guard = engine.pin();
                pinned.raise();
                go.wait_for(1);
                let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                cache
                    .compile(&guard, mi, &0)
                    .copied()
                    .map_err(|e| e.to_string())
            });
            // Stage 1: world A is pinned; world B breaks `g`.
            pinned.wait_for(1);
            engine
                .add_method(g, &[int.clone()], Source::Leaf(Err(())))
                .unwrap();
            let world_b = engine.current_world();
            compiler.hold_world.store(world_b.get(), Ordering::SeqCst);
            let waits = engine.stats().compile_waits;
            let in_b = s.spawn(|| {
                let guard = engine.pin();
                let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                cache.compile(&guard, mi, &0).copied()
            });
            // Stage 2: the world-B job runs; the world-A caller comes and waits on it.
            compiler.entered.wait_for(1);
            go.raise();
            while engine.stats().compile_waits == waits {
                std::thread::yield_now();
            }
            // Stage 3: the job goes on and fails.
            compiler.gate.raise();
            match in_b.join().unwrap() {
                Err(CompileError::Phase { .. }) => {}
                other => panic!("world B must fail to compile f, got {other:?}"),
            }
            assert_eq!(
                in_a.join().unwrap(),
                Ok(42),
                "the world-A caller took the failure of world B's compilation"
            );
        });
    });
}
