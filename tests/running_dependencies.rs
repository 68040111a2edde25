//! Dependencies recorded on a compilation that is still running (docs/semantics.md §7).
//!
//! A compilation registers each dependency as soon as it records it, on its own code instance
//! before that is published. A mutation that changes what the running compilation read therefore
//! reaches, in its own walk and before its world is published, everything that already depends on
//! the running instance: a recursive caller that was told `InProgress`. Code that calls
//! `depend_on` for an instance another thread is compiling waits for it instead, since what the
//! running compilation will read later is not known until it publishes. And whatever registered
//! on a running compilation also depends on its method, even if that compilation fails.
//!
//! Each test pauses `y` inside `infer` (after it read `g`, unless told to read it late), lets the
//! other compilations run or wait, redefines `g`, and checks what is valid in the new world.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use compiler_caching::{
    CodeInstance, CompileError, Compiler, CompilerCache, Engine, InferCx, PhaseCx, Ty,
};
use test_support::threads::Signal;

/// `y` reads `g`, then (in the recursive setup) compiles `h`, which compiles `y` back; `d`
/// depends on `y` without compiling it; `c` compiles `h`, `caller` compiles `d`. `y` pauses once
/// it has read `g` (and compiled `h`) until the test lets it go.
#[derive(Default)]
struct Paused {
    y_paused: Signal,
    y_go: Signal,
    recursive: AtomicBool,
    /// Whether `y`'s `infer` fails once it is let go.
    fail: AtomicBool,
    /// Whether `y`'s `infer` panics once it is let go.
    panic: AtomicBool,
    /// Whether callers find `y` and `h` by dispatching outside the compilation (not recording
    /// the dispatch), so that only the dependency on the instance links them.
    unrecorded: AtomicBool,
    /// Whether `y` reads `g` only once it is let go, rather than before it pauses.
    read_g_late: AtomicBool,
    /// Whether `y` compiles `k`, which depends on `y` back with `depend_on`.
    y_calls_k: AtomicBool,
    /// Whether `y` reads `g` through `m` (compiling `m`, which dispatches `g`) rather than
    /// itself.
    g_through_m: AtomicBool,
    /// Whether `y` also reads `b` once it is let go.
    reads_b_late: AtomicBool,
}

/// The compiler: shares its signals with the test.
struct Stages(Arc<Paused>);

impl Compiler for Stages {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = ();
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<(), Self::Error> {
        let engine = cx.engine().clone();
        let name = *cx.instance().method().source::<&str>().unwrap();
        let args = cx.instance().argtypes().to_vec();
        let unrecorded = self.0.unrecorded.load(Ordering::SeqCst);
        let find = |cx: &mut InferCx<'_, Self>, f: &str| {
            let f = engine.function(f).unwrap();
            if unrecorded {
                let guard = engine.pin_world(cx.world()).map_err(|e| e.to_string())?;
                let mi = guard.dispatch(f, &args).map_err(|e| e.to_string())?.clone();
                Ok::<_, String>(mi)
            } else {
                cx.dispatch(f, &args).map_err(|e| e.to_string())
            }
        };
        let call = |cx: &mut InferCx<'_, Self>, f: &str| {
            let mi = find(cx, f)?;
            cx.compile(&mi).map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        match name {
            "y" => {
                let g = engine.function("g").unwrap();
                let read_g_late = self.0.read_g_late.load(Ordering::SeqCst);
                if self.0.g_through_m.load(Ordering::SeqCst) {
                    call(cx, "m")?;
                } else if !read_g_late {
                    cx.dispatch(g, &args).map_err(|e| e.to_string())?;
                }
                if self.0.recursive.load(Ordering::SeqCst) {
                    call(cx, "h")?;
                }
                if self.0.y_calls_k.load(Ordering::SeqCst) {
                    call(cx, "k")?;
                }
                self.0.y_paused.raise();
                self.0.y_go.wait_for(1);
                if read_g_late {
                    cx.dispatch(g, &args).map_err(|e| e.to_string())?;
                }
                if self.0.reads_b_late.load(Ordering::SeqCst) {
                    let b = engine.function("b").unwrap();
                    cx.dispatch(b, &args).map_err(|e| e.to_string())?;
                }
                if self.0.fail.load(Ordering::SeqCst) {
                    return Err("y fails".into());
                }
                if self.0.panic.load(Ordering::SeqCst) {
                    panic!("y panics");
                }
            }
            "h" => call(cx, "y")?,
            "k" => {
                let y = find(cx, "y")?;
                cx.depend_on(&y).map_err(|e| e.to_string())?;
            }
            "d" => {
                let y = find(cx, "y")?;
                cx.depend_on(&y).map_err(|e| e.to_string())?;
            }
            "c" => call(cx, "h")?,
            "m" => {
                let g = engine.function("g").unwrap();
                cx.dispatch(g, &args).map_err(|e| e.to_string())?;
            }
            "caller" => call(cx, "d")?,
            _ => {}
        }
        Ok(())
    }

    fn codegen(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), Self::Error> {
        Ok(())
    }

    fn link(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Lets `y` finish when dropped, so that a failing assertion fails the test instead of leaving
/// `y` blocked and the scope waiting for it.
struct LetGo<'a>(&'a Signal);

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        self.0.raise();
    }
}

struct Setup {
    engine: Engine,
    int: Ty,
    paused: Arc<Paused>,
    cache: CompilerCache<Stages>,
}

fn setup(recursive: bool) -> Setup {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    for name in ["y", "h", "d", "c", "caller", "g", "k", "m", "b"] {
        let f = engine.declare_function(name).unwrap();
        let sig = if matches!(name, "g" | "b") {
            Ty::any()
        } else {
            int.clone()
        };
        engine.add_method(f, &[sig], name).unwrap();
    }
    let paused = Arc::new(Paused::default());
    paused.recursive.store(recursive, Ordering::SeqCst);
    let cache = CompilerCache::new(&engine, "paused", Stages(Arc::clone(&paused))).unwrap();
    Setup {
        engine,
        int,
        paused,
        cache,
    }
}

impl Setup {
    fn compile(&self, name: &str) -> Result<CodeInstance<Stages>, CompileError<String>> {
        let guard = self.engine.pin();
        let mi = guard
            .dispatch(self.engine.function(name).unwrap(), &[self.int.clone()])
            .unwrap();
        self.cache.compile_instance(&guard, mi, &())
    }

    /// The code instance of `name` (for `Int`) valid in the current world, if one is published.
    fn valid_now(&self, name: &str) -> Option<CodeInstance<Stages>> {
        let guard = self.engine.pin();
        let mi = guard
            .dispatch(self.engine.function(name).unwrap(), &[self.int.clone()])
            .unwrap();
        self.cache.lookup(&guard, mi, &()).unwrap()
    }

    /// Redefines `g` for `Int`, changing the answer `y` read, and returns the new world.
    fn redefine_g(&self) -> compiler_caching::World {
        let g = self.engine.function("g").unwrap();
        self.engine
            .add_method(g, &[self.int.clone()], "g for Int")
            .unwrap();
        self.engine.current_world()
    }
}

/// `h` compiles `y`, which is running further up: `h` is told `InProgress` and depends on the
/// running `y`. Redefining what `y` read must close `h` at once, before `y` publishes.
#[test]
fn a_recursive_caller_of_a_running_compilation_is_closed_by_the_mutation_itself() {
    let s = setup(true);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let h = s.valid_now("h").expect("h is published");
        let new = s.redefine_g();
        assert!(
            !h.is_valid_in(new),
            "h depends on y, which read the old g, yet is valid in {new:?}: {:?}",
            h.validity()
        );
        // Compiled in the new world, `c` must recompile `h` (and `y`) rather than build on the
        // closed `h`; it runs on another thread and waits for `y`'s job, so `y` goes first.
        let c = scope.spawn(|| s.compile("c"));
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        assert!(!y.is_valid_in(new), "y read the old g: {:?}", y.validity());
        let c = c
            .join()
            .unwrap()
            .expect("no stale dependency is ever reported");
        assert!(c.is_valid_in(new));
        let h_now = s.valid_now("h").unwrap();
        assert!(h_now.is_valid_in(new) && h_now.compiled_in() == new);
    });
}

/// `h` depends on the running `y` (told `InProgress`), which has read `g`. While `y` is paused,
/// `b` is redefined (world `w1`), then `g` (`w2`): the second mutation closes `h` at `w2`, through
/// `y`. When `y` then reads `b`, it is closed at `w1`, and so must `h` be, though the walk at `w2`
/// went through `h` already.
#[test]
fn a_dependent_closed_at_a_later_world_is_closed_again_when_its_running_callee_reads_an_older_change(
) {
    let s = setup(true);
    s.paused.reads_b_late.store(true, Ordering::SeqCst);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let h = s.valid_now("h").expect("h is published");
        let counted = s.engine.stats().invalidated_code_instances;
        let b = s.engine.function("b").unwrap();
        s.engine
            .add_method(b, &[s.int.clone()], "b for Int")
            .unwrap();
        let w1 = s.engine.current_world();
        let w2 = s.redefine_g();
        assert!(h.is_valid_in(w1), "y has not read b yet");
        assert!(!h.is_valid_in(w2), "h depends on y, which read the old g");
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        assert!(!y.is_valid_in(w1), "y read the old b: {:?}", y.validity());
        assert!(
            !h.is_valid_in(w1),
            "h depends on y, which read the old b, yet is valid in {w1:?}: {:?}",
            h.validity()
        );
        let why = h.invalidation().expect("a why-chain");
        assert_eq!(why.world, w1, "{why}");
        // `y` (running) and `h` at `w2`, then both again when `y` closes at `w1`.
        assert_eq!(s.engine.stats().invalidated_code_instances - counted, 4);
    });
}

impl Setup {
    /// Compiles `d` on a thread of `scope`, and returns once it waits for the running `y`.
    fn compile_d_waiting<'s>(
        &'s self,
        scope: &'s thread::Scope<'s, '_>,
    ) -> thread::ScopedJoinHandle<'s, Result<CodeInstance<Stages>, CompileError<String>>> {
        let waits = self.engine.stats().compile_waits;
        let d = scope.spawn(|| self.compile("d"));
        // A staged signal, not a sleep: the engine counts the wait before blocking in it.
        while self.engine.stats().compile_waits == waits {
            thread::yield_now();
        }
        d
    }
}

/// `d` depends on `y` (foreign IR) while `y` compiles on another thread in the same world: `d`
/// waits for `y` to publish, as compiling it would, and records the version `y` leaves. `y` read
/// the old `g`, so `d` is published closed where `y` is, and `caller`, compiled in the new
/// world, recompiles both.
#[test]
fn a_dependency_on_a_compilation_running_elsewhere_waits_for_it() {
    let s = setup(false);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let d = s.compile_d_waiting(scope);
        let new = s.redefine_g();
        assert!(!d.is_finished(), "d waits for the running y");
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        assert!(!y.is_valid_in(new), "y read the old g: {:?}", y.validity());
        let d = d.join().unwrap().unwrap();
        assert!(
            !d.is_valid_in(new),
            "d depends on y, which read the old g, yet is valid in {new:?}: {:?}",
            d.validity()
        );
        let caller = s.compile("caller").unwrap();
        assert!(caller.is_valid_in(new));
        let d_now = s.valid_now("d").unwrap();
        assert!(d_now.is_valid_in(new) && d_now.compiled_in() == new);
        assert!(caller.validity().max.is_none() && d_now.validity().max.is_none());
    });
}

/// What a running compilation will read is not known until it publishes. Here `y` reads `g`
/// only after `d` asked to depend on it, and `g` is redefined in between: had `d` been published
/// on the running `y` then, it would have been valid in the new world until `y` read `g`, a
/// stale result for any reader meanwhile. Waiting for `y` leaves no such window: no `d` is valid
/// in the new world before `y` publishes, nor after.
#[test]
fn a_dependency_on_a_running_compilation_covers_what_it_reads_later() {
    let s = setup(false);
    s.paused.read_g_late.store(true, Ordering::SeqCst);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let d = s.compile_d_waiting(scope);
        let new = s.redefine_g();
        assert!(
            s.valid_now("d").is_none(),
            "nothing is valid for d in the new world while y runs"
        );
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        let d = d.join().unwrap().unwrap();
        assert!(!y.is_valid_in(new), "y read the old g: {:?}", y.validity());
        assert!(
            !d.is_valid_in(new),
            "d depends on y, which read the old g, yet is valid in {new:?}: {:?}",
            d.validity()
        );
    });
}

/// Without a mutation, a dependency on a running compilation is valid once both publish.
#[test]
fn a_dependency_on_a_running_compilation_stays_valid_without_a_mutation() {
    let s = setup(false);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let d = s.compile_d_waiting(scope);
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        let d = d.join().unwrap().unwrap();
        let now = s.engine.current_world();
        assert!(d.is_valid_in(now) && y.is_valid_in(now));
        assert!(d.invalidation().is_none());
    });
}

/// `y`'s compilation fails, so nothing is ever published for it, while something depends on
/// it: a recursive caller `h` told `InProgress`, registered on the running `y`, or `d`, which
/// waited for it. Each still depends on `y`'s method, and replacing it must close them; they
/// found `y` without recording a dispatch, so only that dependency links them. (A dependency on
/// a running compilation used to live only on its backedges, which nothing reaches once it has
/// failed, and the dependent stayed valid for good.)
#[test]
fn a_dependency_on_a_running_compilation_that_fails_is_closed_when_its_method_is_replaced() {
    for recursive in [false, true] {
        let s = setup(recursive);
        s.paused.fail.store(true, Ordering::SeqCst);
        s.paused.unrecorded.store(true, Ordering::SeqCst);
        let dependent = if recursive { "h" } else { "d" };
        thread::scope(|scope| {
            let y = scope.spawn(|| s.compile("y"));
            let let_go = LetGo(&s.paused.y_go);
            s.paused.y_paused.wait_for(1);
            let dep = if recursive {
                let h = s.valid_now("h").expect("h is published");
                drop(let_go);
                h
            } else {
                let d = s.compile_d_waiting(scope);
                drop(let_go);
                d.join().unwrap().unwrap()
            };
            assert!(y.join().unwrap().is_err(), "y's compilation fails");
            let before = s.engine.current_world();
            assert!(
                dep.is_valid_in(before),
                "{dependent}: a failed compilation closes nothing by itself"
            );
            let y_fn = s.engine.function("y").unwrap();
            s.engine
                .add_method(y_fn, &[s.int.clone()], "y again")
                .unwrap();
            let replaced = s.engine.current_world();
            assert!(
                !dep.is_valid_in(replaced),
                "{dependent} depends on y's replaced method, yet is valid in {replaced:?}: {:?}",
                dep.validity()
            );
        });
    }
}

/// `h` (told `InProgress`) or `k` (whose `depend_on` cannot wait) depends on the running `y`,
/// which has read `g` (itself, or through `m`), and `y` then fails or panics. What `y` had read
/// still reaches them: redefining `g` closes the dependent. The failed `y` is no instance: the
/// invalidated ones counted are the dependent (and `m`), and the why-chain runs through `y`
/// marked as a compilation that failed.
#[test]
fn a_dependency_on_a_running_compilation_that_fails_is_closed_by_a_mutation_of_what_it_read() {
    let cases = [
        (true, false, false),
        (true, true, true),
        (false, false, true),
        (false, true, false),
    ];
    for (recursive, panics, through_m) in cases {
        test_support::threads::watchdog(60, move || {
            let s = setup(recursive);
            s.paused.y_calls_k.store(!recursive, Ordering::SeqCst);
            s.paused.fail.store(!panics, Ordering::SeqCst);
            s.paused.panic.store(panics, Ordering::SeqCst);
            s.paused.g_through_m.store(through_m, Ordering::SeqCst);
            s.paused.unrecorded.store(true, Ordering::SeqCst);
            let dependent = if recursive { "h" } else { "k" };
            let case = format!("{dependent}, panics: {panics}, through m: {through_m}");
            thread::scope(|scope| {
                let y = scope.spawn(|| s.compile("y"));
                let let_go = LetGo(&s.paused.y_go);
                s.paused.y_paused.wait_for(1);
                let dep = s.valid_now(dependent).expect("published while y runs");
                drop(let_go);
                assert!(y.join().unwrap().is_err(), "{case}: y's compilation fails");
                assert!(dep.is_valid_in(s.engine.current_world()), "{case}");
                let before = s.engine.stats().invalidated_code_instances;
                let new = s.redefine_g();
                assert!(
                    !dep.is_valid_in(new),
                    "{case}: the dependent was compiled against what the failed y read (the \
                     old g), yet is valid in {new:?}: {:?}",
                    dep.validity()
                );
                assert_eq!(
                    s.engine.stats().invalidated_code_instances - before,
                    1 + u64::from(through_m),
                    "{case}: the failed y is not counted"
                );
                let why = dep.invalidation().expect("a why-chain");
                let chain: Vec<&str> = why
                    .chain
                    .iter()
                    .map(|l| l.split('(').next().unwrap())
                    .collect();
                let expected = if through_m {
                    vec!["m", "y", dependent]
                } else {
                    vec!["y", dependent]
                };
                assert_eq!(chain, expected, "{case}: {why}");
                let y_link = &why.chain[expected.len() - 2];
                assert!(
                    y_link.ends_with("(a compilation that failed)"),
                    "{case}: {why}"
                );
            });
        });
    }
}

/// `y` compiles `k`, and `k` depends on `y` with `depend_on`: waiting for `y` would wait for
/// this very thread, so `k` records the dependency on the running `y` instead of deadlocking,
/// and is closed by a mutation of what `y` read.
#[test]
fn a_dependency_on_a_running_compilation_up_the_same_chain_does_not_wait() {
    test_support::threads::watchdog(60, || {
        let s = setup(false);
        s.paused.y_calls_k.store(true, Ordering::SeqCst);
        thread::scope(|scope| {
            let y = scope.spawn(|| s.compile("y"));
            let let_go = LetGo(&s.paused.y_go);
            s.paused.y_paused.wait_for(1);
            let k = s.valid_now("k").expect("k is published while y runs");
            let new = s.redefine_g();
            assert!(
                !k.is_valid_in(new),
                "k depends on the running y, which read the old g, yet is valid in {new:?}"
            );
            drop(let_go);
            assert!(!y.join().unwrap().unwrap().is_valid_in(new));
        });
    });
}

/// `f` reads `r` and compiles `g`; `g`, on another thread, reads `s` and depends on `f` with
/// `depend_on`. Both start before either asks for the other, so whoever asks second closes a
/// cycle across the two threads: `f` is told `InProgress`, or `g` records its dependency on the
/// running `f`. `f_asks_first` says which thread asks first (the other asks once the engine has
/// counted the first one's wait).
struct CrossCycle {
    f_asks_first: bool,
    started: Signal,
    f_told_in_progress: AtomicBool,
}

impl Compiler for CrossCycle {
    type Key = ();
    type Inferred = ();
    type Artifact = ();
    type Linked = ();
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<(), Self::Error> {
        let engine = cx.engine().clone();
        let name = *cx.instance().method().source::<&str>().unwrap();
        let args = cx.instance().argtypes().to_vec();
        let mut find = |f: &str| {
            cx.dispatch(engine.function(f).unwrap(), &args)
                .map_err(|e| e.to_string())
        };
        let (read, callee) = match name {
            "f" => ("r", "g"),
            "g" => ("s", "f"),
            _ => return Ok(()),
        };
        find(read)?;
        let callee = find(callee)?;
        self.started.raise();
        self.started.wait_for(2);
        let asks_first = (name == "f") == self.f_asks_first;
        if !asks_first {
            while engine.stats().compile_waits == 0 {
                thread::yield_now();
            }
        }
        if name == "f" {
            if let compiler_caching::Callee::InProgress =
                cx.compile(&callee).map_err(|e| e.to_string())?
            {
                self.f_told_in_progress.store(true, Ordering::SeqCst);
            }
        } else {
            cx.depend_on(&callee).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn codegen(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), Self::Error> {
        Ok(())
    }

    fn link(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A cycle closed across two threads through a `depend_on` edge ends without deadlock, both
/// compilations succeed, and each result is closed by a mutation of what either of them read,
/// whichever of the two was asked to give way (semantics §7, Recursion).
#[test]
fn a_cycle_across_threads_through_depend_on_compiles_and_is_closed_by_what_either_read() {
    for f_asks_first in [true, false] {
        for mutated in ["r", "s"] {
            test_support::threads::watchdog(60, move || {
                let engine = Engine::new();
                let int = engine
                    .lattice()
                    .declare_concrete("Int", &Ty::any())
                    .unwrap();
                for name in ["f", "g", "r", "s"] {
                    let f = engine.declare_function(name).unwrap();
                    let sig = if matches!(name, "r" | "s") {
                        Ty::any()
                    } else {
                        int.clone()
                    };
                    engine.add_method(f, &[sig], name).unwrap();
                }
                let compiler = CrossCycle {
                    f_asks_first,
                    started: Signal::default(),
                    f_told_in_progress: AtomicBool::new(false),
                };
                let cache = CompilerCache::new(&engine, "cross", compiler).unwrap();
                let compile = |name: &str| {
                    let guard = engine.pin();
                    let mi = guard
                        .dispatch(engine.function(name).unwrap(), &[int.clone()])
                        .unwrap();
                    cache.compile_instance(&guard, mi, &())
                };
                let (f, g) = thread::scope(|scope| {
                    let f = scope.spawn(|| compile("f"));
                    let g = scope.spawn(|| compile("g"));
                    (f.join().unwrap(), g.join().unwrap())
                });
                let case = format!("f asks first: {f_asks_first}, {mutated} redefined");
                let (f, g) = (f.expect(&case), g.expect(&case));
                let told = cache.compiler().f_told_in_progress.load(Ordering::SeqCst);
                let m = engine.function(mutated).unwrap();
                engine.add_method(m, &[int.clone()], "again").unwrap();
                let new = engine.current_world();
                assert!(!f.is_valid_in(new), "{case}, f told InProgress: {told}: f");
                assert!(!g.is_valid_in(new), "{case}, f told InProgress: {told}: g");
            });
        }
    }
}
