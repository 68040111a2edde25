//! Dependencies recorded on a compilation that is still running (docs/semantics.md §7).
//!
//! A compilation registers each dependency as soon as it records it, on its own code instance
//! before that is published. A mutation that changes what the running compilation read therefore
//! reaches, in its own walk and before its world is published, everything that already depends on
//! the running instance: a recursive caller that was told `InProgress`, or code that called
//! `depend_on` for it. Without that, such a dependent stayed valid in the new world until the
//! running compilation published (already closed), and code compiled against it in the new world
//! was either refused as stale or published valid against an invalid dependency.
//!
//! Each test pauses `y` inside `infer` after it read `g`, lets the other compilations run, redefines
//! `g`, and checks what is valid in the new world *before* `y` is allowed to finish.

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
    /// Whether callers find `y` and `h` by dispatching outside the compilation (not recording
    /// the dispatch), so that only the dependency on the instance links them.
    unrecorded: AtomicBool,
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
                cx.dispatch(g, &args).map_err(|e| e.to_string())?;
                if self.0.recursive.load(Ordering::SeqCst) {
                    call(cx, "h")?;
                }
                self.0.y_paused.raise();
                self.0.y_go.wait_for(1);
                if self.0.fail.load(Ordering::SeqCst) {
                    return Err("y fails".into());
                }
            }
            "h" => call(cx, "y")?,
            "d" => {
                let y = find(cx, "y")?;
                cx.depend_on(&y).map_err(|e| e.to_string())?;
            }
            "c" => call(cx, "h")?,
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
    for name in ["y", "h", "d", "c", "caller", "g"] {
        let f = engine.declare_function(name).unwrap();
        let sig = if name == "g" { Ty::any() } else { int.clone() };
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
        let guard = s.engine.pin();
        let hmi = guard
            .dispatch(s.engine.function("h").unwrap(), &[s.int.clone()])
            .unwrap()
            .clone();
        let h = s
            .cache
            .lookup(&guard, &hmi, &())
            .unwrap()
            .expect("h is published");
        drop(guard);
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
        let h_now = {
            let guard = s.engine.pin();
            s.cache.lookup(&guard, &hmi, &()).unwrap().unwrap()
        };
        assert!(h_now.is_valid_in(new) && h_now.compiled_in() == new);
    });
}

/// `d` depends on `y` (foreign IR) while `y` compiles on another thread. The mutation closes `d`
/// before its world is published, so `caller`, compiled in the new world, recompiles `d` instead
/// of being published valid against the closed one.
#[test]
fn a_dependency_on_a_running_compilation_is_closed_by_the_mutation_itself() {
    let s = setup(false);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let d = s.compile("d").unwrap();
        let new = s.redefine_g();
        assert!(
            !d.is_valid_in(new),
            "d depends on the running y, which read the old g, yet is valid in {new:?}: {:?}",
            d.validity()
        );
        let caller = s.compile("caller").unwrap();
        assert!(caller.is_valid_in(new));
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        assert!(!y.is_valid_in(new));
        // Whatever caller was compiled against is valid wherever caller is.
        let guard = s.engine.pin();
        let dmi = guard
            .dispatch(s.engine.function("d").unwrap(), &[s.int.clone()])
            .unwrap()
            .clone();
        let d_now = s.cache.lookup(&guard, &dmi, &()).unwrap().unwrap();
        assert!(d_now.is_valid_in(new) && d_now.compiled_in() == new);
        assert!(caller.validity().max.is_none() && d_now.validity().max.is_none());
    });
}

/// Without a mutation, a dependency on a running compilation stays valid once it publishes.
#[test]
fn a_dependency_on_a_running_compilation_stays_valid_without_a_mutation() {
    let s = setup(false);
    thread::scope(|scope| {
        let y = scope.spawn(|| s.compile("y"));
        let let_go = LetGo(&s.paused.y_go);
        s.paused.y_paused.wait_for(1);
        let d = s.compile("d").unwrap();
        drop(let_go);
        let y = y.join().unwrap().unwrap();
        let now = s.engine.current_world();
        assert!(d.is_valid_in(now) && y.is_valid_in(now));
        assert!(d.invalidation().is_none());
    });
}

/// `d` depends on `y` while `y` compiles, and `y`'s compilation then fails, so nothing is ever
/// published for it. `d` still depends on `y`'s method: replacing it must close `d`, which
/// found `y` without recording a dispatch, so only that dependency links them. (The
/// dependency used to live only on the failed compilation's backedges, which nothing reaches
/// once it is gone, and `d` stayed valid for good.) The same holds for a recursive caller told
/// `InProgress`, which registers on the running compilation the same way.
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
                let guard = s.engine.pin();
                let hmi = guard
                    .dispatch(s.engine.function("h").unwrap(), &[s.int.clone()])
                    .unwrap()
                    .clone();
                s.cache
                    .lookup(&guard, &hmi, &())
                    .unwrap()
                    .expect("h is published")
            } else {
                s.compile("d").unwrap()
            };
            drop(let_go);
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
