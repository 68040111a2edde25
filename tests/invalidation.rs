//! Invalidation (docs/semantics.md §7): direct, transitive, diamond, overlays, deletion, per-owner edges,
//! held method instances, the "why" record, and what must not be invalidated.

use compiler_caching::{
    CompileError, Compiler, CompilerCache, Engine, Error, Function, InferCx, Phase, PhaseCx,
    TableStack, Ty,
};
use test_support::foreign::{Call, Foreign, Ir};
use test_support::setups::{calls, types, Types};

struct Setup {
    engine: Engine,
    t: Types,
    cache: CompilerCache<Foreign>,
    log: std::sync::Arc<test_support::foreign::Log>,
}

fn setup() -> Setup {
    let engine = Engine::new();
    let t = types(&engine);
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(&engine, "Test", compiler).unwrap();
    Setup {
        engine,
        t,
        cache,
        log,
    }
}

impl Setup {
    fn f(&self, name: &str) -> Function {
        self.engine
            .function(name)
            .or_else(|_| self.engine.declare_function(name))
            .unwrap()
    }

    fn define(&self, name: &str, ir: Ir) -> compiler_caching::Method {
        let int = self.t.int.clone();
        self.engine.add_method(self.f(name), &[int], ir).unwrap()
    }

    fn run(&self, name: &str) -> i64 {
        self.run_in(name, self.engine.global_stack(), &self.cache)
    }

    fn run_in(&self, name: &str, stack: TableStack, cache: &CompilerCache<Foreign>) -> i64 {
        let guard = self.engine.pin();
        let mi = guard
            .dispatch_in(stack, self.f(name), &[self.t.int.clone()])
            .unwrap();
        *cache.compile(&guard, mi, &0).unwrap()
    }

    fn infers(&self, name: &str) -> usize {
        self.log.runs(name, Phase::Infer)
    }

    fn ci(&self, name: &str) -> compiler_caching::CodeInstance<Foreign> {
        let guard = self.engine.pin();
        let mi = guard
            .dispatch(self.f(name), &[self.t.int.clone()])
            .unwrap()
            .clone();
        let versions = self.cache.versions(&mi, &0);
        versions.last().cloned().expect("compiled")
    }
}

#[test]
fn direct_dependent_is_invalidated_and_old_world_still_hits() {
    let s = setup();
    let int = s.t.int.clone();
    s.define("f", calls(100, &["g"], &int));
    s.define("g", Ir::constant(1));
    assert_eq!(s.run("f"), 101);
    let old_world = s.engine.current_world();
    let old_ci = s.ci("f");
    assert!(old_ci.validity().max.is_none());

    s.define("g", Ir::constant(2));
    let w = s.engine.current_world();
    assert_eq!(
        old_ci.validity().max,
        Some(w),
        "closed at the replacing world"
    );
    assert!(old_ci.is_valid_in(old_world) && !old_ci.is_valid_in(w));
    assert_eq!(s.run("f"), 102);
    assert_eq!((s.infers("f"), s.infers("g")), (2, 2));

    // The old world still answers with what was compiled for it, without compiling.
    let guard = s.engine.pin_world(old_world).unwrap();
    let mi = guard.dispatch(s.f("f"), &[int]).unwrap();
    assert_eq!(*s.cache.compile(&guard, mi, &0).unwrap(), 101);
    assert_eq!(s.infers("f"), 2);
}

#[test]
fn transitive_chain_and_why() {
    let s = setup();
    let int = s.t.int.clone();
    s.define("a", calls(1000, &["b"], &int));
    s.define("b", calls(100, &["c"], &int));
    s.define("c", calls(10, &["d"], &int));
    s.define("d", Ir::constant(1));
    assert_eq!(s.run("a"), 1111);
    let old = s.ci("a");
    s.define("d", Ir::constant(2));
    let w = s.engine.current_world();
    for name in ["a", "b", "c", "d"] {
        assert_eq!(s.infers(name), 1, "{name} is recompiled lazily");
    }
    let why = old.invalidation().expect("a was invalidated");
    assert_eq!(why.world, w);
    assert_eq!(why.mutation, "method d(Int64) replaced in table global");
    // c's call to d dispatches differently now: that edge is hit first, then c's dependents.
    assert_eq!(why.trigger, "dispatch d(Int64) via [global] changed");
    let chain: Vec<&str> = why
        .chain
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(chain, ["c(Int64)", "b(Int64)", "a(Int64)"]);
    assert!(why.to_string().contains("a(Int64)"));
    assert_eq!(s.run("a"), 1112);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(s.infers(name), 2, "{name}");
    }
    assert!(s.ci("a").invalidation().is_none());
}

#[test]
fn diamond_recompiles_each_dependent_once() {
    let s = setup();
    let int = s.t.int.clone();
    s.define("top", calls(1000, &["left", "right"], &int));
    s.define("left", calls(100, &["bottom"], &int));
    s.define("right", calls(10, &["bottom"], &int));
    s.define("bottom", Ir::constant(1));
    assert_eq!(s.run("top"), 1112);
    assert_eq!(s.infers("bottom"), 1, "the second caller hits");
    let before = s.engine.stats().invalidated_code_instances;
    s.define("bottom", Ir::constant(2));
    assert_eq!(s.engine.stats().invalidated_code_instances - before, 4);
    assert_eq!(s.run("top"), 1114);
    for name in ["top", "left", "right", "bottom"] {
        assert_eq!(s.infers(name), 2, "{name}");
    }
}

#[test]
fn new_overlay_method_invalidates_callers_that_fell_back_to_global() {
    let s = setup();
    let int = s.t.int.clone();
    let overlay = s.engine.new_overlay("debug").unwrap();
    let stack = s.engine.stack(&[overlay, s.engine.global_table()]).unwrap();
    let overlay_cache =
        CompilerCache::with_stack(&s.engine, "Overlay", stack, Foreign { log: s.log.clone() })
            .unwrap();
    s.define("caller", calls(100, &["callee"], &int));
    s.define("callee", Ir::constant(1));
    assert_eq!(s.run_in("caller", stack, &overlay_cache), 101);
    assert_eq!(s.run("caller"), 101);
    assert_eq!(s.infers("caller"), 2);

    s.engine
        .add_method_to(overlay, s.f("callee"), &[int.clone()], Ir::constant(5))
        .unwrap();
    assert_eq!(
        s.run_in("caller", stack, &overlay_cache),
        105,
        "the overlay caller is recompiled"
    );
    assert_eq!(s.run("caller"), 101, "the global-only caller is untouched");
    assert_eq!(s.infers("caller"), 3);
}

#[test]
fn deletion_invalidates_and_missing_methods_are_dependencies_too() {
    let s = setup();
    let int = s.t.int.clone();
    s.define("f", calls(100, &["g"], &int));
    let g = s.define("g", Ir::constant(1));
    assert_eq!(s.run("f"), 101);
    s.engine.delete_method(&g).unwrap();
    assert_eq!(
        s.run("f"),
        100,
        "g no longer exists: the call contributes nothing"
    );
    assert_eq!(s.infers("f"), 2);
    // "No method" was recorded: defining g again invalidates f.
    s.define("g", Ir::constant(7));
    assert_eq!(s.run("f"), 107);
    assert_eq!(s.infers("f"), 3);
}

#[test]
fn mutations_that_change_no_dispatch_result_invalidate_nothing() {
    let s = setup();
    let int = s.t.int.clone();
    s.define("f", calls(100, &["g"], &int));
    s.define("g", Ir::constant(1));
    assert_eq!(s.run("f"), 101);
    let before = s.engine.stats();
    // A method of g for other types, a less specific one, and another function entirely.
    s.engine
        .add_method(s.f("g"), &[s.t.float.clone()], Ir::constant(9))
        .unwrap();
    s.engine
        .add_method(s.f("g"), &[Ty::any()], Ir::constant(9))
        .unwrap();
    s.engine
        .add_method(s.f("g"), &[int.clone(), int.clone()], Ir::constant(9))
        .unwrap();
    s.define("h", Ir::constant(3));
    let after = s.engine.stats();
    assert_eq!(
        after.invalidated_code_instances,
        before.invalidated_code_instances
    );
    assert_eq!(after.invalidated_dispatches, before.invalidated_dispatches);
    assert_eq!(s.run("f"), 101);
    assert_eq!((s.infers("f"), s.infers("g")), (1, 1));
    assert!(s.ci("f").validity().max.is_none());
}

/// Records a dependency on `g(Int64)` only when compiling for key 1.
struct KeyDependent;

impl Compiler for KeyDependent {
    type Key = u32;
    type Inferred = u32;
    type Artifact = u32;
    type Linked = u32;
    type Error = Error;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u32, Error> {
        if *cx.key() == 1 {
            let g = cx.engine().function("g")?;
            let args = cx.instance().argtypes();
            cx.dispatch(g, args)?;
        }
        Ok(*cx.key())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, i: &u32) -> Result<u32, Error> {
        Ok(*i)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, a: &u32) -> Result<u32, Error> {
        Ok(*a)
    }
}

#[test]
fn edges_belong_to_code_instances_not_to_method_instances() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(f, &[t.int.clone()], ()).unwrap();
    engine.add_method(g, &[t.real.clone()], ()).unwrap();
    let cache = CompilerCache::new(&engine, "K", KeyDependent).unwrap();
    let guard = engine.pin();
    let mi = guard.dispatch(f, &[t.int.clone()]).unwrap().clone();
    cache.compile(&guard, &mi, &1).unwrap();
    cache.compile(&guard, &mi, &2).unwrap();
    drop(guard);
    engine.add_method(g, &[t.int.clone()], ()).unwrap();
    let with_edge = &cache.versions(&mi, &1)[0];
    let without = &cache.versions(&mi, &2)[0];
    assert_eq!(with_edge.validity().max, Some(engine.current_world()));
    assert_eq!(without.validity().max, None, "key 2 recorded no edge to g");
}

#[test]
fn held_method_instances_see_their_own_code_invalidated() {
    let s = setup();
    let g = s.define("g", Ir::constant(1));
    let guard = s.engine.pin();
    let held = guard
        .dispatch(s.f("g"), &[s.t.int.clone()])
        .unwrap()
        .clone();
    s.cache.compile(&guard, &held, &0).unwrap();
    drop(guard);
    s.define("g", Ir::constant(2));
    let ci = &s.cache.versions(&held, &0)[0];
    assert_eq!(ci.validity().max, Some(s.engine.current_world()));
    let why = ci.invalidation().unwrap();
    assert!(why.trigger.contains("g(Int64)"), "{why}");
    // Compiling the stale handle in the new world is an error, not stale code.
    let guard = s.engine.pin();
    assert!(s.cache.lookup(&guard, &held, &0).unwrap().is_none());
    assert!(matches!(
        s.cache.compile(&guard, &held, &0),
        Err(CompileError::Engine(Error::MethodNotLive { .. }))
    ));
    assert!(!g.is_live_in(guard.world()));
}

#[test]
fn opaque_dependencies_on_foreign_callees() {
    // A foreign IR whose callee the engine cannot read: recorded with depend_on only.
    let s = setup();
    let int = s.t.int.clone();
    s.define(
        "outer",
        Ir {
            value: 5,
            calls: Vec::new(),
            opaque_deps: vec![Call {
                function: "opaque".into(),
                args: vec![int.clone()],
            }],
        },
    );
    s.define("opaque", Ir::constant(1));
    assert_eq!(s.run("outer"), 5);
    assert_eq!(s.infers("opaque"), 0, "depend_on compiles nothing");
    s.define("opaque", Ir::constant(2));
    assert_eq!(s.run("outer"), 5);
    assert_eq!(
        s.infers("outer"),
        2,
        "replacing the opaque callee's method invalidated outer"
    );
}

#[test]
fn compiling_in_an_older_world_after_a_newer_one_terminates_with_the_old_answer() {
    // Found by the `ops` fuzz target: the dispatch of g(Float) was first computed in world 4,
    // where it was valid from 4 on; asked again in world 3 (same answer), the cached node's range
    // excluded world 3, so every compile in world 3 published an instance not valid in it.
    let s = setup();
    let float = s.t.float.clone();
    let f = s.f("f");
    let g = s.f("g");
    s.engine
        .add_method(g, &[float.clone()], Ir::constant(17))
        .unwrap();
    s.engine
        .add_method(
            f,
            &[s.t.real.clone()],
            Ir {
                value: 38,
                calls: vec![Call {
                    function: "g".into(),
                    args: vec![float.clone()],
                }],
                opaque_deps: vec![],
            },
        )
        .unwrap();
    let world3 = s.engine.pin();
    s.engine
        .add_method(g, &[Ty::any()], Ir::constant(0))
        .unwrap();
    let world4 = s.engine.pin();
    let mi = world4.dispatch(f, &[float.clone()]).unwrap();
    assert_eq!(*s.cache.compile(&world4, mi, &1).unwrap(), 55);
    let mi = world3.dispatch(f, &[float.clone()]).unwrap();
    assert_eq!(*s.cache.compile(&world3, mi, &0).unwrap(), 55);
    assert_eq!(s.infers("f"), 2);
}

#[test]
fn code_compiled_in_an_older_world_stays_valid_when_a_later_method_changed_no_answer() {
    // Found by the differential test: g(Float) dispatched in world 4, after a less specific g(Any)
    // was added, was given a range starting at 4 though its answer had held since g(Float) was
    // defined. Compiling f in world 4 then made a version valid only from 4, so f compiled again
    // in world 3 was closed at 4 (one valid version per world), and so was every caller compiled
    // against it: invalid in later worlds though nothing they read had changed.
    let s = setup();
    let float = s.t.float.clone();
    let (f, g, h) = (s.f("f"), s.f("g"), s.f("h"));
    let call = |function: &str, value| Ir {
        value,
        calls: vec![Call {
            function: function.into(),
            args: vec![float.clone()],
        }],
        opaque_deps: vec![],
    };
    s.engine
        .add_method(g, &[float.clone()], Ir::constant(17))
        .unwrap();
    s.engine
        .add_method(f, &[s.t.real.clone()], call("g", 38))
        .unwrap();
    s.engine
        .add_method(h, &[float.clone()], call("f", 100))
        .unwrap();
    let world4 = s.engine.pin();
    s.engine
        .add_method(g, &[Ty::any()], Ir::constant(0))
        .unwrap();
    let world5 = s.engine.pin();
    let mi = world5.dispatch(f, &[float.clone()]).unwrap();
    assert_eq!(*s.cache.compile(&world5, mi, &0).unwrap(), 55);
    // Same key, older world, same answers: the version compiled in world 5 serves it.
    let mi = world4.dispatch(h, &[float.clone()]).unwrap();
    assert_eq!(*s.cache.compile(&world4, mi, &0).unwrap(), 155);
    assert_eq!((s.infers("g"), s.infers("f"), s.infers("h")), (1, 1, 1));
    let f_mi = world5.dispatch(f, &[float.clone()]).unwrap().clone();
    let versions = s.cache.versions(&f_mi, &0);
    assert_eq!(versions.len(), 1);
    assert!(versions[0].is_valid_in(world4.world()));
    // An unrelated mutation later, h (compiled in world 4) is still valid and still hits.
    s.define("k", Ir::constant(1));
    let newest = s.engine.pin();
    let h_mi = newest.dispatch(h, &[float.clone()]).unwrap().clone();
    let versions = s.cache.versions(&h_mi, &0);
    assert_eq!(versions.len(), 1);
    assert!(
        versions[0].is_valid_in(newest.world()),
        "{}",
        versions[0].validity()
    );
    assert_eq!(*s.cache.compile(&newest, &h_mi, &0).unwrap(), 155);
    assert_eq!(s.infers("h"), 1);
}

#[test]
fn a_stale_backedge_never_names_a_node_reused_after_its_chunk_was_given_back() {
    // The graph gives back a chunk of nodes once all are freed. It used to make the chunk again
    // with every generation at 0, so a backedge a reclaimed code instance left on a dispatch
    // answer named the new node at its index: adding a method then invalidated code that had
    // recorded nothing, with a why-chain through a dependency it never had.
    let s = setup();
    s.engine.set_auto_reclaim(false);
    let int = s.t.int.clone();
    s.f("g");
    // f(Int) calls g(Int), which has no method: its backedge sits on that answer.
    let f_method = s.define("f", calls(1, &["g"], &int));
    assert_eq!(s.run("f"), 1);
    // 63 more code instances fill the first chunk of 64 nodes.
    let j = s.f("j");
    let filler = s
        .engine
        .add_method(j, &[Ty::any()], Ir::constant(0))
        .unwrap();
    {
        let guard = s.engine.pin();
        for i in 0..63 {
            let t = s
                .engine
                .lattice()
                .declare_concrete(&format!("T{i}"), &Ty::any())
                .unwrap();
            let mi = guard.dispatch(j, &[t]).unwrap();
            s.cache.compile(&guard, mi, &0).unwrap();
        }
    }
    s.engine.delete_method(&filler).unwrap();
    s.engine.delete_method(&f_method).unwrap();
    // Reclaim until every code instance is gone and their nodes (the whole chunk) are freed.
    let k = s.f("k");
    let mut rounds = 0;
    while s.engine.reclaim().code_instances > 0 || rounds < 3 {
        let m = s
            .engine
            .add_method(k, &[int.clone()], Ir::constant(0))
            .unwrap();
        s.engine.delete_method(&m).unwrap();
        rounds += 1;
        assert!(rounds < 20, "code instances never reclaimed");
    }
    // h(Int) records nothing, and takes the first node of a new chunk.
    s.define("h", Ir::constant(3));
    assert_eq!(s.run("h"), 3);
    s.define("g", Ir::constant(2));
    let h = s.ci("h");
    assert!(
        h.validity().max.is_none(),
        "h(Int) recorded nothing, yet: {} {:?}",
        h.validity(),
        h.invalidation().map(|i| i.to_string())
    );
}

/// Walks past the sequential threshold (4096 visits) run on rayon workers, splitting the work;
/// they must lower exactly the dependents, each once, with a cause leading back to the root.
#[test]
fn large_walks_on_rayon_workers_invalidate_exactly_the_dependents() {
    const N: usize = 6000;
    type Shape = fn(usize) -> Vec<usize>;
    let shapes: [(&str, Shape); 2] = [
        ("tree", |i| if i == 0 { vec![] } else { vec![(i - 1) / 2] }),
        ("dag", |i| (i.saturating_sub(4)..i).collect()),
    ];
    for (shape, callees) in shapes {
        for threads in [2, 3] {
            let s = setup();
            let names: Vec<String> = (0..N).map(|i| format!("{shape}{i}")).collect();
            for (i, name) in names.iter().enumerate() {
                let deps: Vec<&str> = callees(i).into_iter().map(|j| names[j].as_str()).collect();
                s.define(name, calls(0, &deps, &s.t.int));
            }
            s.define("unrelated", Ir::constant(7));
            for name in &names {
                s.run(name);
            }
            assert_eq!(s.run("unrelated"), 7);
            // Held across the redefinition: reclamation may drop the cache's own references.
            let sample: Vec<_> = names[1..]
                .iter()
                .step_by(97)
                .chain([&names[N - 1]])
                .map(|name| (name, s.ci(name)))
                .collect();
            let before = s.engine.current_world();
            let invalidated = s.engine.stats().invalidated_code_instances;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| s.define(&names[0], Ir::constant(0)));
            let after = s.engine.current_world();
            assert_eq!(
                s.engine.stats().invalidated_code_instances - invalidated,
                N as u64,
                "{shape} on {threads} threads: each dependent lowered exactly once"
            );
            for (name, ci) in sample {
                assert!(ci.is_valid_in(before) && !ci.is_valid_in(after), "{name}");
                let why = ci.invalidation().expect("a walk records why");
                assert_eq!(why.world, after, "{name}");
                assert!(
                    why.chain.last().unwrap().starts_with(&format!("{name}(")),
                    "{why}"
                );
                assert!(why.mutation.contains(&format!("{}(", names[0])), "{why}");
            }
            assert!(
                s.ci("unrelated").is_valid_in(after),
                "{shape}: not a dependent"
            );
            let infers = s.infers(&names[N - 1]);
            // Callees first, so that no compilation recurses thousands of calls deep.
            for name in &names {
                s.run(name);
            }
            assert_eq!(s.infers(&names[N - 1]), infers + 1, "recompiled once");
        }
    }
}

/// A large walk brings in the other threads of the rayon pool it runs on. The mutating thread, which
/// holds the engine's writer lock, must not run another queued job of that pool meanwhile: if the
/// job mutates the same engine, it blocks on the lock its own thread holds. Here another thread
/// keeps queueing redefinitions on the pool while walks run in it. Against the walk that waited
/// inside a `rayon::scope`, this test hung (killed after 400 s), and variants of it hung at rounds
/// 1, 5, 10 and 20.
#[test]
fn a_walk_on_a_rayon_pool_never_runs_a_queued_mutation_of_its_engine() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use test_support::compilers::{Program, Sum};
    const N: usize = 12_000;
    const ROUNDS: usize = 40;
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let cache = CompilerCache::new(&engine, "walks", Sum).unwrap();
    let tree: Vec<Function> = (0..N)
        .map(|i| engine.declare_function(&format!("t{i}")).unwrap())
        .collect();
    for (i, &f) in tree.iter().enumerate() {
        let calls = if i == 0 {
            vec![]
        } else {
            vec![tree[(i - 1) / 2]]
        };
        engine
            .add_method(f, &[int.clone()], Program::calling(calls))
            .unwrap();
    }
    let others: Vec<Function> = (0..4)
        .map(|i| engine.declare_function(&format!("other{i}")).unwrap())
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (finished, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // A hang cannot fail a test by itself: end the run loudly instead.
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            watchdog.recv_timeout(std::time::Duration::from_secs(600))
        {
            eprintln!("a walk deadlocked against a mutation queued on its pool");
            std::process::abort();
        }
    });
    let stop = AtomicBool::new(false);
    let queued = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                pool.install(|| {
                    engine
                        .add_method(others[i % 4], &[int.clone()], Program::calling(vec![]))
                        .unwrap()
                });
                queued.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        for round in 0..ROUNDS {
            {
                let guard = engine.pin();
                for &f in &tree {
                    let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                    cache.compile(&guard, mi, &0).unwrap();
                }
            }
            let invalidated = engine.stats().invalidated_code_instances;
            pool.install(|| {
                engine
                    .add_method(tree[0], &[int.clone()], Program::calling(vec![]))
                    .unwrap()
            });
            assert_eq!(
                engine.stats().invalidated_code_instances - invalidated,
                N as u64,
                "round {round}: every instance of the tree invalidated"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    finished.send(()).unwrap();
    assert!(
        queued.load(Ordering::Relaxed) > 0,
        "mutations were queued on the pool while the walks ran"
    );
}

/// Records a dependency on `target` with `depend_on` and compiles to what `depend_on` answered.
#[derive(Default)]
struct DependsOn {
    target: std::sync::Mutex<Option<compiler_caching::MethodInstance>>,
}

impl Compiler for DependsOn {
    type Key = u32;
    type Inferred = String;
    type Artifact = String;
    type Linked = String;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<String, String> {
        let target = self.target.lock().unwrap().clone().ok_or("no target")?;
        Ok(match cx.depend_on(&target) {
            Ok(()) => "recorded".into(),
            Err(e) => e.to_string(),
        })
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, i: &String) -> Result<String, String> {
        Ok(i.clone())
    }
    fn link(&self, _: &PhaseCx<'_, Self>, a: &String) -> Result<String, String> {
        Ok(a.clone())
    }
}

/// `depend_on` with an instance that cannot be valid in the compilation's world (its method was
/// replaced, deleted or defined later, or it belongs to another engine) records nothing and says
/// why; the compilation ends (it used to rerun infer forever) and a live target still works.
#[test]
fn depend_on_refuses_instances_that_are_not_live_in_the_compilation_world() {
    test_support::threads::watchdog(60, || {
        let engine = Engine::new();
        let int = engine
            .lattice()
            .declare_concrete("Int", &Ty::any())
            .unwrap();
        let f = engine.declare_function("f").unwrap();
        let h = engine.declare_function("h").unwrap();
        engine.add_method(f, &[int.clone()], ()).unwrap();
        let cache = CompilerCache::new(&engine, "C", DependsOn::default()).unwrap();
        let mi_of = |g: &compiler_caching::Guard<'_>, func| {
            g.dispatch(func, &[int.clone()]).unwrap().clone()
        };
        // Each case compiles the caller under a key of its own, so nothing is served cached.
        let case = std::sync::atomic::AtomicU32::new(0);
        let compile_with = |guard: &compiler_caching::Guard<'_>, target| {
            *cache.compiler().target.lock().unwrap() = Some(target);
            let caller = mi_of(guard, f);
            let key = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cache.compile(guard, &caller, &key).cloned()
        };

        // Replaced: the old instance's method is not live in the current world.
        engine.add_method(h, &[int.clone()], 1).unwrap();
        let replaced = mi_of(&engine.pin(), h);
        engine.add_method(h, &[int.clone()], 2).unwrap();
        let got = compile_with(&engine.pin(), replaced).unwrap();
        assert!(got.contains("is not live"), "{got}");

        // Deleted.
        let live = mi_of(&engine.pin(), h);
        engine.delete_method(live.method()).unwrap();
        let got = compile_with(&engine.pin(), live).unwrap();
        assert!(got.contains("is not live"), "{got}");

        // Defined after the world the compilation runs in.
        let old = engine.pin();
        engine.add_method(h, &[int.clone()], 3).unwrap();
        let later = mi_of(&engine.pin(), h);
        let got = compile_with(&old, later.clone()).unwrap();
        assert!(got.contains("is not live"), "{got}");
        drop(old);

        // Another engine's instance, even one whose worlds happen to fit.
        let other = Engine::new();
        let oint = other.lattice().declare_concrete("Int", &Ty::any()).unwrap();
        let of = other.declare_function("h").unwrap();
        other.add_method(of, &[oint.clone()], 0).unwrap();
        let foreign = other.pin().dispatch(of, &[oint]).unwrap().clone();
        let got = compile_with(&engine.pin(), foreign).unwrap();
        assert!(got.contains("unknown function"), "{got}");

        // A live target is recorded, and replacing its method invalidates the caller.
        let got = compile_with(&engine.pin(), later.clone()).unwrap();
        assert_eq!(got, "recorded");
        let key = case.load(std::sync::atomic::Ordering::Relaxed) - 1;
        let before = cache
            .lookup(&engine.pin(), &mi_of(&engine.pin(), f), &key)
            .unwrap()
            .unwrap();
        engine.add_method(h, &[int.clone()], 4).unwrap();
        assert!(!before.is_valid_in(engine.current_world()));
        assert!(before.invalidation().unwrap().trigger.contains("h(Int)"));
    });
}
