//! User code that panics inside engine operations (docs/semantics.md §1, §9). A mutation is atomic: if the lattice panics
//! while the engine works out what the mutation changes, the panic reaches the caller and the
//! mutation does not happen at all. A destructor that panics when the engine frees something on
//! its own (after a mutation took effect) is caught and counted, and the mutation stands.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use compiler_caching::{Compiler, CompilerCache, Engine, Error, InferCx, Lattice, PhaseCx};
use test_support::compilers::Linking;

/// `0` is the top type, every other number a concrete leaf under it. Specificity panics while
/// `armed` is set, and so does subtyping while `armed_subtype` is.
#[derive(Default)]
struct Fragile {
    armed: AtomicBool,
    armed_subtype: AtomicBool,
}

impl Lattice for Fragile {
    type Type = u32;
    fn is_subtype(&self, a: &u32, b: &u32) -> bool {
        if self.armed_subtype.load(Ordering::SeqCst) {
            panic!("lattice bug");
        }
        a == b || *b == 0
    }
    fn is_disjoint(&self, a: &u32, b: &u32) -> bool {
        a != b && *a != 0 && *b != 0
    }
    fn is_concrete(&self, a: &u32) -> bool {
        *a != 0
    }
    fn is_more_specific(&self, s1: &[u32], s2: &[u32]) -> bool {
        if self.armed.load(Ordering::SeqCst) {
            panic!("lattice bug");
        }
        compiler_caching::sig_subtype(self, s1, s2) && !compiler_caching::sig_subtype(self, s2, s1)
    }
}

/// Compiles `g(x)` to the source of whatever `f(x)` dispatches to (0 if it is not found).
struct Caller;

impl Compiler<Fragile> for Caller {
    type Key = ();
    type Inferred = &'static str;
    type Artifact = &'static str;
    type Linked = &'static str;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self, Fragile>) -> Result<&'static str, String> {
        let f = cx.engine().function("f").map_err(|e| e.to_string())?;
        Ok(match cx.dispatch(f, cx.instance().argtypes()) {
            Ok(mi) => mi.method().source::<&'static str>().copied().unwrap_or("?"),
            Err(_) => "none",
        })
    }
    fn codegen(
        &self,
        _: &PhaseCx<'_, Self, Fragile>,
        v: &&'static str,
    ) -> Result<&'static str, String> {
        Ok(v)
    }
    fn link(
        &self,
        _: &PhaseCx<'_, Self, Fragile>,
        v: &&'static str,
    ) -> Result<&'static str, String> {
        Ok(v)
    }
}

#[test]
fn a_lattice_panic_inside_a_mutation_leaves_the_engine_as_it_was() {
    let engine = Engine::with_lattice(Fragile::default());
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    let h = engine.declare_function("h").unwrap();
    engine.add_method(f, &[0], "generic").unwrap();
    engine.add_method(f, &[5], "five").unwrap();
    engine.add_method(g, &[7], "g").unwrap();
    let cache = CompilerCache::new(&engine, "C", Caller).unwrap();
    let compile_g = || {
        let guard = engine.pin();
        let mi = guard.dispatch(g, &[7]).unwrap();
        *cache.compile(&guard, mi, &()).unwrap()
    };
    assert_eq!(compile_g(), "generic");
    let before = engine.current_world();
    let g_mi = engine.pin().dispatch(g, &[7]).unwrap().clone();
    let compiled = cache.lookup(&engine.pin(), &g_mi, &()).unwrap().unwrap();

    // Adding f(7) rechecks the cached answer f(7) -> f(0), and ranking the methods panics.
    engine.lattice().armed.store(true, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(|| engine.add_method(f, &[7], "seven")));
    engine.lattice().armed.store(false, Ordering::SeqCst);
    assert!(result.is_err(), "the lattice's panic reaches the caller");

    // Nothing happened: same world, same answers, the compiled caller still valid.
    assert_eq!(engine.current_world(), before);
    let source = |w| {
        engine
            .pin_world(w)
            .unwrap()
            .dispatch(f, &[7])
            .map(|mi| *mi.method().source::<&str>().unwrap())
    };
    assert_eq!(source(before), Ok("generic"));
    assert!(compiled.is_valid_in(before));

    // The next mutation does not bring the failed method to life in its world, neither in the
    // cached answer nor in one computed afresh (through a stack never asked before).
    let overlay = engine.new_overlay("o").unwrap();
    let fresh = engine.stack(&[overlay, engine.global_table()]).unwrap();
    engine.add_method(h, &[0], "h").unwrap();
    let after = engine.current_world();
    assert_eq!(source(after), Ok("generic"), "the failed definition leaked");
    assert_eq!(
        engine
            .pin()
            .dispatch_in(fresh, f, &[7])
            .map(|mi| *mi.method().source::<&str>().unwrap()),
        Ok("generic"),
        "the failed definition leaked into a fresh dispatch"
    );
    assert!(compiled.is_valid_in(after));
    assert_eq!(compile_g(), "generic");

    // And the cached answer is still registered for rechecks: defining f(7) for real changes it
    // and invalidates the caller compiled against it.
    engine.add_method(f, &[7], "seven").unwrap();
    assert_eq!(source(engine.current_world()), Ok("seven"));
    assert!(!compiled.is_valid_in(engine.current_world()));
    assert_eq!(compile_g(), "seven");

    // A deletion that panics (here while finding the cached answers it affects) is undone the
    // same way.
    let five = engine.pin().dispatch(f, &[5]).unwrap().method().clone();
    let w = engine.current_world();
    engine.lattice().armed_subtype.store(true, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(|| engine.delete_method(&five)));
    engine
        .lattice()
        .armed_subtype
        .store(false, Ordering::SeqCst);
    assert!(result.is_err());
    assert_eq!(engine.current_world(), w);
    assert!(five.is_live_in(w));
    assert_eq!(
        engine
            .pin()
            .dispatch(f, &[5])
            .map(|mi| *mi.method().source::<&str>().unwrap()),
        Ok("five")
    );
    engine.delete_method(&five).unwrap();
    assert!(matches!(
        engine
            .pin()
            .dispatch(f, &[5])
            .map(|mi| *mi.method().source::<&str>().unwrap()),
        Ok("generic")
    ));
    assert!(matches!(
        engine.delete_method(&five),
        Err(Error::MethodNotLive { .. })
    ));
}

/// Whether [`Explosive`] values panic when dropped.
static FUSE: AtomicBool = AtomicBool::new(true);

/// A linked value whose destructor panics while [`FUSE`] is set.
struct Explosive;

impl Drop for Explosive {
    fn drop(&mut self) {
        if FUSE.load(Ordering::SeqCst) && !std::thread::panicking() {
            panic!("destructor bug");
        }
    }
}

struct Bomb;

impl Compiler for Bomb {
    type Key = u32;
    type Inferred = ();
    type Artifact = ();
    type Linked = Explosive;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<(), String> {
        let f = cx.engine().function("f").map_err(|e| e.to_string())?;
        cx.dispatch(f, cx.instance().argtypes())
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<Explosive, String> {
        Ok(Explosive)
    }
}

#[test]
fn a_destructor_panic_during_automatic_reclamation_does_not_hide_the_mutation() {
    use compiler_caching::Ty;
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(f, &[int.clone()], 0).unwrap();
    engine.add_method(g, &[int.clone()], 0).unwrap();
    let cache = CompilerCache::new(&engine, "C", Bomb).unwrap();
    let mut defined = Vec::new();
    // Each round compiles g for many keys and redefines f, invalidating them all: garbage grows
    // until a mutation reclaims automatically and frees the explosive linked values.
    for round in 0..8 {
        {
            let guard = engine.pin();
            let mi = guard.dispatch(g, &[int.clone()]).unwrap();
            for key in 0..400 {
                cache.compile(&guard, mi, &key).unwrap();
            }
        }
        let m = engine
            .add_method(f, &[int.clone()], round)
            .expect("the definition succeeds and says so");
        assert_eq!(engine.current_world(), m.defined());
        defined.push(m);
    }
    assert!(engine.stats().user_code_panics >= 1, "{:?}", engine.stats());
    // Every definition took effect.
    let newest = engine.pin().dispatch(f, &[int]).unwrap().method().clone();
    assert_eq!(&newest, defined.last().unwrap());
    // What is left is dropped with the cache, by the test's own thread: defuse it first.
    FUSE.store(false, Ordering::SeqCst);
}

/// A type whose `Display` panics while [`DISPLAY_ARMED`] is set, in a flat lattice (`Shown(0)` is
/// the top type).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Shown(u32);

static DISPLAY_ARMED: AtomicBool = AtomicBool::new(false);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if DISPLAY_ARMED.load(Ordering::SeqCst) {
            panic!("Display bug");
        }
        write!(f, "T{}", self.0)
    }
}

struct FlatShown;

impl Lattice for FlatShown {
    type Type = Shown;
    fn is_subtype(&self, a: &Shown, b: &Shown) -> bool {
        a == b || b.0 == 0
    }
    fn is_disjoint(&self, a: &Shown, b: &Shown) -> bool {
        a != b && a.0 != 0 && b.0 != 0
    }
    fn is_concrete(&self, a: &Shown) -> bool {
        a.0 != 0
    }
}

/// An `infer` that fails, so the engine describes the instance in the error it returns.
struct Failing;

impl Compiler<FlatShown> for Failing {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = ();
    type Error = String;
    fn infer(&self, _: &mut InferCx<'_, Self, FlatShown>) -> Result<(), String> {
        Err("type error in the user's program".into())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self, FlatShown>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &PhaseCx<'_, Self, FlatShown>, _: &()) -> Result<(), String> {
        Ok(())
    }
}

/// Describing the failing instance runs the types' `Display`; it panics, on the failing path and
/// again while the job is completed for its waiters. The failure is still returned as a value
/// (before, the second panic happened during unwinding and aborted the process).
#[test]
fn a_failing_phase_is_reported_even_when_describing_its_instance_panics() {
    use compiler_caching::{CompileError, Phase};
    let engine = Engine::with_lattice(FlatShown);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[Shown(0)], ()).unwrap();
    let cache = CompilerCache::new(&engine, "C", Failing).unwrap();
    let guard = engine.pin();
    let mi = guard.dispatch(f, &[Shown(1)]).unwrap().clone();
    DISPLAY_ARMED.store(true, Ordering::SeqCst);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        cache.compile(&guard, &mi, &()).map(|_| ())
    }));
    DISPLAY_ARMED.store(false, Ordering::SeqCst);
    match outcome {
        Ok(Err(CompileError::Phase { phase, error, .. })) => {
            assert_eq!(phase, Phase::Infer);
            assert_eq!(*error, "type error in the user's program");
        }
        other => panic!(
            "expected the phase failure, got {:?}",
            other.map(|r| r.err())
        ),
    }
    // And the failure is not cached as something else: a second try fails the same way.
    assert!(matches!(
        cache.compile(&guard, &mi, &()),
        Err(CompileError::Phase { .. })
    ));
}

/// Live [`Counted`] values, and whether their destructors panic.
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static DROP_ARMED: AtomicBool = AtomicBool::new(false);

/// A linked value that counts how many exist and, while armed, panics in every destructor.
struct Counted;

impl Counted {
    fn new() -> Counted {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        if DROP_ARMED.load(Ordering::SeqCst) && !std::thread::panicking() {
            panic!("destructor bug");
        }
    }
}

struct Counting;

impl Compiler for Counting {
    type Key = u32;
    type Inferred = Counted;
    type Artifact = Counted;
    type Linked = Counted;
    type Error = String;
    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<Counted, String> {
        let f = cx.engine().function("f").map_err(|e| e.to_string())?;
        cx.dispatch(f, cx.instance().argtypes())
            .map_err(|e| e.to_string())?;
        Ok(Counted::new())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, _: &Counted) -> Result<Counted, String> {
        Ok(Counted::new())
    }
    fn link(&self, _: &PhaseCx<'_, Self>, _: &Counted) -> Result<Counted, String> {
        Ok(Counted::new())
    }
}

/// Every phase result's destructor panics. Reclamation frees them on whichever thread leaves its
/// reclamation guard last — here a reader that merely held a guard while another thread's
/// mutation reclaimed: the panics are caught and counted there, never surface from the reader's
/// `drop`, and do not stop the rest from being freed (every value is gone once the engine is).
#[test]
fn destructor_panics_of_phase_results_never_escape_and_never_leak() {
    use compiler_caching::Ty;
    use test_support::threads::Signal;
    let engine = Engine::new();
    engine.set_auto_reclaim(false);
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(f, &[int.clone()], 0).unwrap();
    engine.add_method(g, &[int.clone()], 0).unwrap();
    let cache = CompilerCache::new(&engine, "C", Counting).unwrap();
    {
        let guard = engine.pin();
        let mi = guard.dispatch(g, &[int.clone()]).unwrap();
        for key in 0..2_000 {
            cache.compile(&guard, mi, &key).unwrap();
        }
    }
    assert_eq!(LIVE.load(Ordering::SeqCst), 6_000);
    // Invalidates all 2,000 instances.
    engine.add_method(f, &[int.clone()], 1).unwrap();
    let (pinned, reclaimed) = (Signal::default(), Signal::default());
    DROP_ARMED.store(true, Ordering::SeqCst);
    let escaped = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let guard = engine.pin();
            pinned.raise();
            reclaimed.wait_for(1);
            catch_unwind(AssertUnwindSafe(|| drop(guard))).is_err()
        });
        pinned.wait_for(1);
        engine.set_auto_reclaim(true);
        let h = engine.declare_function("h").unwrap();
        let before = engine.stats().reclaimed;
        engine.add_method(h, &[int.clone()], 0).unwrap();
        assert!(
            engine.stats().reclaimed > before,
            "automatic reclamation ran"
        );
        reclaimed.raise();
        reader.join().unwrap()
    });
    assert!(
        !escaped,
        "a destructor panic surfaced from a reader's drop(guard)"
    );
    drop(cache);
    let panics = engine.stats().user_code_panics;
    drop(engine);
    DROP_ARMED.store(false, Ordering::SeqCst);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0, "phase results leaked");
    assert!(panics >= 1, "the panics were counted");
}

/// An owner key whose `Hash` panics once, armed by `infer`: the next hash is the one that
/// publishes the new code instance.
#[derive(Clone, PartialEq, Eq, Debug)]
struct TouchyKey(u32);

static HASH_ARMED: AtomicBool = AtomicBool::new(false);
/// Whether the next `infer` arms the key's `Hash`.
static ARM_NEXT: AtomicBool = AtomicBool::new(false);

impl std::hash::Hash for TouchyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if HASH_ARMED.swap(false, Ordering::SeqCst) {
            panic!("Hash bug (once)");
        }
        self.0.hash(state)
    }
}

/// An engine with `f(::Int)` defined: the setup of the owner-key tests below.
fn engine_with_f_of_int() -> (Engine, compiler_caching::Function, compiler_caching::Ty) {
    use compiler_caching::Ty;
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[int.clone()], ()).unwrap();
    (engine, f, int)
}

/// The `infer` hook of the next test's compiler: arms the key's `Hash` if [`ARM_NEXT`] asks
/// for it.
fn arm_the_key_if_asked() {
    if ARM_NEXT.swap(false, Ordering::SeqCst) {
        HASH_ARMED.store(true, Ordering::SeqCst);
    }
}

/// The key's `Hash` panics in the compile that follows `infer` (the map never hashes a key
/// itself: the lookup after publication does): the compile fails with a `Panicked` error, the
/// instance stays published exactly once, and later compiles hit it without running `infer`.
#[test]
fn a_key_hash_panic_during_a_compile_fails_that_compile_only() {
    use compiler_caching::CompileError;
    let (engine, f, int) = engine_with_f_of_int();
    let compiler = Linking::<TouchyKey>::to(42).on_infer(arm_the_key_if_asked);
    let cache = CompilerCache::new(&engine, "C", compiler).unwrap();
    let guard = engine.pin();
    let mi = guard.dispatch(f, &[int.clone()]).unwrap();
    ARM_NEXT.store(true, Ordering::SeqCst);
    let first = catch_unwind(AssertUnwindSafe(|| {
        cache.compile(&guard, mi, &TouchyKey(1)).copied()
    }));
    assert!(
        matches!(first, Ok(Err(CompileError::Panicked { .. }))),
        "{:?}",
        first.map(|r| r.map_err(|e| e.to_string()))
    );
    assert!(!HASH_ARMED.load(Ordering::SeqCst), "the armed hash ran");
    let misses = engine.stats().code_misses;
    for _ in 0..3 {
        assert_eq!(
            cache.compile(&guard, mi, &TouchyKey(1)).copied().ok(),
            Some(42)
        );
    }
    assert_eq!(engine.stats().code_misses, misses, "later compiles hit");
    assert_eq!(cache.versions(mi, &TouchyKey(1)).len(), 1);
}

thread_local! {
    /// Hashes of [`CountdownKey`] left on this thread before one panics (negative: never).
    static HASHES_LEFT: std::cell::Cell<i64> = const { std::cell::Cell::new(-1) };
}

/// An owner key whose `Hash` panics at the n-th call on this thread, as armed.
#[derive(Clone, PartialEq, Eq, Debug)]
struct CountdownKey(u32);

impl std::hash::Hash for CountdownKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        HASHES_LEFT.with(|left| match left.get() {
            0 => {
                left.set(-1);
                panic!("Hash bug (countdown)");
            }
            n if n > 0 => left.set(n - 1),
            _ => {}
        });
        self.0.hash(state)
    }
}

/// A key's `Hash` panicking at any point of a compile, hundreds of times while the cache's map
/// grows, never wedges the map: every compile succeeds, fails with a typed error, or (a panic in
/// the first probe, which carries no unwinding guard) lets the panic through; the next compile of
/// the same key succeeds, and reclamation (which walks the map) always returns.
/// Before, a panic inside the map's cooperative resize left it unfinished and the next
/// `reclaim` waited on it forever.
#[test]
fn key_hash_panics_while_the_cache_grows_never_wedge_it() {
    test_support::threads::watchdog(120, || {
        let (engine, f, int) = engine_with_f_of_int();
        let cache = CompilerCache::new(&engine, "C", Linking::<CountdownKey>::to(7)).unwrap();
        let mi = engine.pin().dispatch(f, &[int.clone()]).unwrap().clone();
        let mut failed = 0;
        for key in 0..600u32 {
            let guard = engine.pin();
            HASHES_LEFT.with(|left| left.set(i64::from(key % 8)));
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                cache.compile(&guard, &mi, &CountdownKey(key)).copied()
            }));
            HASHES_LEFT.with(|left| left.set(-1));
            match outcome {
                Ok(Ok(7)) => {}
                Ok(Err(compiler_caching::CompileError::Panicked { .. })) | Err(_) => failed += 1,
                other => panic!(
                    "key {key}: {:?}",
                    other.map(|r| r.map_err(|e| e.to_string()))
                ),
            }
            assert_eq!(
                cache.compile(&guard, &mi, &CountdownKey(key)).copied().ok(),
                Some(7)
            );
            drop(guard);
            engine.reclaim();
        }
        assert!(failed > 0, "no injected panic reached a compile");
    });
}

thread_local! {
    /// Whether [`EqKey`]'s `Eq` panics, on this thread.
    static EQ_ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An owner key whose `Eq` panics while armed on the current thread. (Equal keys hash alike.)
#[derive(Clone, Debug)]
struct EqKey(u32);

impl std::hash::Hash for EqKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl PartialEq for EqKey {
    fn eq(&self, other: &Self) -> bool {
        if EQ_ARMED.with(|armed| armed.replace(false)) {
            panic!("Eq bug (once)");
        }
        self.0 == other.0
    }
}
impl Eq for EqKey {}

/// The key's `Eq` panics while a cached instance is looked up (the hit path, which carries no
/// unwinding guard): the panic reaches the caller, the cache is intact, and the next call hits.
#[test]
fn a_key_eq_panic_on_the_hit_path_leaves_the_cache_intact() {
    let (engine, f, int) = engine_with_f_of_int();
    let cache = CompilerCache::new(&engine, "C", Linking::<EqKey>::to(9)).unwrap();
    let guard = engine.pin();
    let mi = guard.dispatch(f, &[int.clone()]).unwrap();
    assert_eq!(cache.compile(&guard, mi, &EqKey(1)).copied().ok(), Some(9));
    EQ_ARMED.with(|armed| armed.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        cache.compile(&guard, mi, &EqKey(1)).copied()
    }));
    assert!(
        !EQ_ARMED.with(|armed| armed.get()),
        "the armed Eq did not run"
    );
    assert!(outcome.is_err(), "the panic reached the caller");
    let misses = engine.stats().code_misses;
    for _ in 0..3 {
        assert_eq!(cache.compile(&guard, mi, &EqKey(1)).copied().ok(), Some(9));
    }
    assert_eq!(engine.stats().code_misses, misses, "later calls hit");
    assert_eq!(cache.versions(mi, &EqKey(1)).len(), 1);
    drop(guard);
    engine.reclaim();
}

/// Which trait method of [`Touchy`] panics, on the current thread, while set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Hash,
    Eq,
    /// Fires once, then disarms itself.
    Drop,
}

thread_local! {
    static FAULT: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
    /// While non-zero, counts calls of [`Touchy`]'s `Hash` and `Eq` down; the call that brings it
    /// to zero panics.
    static COUNTDOWN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Panics if this call ends the [`COUNTDOWN`].
fn count_down() {
    let left = COUNTDOWN.with(|c| c.get());
    if left > 0 {
        COUNTDOWN.with(|c| c.set(left - 1));
        if left == 1 {
            panic!("countdown");
        }
    }
}

fn armed(fault: Fault) -> bool {
    FAULT.with(|f| f.get()) == Some(fault)
}

/// A custom type whose `Hash`, `Eq` and destructor panic on command. Equal values hash alike,
/// so the impls are legal; the lattice below compares the numbers directly, so only the engine's
/// own maps (and the values it drops) call these.
#[derive(Clone, Debug)]
struct Touchy(u32);

impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if armed(Fault::Hash) {
            panic!("Hash bug");
        }
        count_down();
        self.0.hash(state);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if armed(Fault::Eq) {
            panic!("Eq bug");
        }
        count_down();
        self.0 == other.0
    }
}
impl Eq for Touchy {}

impl Drop for Touchy {
    fn drop(&mut self) {
        if armed(Fault::Drop) && !std::thread::panicking() {
            FAULT.with(|f| f.set(None));
            panic!("Drop bug");
        }
    }
}

impl std::fmt::Display for Touchy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// `T0` is the top type, every other number a concrete leaf under it.
struct Flat;

impl Lattice for Flat {
    type Type = Touchy;
    fn is_subtype(&self, a: &Touchy, b: &Touchy) -> bool {
        a.0 == b.0 || b.0 == 0
    }
    fn is_disjoint(&self, a: &Touchy, b: &Touchy) -> bool {
        a.0 != b.0 && a.0 != 0 && b.0 != 0
    }
    fn is_concrete(&self, a: &Touchy) -> bool {
        a.0 != 0
    }
}

/// What `f(T<n>)` dispatches to in `world` through `stack`.
fn answer(
    engine: &Engine<Flat>,
    world: compiler_caching::World,
    stack: compiler_caching::TableStack,
    n: u32,
) -> &'static str {
    let f = engine.function("f").unwrap();
    let guard = engine.pin_world(world).unwrap();
    let args = [Touchy(n)];
    let source = *guard
        .dispatch_in(stack, f, &args)
        .unwrap()
        .method()
        .source::<&'static str>()
        .unwrap();
    source
}

/// Runs `mutate` with `fault` armed and checks that it happened entirely or not at all: either it
/// returned and the world advanced by one with `f(T1)` answered `after` (cached or not), or it
/// panicked and the world, the cached answers and fresh ones are as they were (`before`), also
/// once the next, unrelated mutation has published a world.
fn all_or_nothing(
    engine: &Engine<Flat>,
    fault: Fault,
    mutate: impl FnOnce(),
    before: &'static str,
    after: &'static str,
) {
    let global = engine.global_stack();
    let overlay = engine
        .new_overlay(&format!("o{}", engine.current_world().get()))
        .unwrap();
    let cached = engine.stack(&[overlay, engine.global_table()]).unwrap();
    let fresh = || {
        let fresh = engine
            .new_overlay(&format!("fresh{}", engine.current_world().get()))
            .unwrap();
        engine.stack(&[fresh, engine.global_table()]).unwrap()
    };
    let start = engine.current_world();
    for n in 1..=3 {
        answer(engine, start, global, n);
        answer(engine, start, cached, n);
    }
    assert_eq!(answer(engine, start, global, 1), before);

    FAULT.with(|f| f.set(Some(fault)));
    let result = catch_unwind(AssertUnwindSafe(mutate));
    FAULT.with(|f| f.set(None));

    let now = engine.current_world();
    let expected = match result {
        Ok(()) => {
            assert_eq!(
                now.get(),
                start.get() + 1,
                "{fault:?}: one world per mutation"
            );
            after
        }
        Err(_) => {
            assert_eq!(
                now, start,
                "{fault:?}: a failed mutation advanced the world"
            );
            before
        }
    };
    for stack in [global, cached, fresh()] {
        assert_eq!(answer(engine, now, stack, 1), expected, "{fault:?}");
        assert_eq!(answer(engine, now, stack, 2), "generic", "{fault:?}");
    }
    assert_eq!(answer(engine, start, global, 1), before, "{fault:?}");

    // The next mutation gets a world of its own and changes nothing else.
    let h = engine.function("h").unwrap();
    let m = engine.add_method(h, &[Touchy(0)], "h").unwrap();
    assert_eq!(
        m.defined().get(),
        now.get() + 1,
        "{fault:?}: a world was reused"
    );
    let next = engine.current_world();
    for stack in [global, cached, fresh()] {
        assert_eq!(answer(engine, next, stack, 1), expected, "{fault:?}");
    }
}

#[test]
fn a_panicking_hash_eq_or_drop_of_argument_types_never_half_applies_a_mutation() {
    for fault in [Fault::Hash, Fault::Eq, Fault::Drop] {
        let engine = Engine::with_lattice(Flat);
        let f = engine.declare_function("f").unwrap();
        engine.declare_function("h").unwrap();
        engine.add_method(f, &[Touchy(0)], "generic").unwrap();

        // A definition that changes the cached answer f(T1).
        let sig = [Touchy(1)];
        let special = std::cell::RefCell::new(None);
        all_or_nothing(
            &engine,
            fault,
            || *special.borrow_mut() = Some(engine.add_method(f, &sig, "special").unwrap()),
            "generic",
            "special",
        );
        let special = special
            .into_inner()
            .unwrap_or_else(|| engine.add_method(f, &sig, "special").unwrap());
        assert_eq!(
            answer(&engine, engine.current_world(), engine.global_stack(), 1),
            "special"
        );

        // A deletion that changes it back.
        all_or_nothing(
            &engine,
            fault,
            || engine.delete_method(&special).unwrap(),
            "special",
            "generic",
        );
    }
}

/// A function's registry of current answers (what a mutation rechecks) keeps its first few in a
/// list and moves them into a hash table when it outgrows it. Whichever call of the argument
/// types' `Hash` or `Eq` panics in the dispatch that grows it, no registered answer is lost: once
/// the method they all resolve to is replaced, none of them is answered from the cache.
#[test]
fn argument_types_panicking_while_a_registry_grows_lose_no_registered_answer() {
    let mut panicked = 0;
    for at in 1..=64 {
        let engine = Engine::with_lattice(Flat);
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[Touchy(0)], "generic").unwrap();
        let world = engine.current_world();
        let global = engine.global_stack();
        for n in 1..=16 {
            if n > 8 {
                COUNTDOWN.with(|c| c.set(at));
            }
            let result = catch_unwind(AssertUnwindSafe(|| answer(&engine, world, global, n)));
            COUNTDOWN.with(|c| c.set(0));
            match result {
                Ok(source) => assert_eq!(source, "generic"),
                Err(_) => panicked += 1,
            }
        }
        engine.add_method(f, &[Touchy(0)], "replaced").unwrap();
        let now = engine.current_world();
        for n in 1..=16 {
            assert_eq!(
                answer(&engine, now, global, n),
                "replaced",
                "f(T{n}) after a panic at call {at} of Hash or Eq"
            );
        }
    }
    assert!(panicked > 0, "the countdown reached a Hash or an Eq");
}
