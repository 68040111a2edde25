//! The persistent tier: a restarted engine serves unchanged code with no infer and no codegen,
//! and refuses every stored record whose dependencies changed (redefinition, deletion, a new
//! more specific method, an overlay method, a redeclared type, a new compiler version), falling
//! back to compiling exactly as a cold start would. Records are revalidated transitively through
//! callees, recursion included, and a loaded code instance registers the same backedges as a
//! compiled one. "Processes" here are engines that share nothing but the store; see
//! `persist_faults.rs` for real processes.

use std::sync::Arc;

use compiler_caching::{
    ArtifactStore, CompilerCache, Engine, MemoryStore, Method, RedbOptions, RedbStore,
    StatsSnapshot, Ty,
};
use test_support::persisted::{Calls, Chain, FaultyStore};
use test_support::setups::{types, Types};

/// One run of a program: an engine of its own, the numeric types, a cache over `store`.
struct Proc {
    engine: Engine,
    cache: CompilerCache<Chain>,
    t: Types,
}

impl Proc {
    fn new<S: ArtifactStore + 'static>(store: &Arc<S>, version: &str) -> Proc {
        let engine = Engine::new();
        let t = types(&engine);
        let cache = CompilerCache::with_store(&engine, "chain", Chain::new(version), store.clone())
            .unwrap();
        Proc { engine, cache, t }
    }

    fn def(&self, name: &str, sig: &Ty, source: Calls) -> Method {
        let f = self
            .engine
            .function(name)
            .or_else(|_| self.engine.declare_function(name))
            .unwrap();
        self.engine.add_method(f, &[sig.clone()], source).unwrap()
    }

    fn declare(&self, name: &str) {
        self.engine.declare_function(name).unwrap();
    }

    fn call(&self, name: &str, arg: &Ty) -> u64 {
        let f = self.engine.function(name).unwrap();
        let guard = self.engine.pin();
        let mi = guard.dispatch(f, &[arg.clone()]).unwrap();
        *self.cache.compile(&guard, mi, &0).unwrap()
    }

    fn stats(&self) -> StatsSnapshot {
        self.cache.flush_store().unwrap();
        self.engine.stats()
    }

    fn loaded(&self) -> Vec<String> {
        let mut loaded = self.cache.compiler().take_loaded();
        loaded.sort();
        loaded
    }
}

/// `f(Int64)` calls `g`, which calls `h`; `k` is unrelated.
fn chain_program(p: &Proc, h_value: u64) {
    p.def("h", &p.t.real, Calls::value(h_value));
    p.def("g", &p.t.integer, Calls::calling(10, &["h"]));
    p.def("f", &p.t.int, Calls::calling(100, &["g"]));
    p.def("k", &Ty::any(), Calls::value(7));
}

#[test]
fn a_restarted_engine_runs_no_infer_and_no_codegen_for_unchanged_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("artifacts.redb");
    let first = {
        let store = Arc::new(RedbStore::open(&path, RedbOptions::default()).unwrap());
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        assert_eq!(p.call("f", &p.t.int), 111);
        assert_eq!(p.call("k", &p.t.int), 7);
        let s = p.stats();
        assert_eq!((s.infer_runs, s.codegen_runs, s.persist_loads), (4, 4, 0));
        assert_eq!((s.persist_stores, s.persist_misses), (4, 4));
        s
        // The engine, its cache and the store close here, as at the end of a process.
    };
    assert_eq!(first.persist_store_errors, 0);
    let store = Arc::new(RedbStore::open(&path, RedbOptions::default()).unwrap());
    let p = Proc::new(&store, "1");
    chain_program(&p, 1);
    assert_eq!(p.call("f", &p.t.int), 111);
    assert_eq!(p.call("k", &p.t.int), 7);
    let s = p.stats();
    assert_eq!((s.infer_runs, s.codegen_runs), (0, 0), "{s:#?}");
    assert_eq!((s.link_runs, s.persist_loads), (4, 4));
    assert_eq!(p.loaded(), ["f(Int64)", "g(Int64)", "h(Int64)", "k(Int64)"]);
    // Hits from here on, as after a compile.
    assert_eq!(p.call("f", &p.t.int), 111);
    assert_eq!(p.stats().link_runs, 4);
}

#[test]
fn two_live_engines_share_one_store() {
    let store = Arc::new(MemoryStore::new());
    let a = Proc::new(&store, "1");
    chain_program(&a, 1);
    assert_eq!(a.call("f", &a.t.int), 111);
    a.stats();
    let b = Proc::new(&store, "1");
    chain_program(&b, 1);
    assert_eq!(b.call("f", &b.t.int), 111);
    assert_eq!(b.stats().infer_runs, 0);
    // A caller defined only in the second engine compiles; its callees load.
    b.def("top", &b.t.number, Calls::calling(1000, &["f"]));
    assert_eq!(b.call("top", &b.t.int), 1111);
    let s = b.stats();
    assert_eq!((s.infer_runs, s.persist_loads), (1, 3));
}

#[test]
fn a_redefined_callee_refuses_its_callers_and_only_them() {
    let store = Arc::new(MemoryStore::new());
    {
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        assert_eq!(p.call("f", &p.t.int), 111);
        assert_eq!(p.call("k", &p.t.int), 7);
        p.stats();
    }
    let p = Proc::new(&store, "1");
    chain_program(&p, 2); // h's source changed
    assert_eq!(p.call("f", &p.t.int), 112);
    assert_eq!(p.call("k", &p.t.int), 7);
    let s = p.stats();
    // h is a new identity (a miss); g dispatches h to another method; f's callee g is no longer
    // the one f was compiled against. k is untouched.
    assert_eq!(s.infer_runs, 3, "{s:#?}");
    assert_eq!(s.persist_refused_dependencies, 2);
    assert_eq!(p.loaded(), ["k(Int64)"]);
}

#[test]
fn a_redefinition_within_the_run_reaches_loaded_code_through_its_backedges() {
    let store = Arc::new(MemoryStore::new());
    {
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        p.call("f", &p.t.int);
        p.stats();
    }
    let p = Proc::new(&store, "1");
    chain_program(&p, 1);
    assert_eq!(p.call("f", &p.t.int), 111);
    assert_eq!(p.stats().infer_runs, 0);
    let f = p.engine.function("f").unwrap();
    let loaded_f = {
        let guard = p.engine.pin();
        let mi = guard.dispatch(f, &[p.t.int.clone()]).unwrap();
        p.cache.lookup(&guard, mi, &0).unwrap().unwrap()
    };
    // Redefining h invalidates the loaded h, g and f through the edges the load registered.
    p.def("h", &p.t.real, Calls::value(5));
    assert!(!loaded_f.is_valid_in(p.engine.current_world()));
    let why = loaded_f.invalidation().unwrap();
    assert!(why.to_string().contains("method h(Real) replaced"), "{why}");
    assert_eq!(p.call("f", &p.t.int), 115);
    assert_eq!(p.stats().infer_runs, 3);
}

#[test]
fn a_deleted_callee_refuses_its_callers() {
    let store = Arc::new(MemoryStore::new());
    {
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        p.call("g", &p.t.int);
        p.stats();
    }
    let p = Proc::new(&store, "1");
    chain_program(&p, 1);
    let h = p.engine.function("h").unwrap();
    let guard = p.engine.pin();
    let hm = guard
        .dispatch(h, &[p.t.int.clone()])
        .unwrap()
        .method()
        .clone();
    drop(guard);
    p.engine.delete_method(&hm).unwrap();
    // g now calls no method (worth 0 in this language).
    assert_eq!(p.call("g", &p.t.int), 10);
    let s = p.stats();
    assert_eq!((s.infer_runs, s.persist_refused_dependencies), (1, 1));
}

#[test]
fn a_method_defined_where_there_was_none_refuses_the_record_of_no_method() {
    let store = Arc::new(MemoryStore::new());
    {
        let p = Proc::new(&store, "1");
        p.declare("h");
        p.def("g", &p.t.integer, Calls::calling(10, &["h"]));
        assert_eq!(p.call("g", &p.t.int), 10);
        p.stats();
    }
    // Unchanged: loaded, the "no method" answer revalidated.
    {
        let p = Proc::new(&store, "1");
        p.declare("h");
        p.def("g", &p.t.integer, Calls::calling(10, &["h"]));
        assert_eq!(p.call("g", &p.t.int), 10);
        assert_eq!(p.stats().persist_loads, 1);
    }
    let p = Proc::new(&store, "1");
    p.def("h", &p.t.number, Calls::value(3));
    p.def("g", &p.t.integer, Calls::calling(10, &["h"]));
    assert_eq!(p.call("g", &p.t.int), 13);
    let s = p.stats();
    assert_eq!((s.persist_loads, s.persist_refused_dependencies), (0, 1));
}

#[test]
fn a_new_more_specific_method_refuses_callers_that_dispatched_past_it() {
    let store = Arc::new(MemoryStore::new());
    {
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        p.call("f", &p.t.int);
        p.stats();
    }
    let p = Proc::new(&store, "1");
    chain_program(&p, 1);
    p.def("h", &p.t.int, Calls::value(50)); // more specific than h(Real) for Int64
    assert_eq!(p.call("f", &p.t.int), 160);
    let s = p.stats();
    // g refused (its dispatch of h changed), then f (its callee g differs); h(Int64) is new.
    assert_eq!((s.infer_runs, s.persist_refused_dependencies), (3, 2));
    // A call the new method does not apply to still loads.
    p.def("g2", &p.t.real, Calls::calling(1, &["h"]));
    assert_eq!(p.call("g2", &p.t.float), 2);
}

#[test]
fn an_overlay_method_refuses_records_made_through_a_stack_without_it() {
    let store = Arc::new(MemoryStore::new());
    let setup = |with_overlay_method: bool| {
        let engine = Engine::new();
        let t = types(&engine);
        let overlay = engine.new_overlay("debug").unwrap();
        let stack = engine.stack(&[overlay, engine.global_table()]).unwrap();
        let h = engine.declare_function("h").unwrap();
        let g = engine.declare_function("g").unwrap();
        engine
            .add_method(h, &[t.real.clone()], Calls::value(1))
            .unwrap();
        if with_overlay_method {
            engine
                .add_method_to(overlay, h, &[t.int.clone()], Calls::value(9))
                .unwrap();
        }
        engine
            .add_method(g, &[t.int.clone()], Calls::calling(10, &["h"]))
            .unwrap();
        let cache = CompilerCache::with_stack_and_store(
            &engine,
            "chain",
            stack,
            Chain::new("1"),
            store.clone(),
        )
        .unwrap();
        let value = {
            let guard = engine.pin();
            let mi = guard.dispatch(g, &[t.int.clone()]).unwrap();
            *cache.compile(&guard, mi, &0).unwrap()
        };
        cache.flush_store().unwrap();
        (value, engine.stats())
    };
    assert_eq!(setup(false).0, 11);
    let (value, s) = setup(false);
    assert_eq!((value, s.infer_runs), (11, 0));
    let (value, s) = setup(true);
    assert_eq!(value, 19);
    assert_eq!((s.infer_runs, s.persist_refused_dependencies), (2, 1));
}

#[test]
fn a_type_declared_elsewhere_in_the_hierarchy_is_another_identity() {
    let store = Arc::new(MemoryStore::new());
    let run = |int_under_any: bool| {
        let engine = Engine::new();
        let real = engine
            .lattice()
            .declare_abstract("Real", &Ty::any())
            .unwrap();
        let parent = if int_under_any {
            Ty::any()
        } else {
            real.clone()
        };
        let int = engine.lattice().declare_concrete("Int64", &parent).unwrap();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[Ty::any()], Calls::value(4)).unwrap();
        let cache =
            CompilerCache::with_store(&engine, "chain", Chain::new("1"), store.clone()).unwrap();
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[int]).unwrap();
        assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 4);
        drop(guard);
        cache.flush_store().unwrap();
        engine.stats()
    };
    run(false);
    assert_eq!(run(false).persist_loads, 1);
    let s = run(true);
    assert_eq!((s.persist_loads, s.persist_misses, s.infer_runs), (0, 1, 1));
}

#[test]
fn another_compiler_version_finds_no_record_and_keeps_the_old_ones() {
    let store = Arc::new(MemoryStore::new());
    {
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        p.call("f", &p.t.int);
        p.stats();
    }
    {
        let p = Proc::new(&store, "2");
        chain_program(&p, 1);
        assert_eq!(p.call("f", &p.t.int), 111);
        let s = p.stats();
        assert_eq!((s.infer_runs, s.persist_loads, s.persist_misses), (3, 0, 3));
    }
    // Each version finds its own records.
    for version in ["1", "2"] {
        let p = Proc::new(&store, version);
        chain_program(&p, 1);
        p.call("f", &p.t.int);
        assert_eq!(p.stats().infer_runs, 0, "version {version}");
    }
}

#[test]
fn owner_keys_and_cache_tags_are_part_of_the_identity() {
    let store = Arc::new(MemoryStore::new());
    let p = Proc::new(&store, "1");
    p.def("k", &Ty::any(), Calls::value(7));
    p.call("k", &p.t.int);
    p.stats();
    let q = Proc::new(&store, "1");
    q.def("k", &Ty::any(), Calls::value(7));
    let f = q.engine.function("k").unwrap();
    let guard = q.engine.pin();
    let mi = guard.dispatch(f, &[q.t.int.clone()]).unwrap();
    assert_eq!(*q.cache.compile(&guard, mi, &1).unwrap(), 7); // key 1, stored under key 0
    let other =
        CompilerCache::with_store(&q.engine, "other", Chain::new("1"), store.clone()).unwrap();
    assert_eq!(*other.compile(&guard, mi, &0).unwrap(), 7);
    assert_eq!(*q.cache.compile(&guard, mi, &0).unwrap(), 7);
    drop(guard);
    let s = q.stats();
    assert_eq!((s.infer_runs, s.persist_loads, s.persist_misses), (2, 1, 2));
}

#[test]
fn a_callee_recompiled_to_the_same_result_still_validates_its_callers() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    {
        let p = Proc::new(&store, "1");
        chain_program(&p, 1);
        p.call("f", &p.t.int);
        p.stats();
    }
    // g's record is lost (evicted, say): g recompiles, to the same content, and f still loads.
    let puts = store.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 3); // h, g, f, in the order they finished
    store.inner.remove(&puts[1]).unwrap();
    let p = Proc::new(&store, "1");
    chain_program(&p, 1);
    assert_eq!(p.call("f", &p.t.int), 111);
    let s = p.stats();
    assert_eq!((s.infer_runs, s.persist_loads, s.persist_misses), (1, 2, 1));
    assert_eq!(p.loaded(), ["f(Int64)", "h(Int64)"]);
}

#[test]
fn recursion_loads_without_looping_in_any_call_order() {
    let store = Arc::new(MemoryStore::new());
    let program = |p: &Proc| {
        p.def("fib", &p.t.int, Calls::calling(1, &["fib"]));
        p.def("even", &p.t.int, Calls::calling(2, &["odd"]));
        p.def("odd", &p.t.int, Calls::calling(3, &["even"]));
    };
    {
        let p = Proc::new(&store, "1");
        program(&p);
        assert_eq!(p.call("fib", &p.t.int), 1);
        assert_eq!(p.call("even", &p.t.int), 5);
        p.stats();
    }
    {
        // Same order: everything loads.
        let p = Proc::new(&store, "1");
        program(&p);
        assert_eq!(p.call("fib", &p.t.int), 1);
        assert_eq!(p.call("even", &p.t.int), 5);
        assert_eq!(p.stats().infer_runs, 0);
    }
    // Entering the cycle at `odd`: `even` was stored with `odd` ready and `odd` was stored with
    // `even` in progress; now it is the other way round, so both compile, to the values a cold
    // start in this order gives (this compiler counts a callee in progress as 0). No loop.
    {
        let p = Proc::new(&store, "1");
        program(&p);
        assert_eq!(p.call("odd", &p.t.int), 5);
        assert_eq!(p.call("even", &p.t.int), 2);
        let s = p.stats();
        assert_eq!((s.infer_runs, s.persist_loads), (2, 0), "{s:#?}");
        assert_eq!(s.persist_refused_dependencies, 2);
    }
    // Their records were replaced: the same order loads now.
    let p = Proc::new(&store, "1");
    program(&p);
    assert_eq!(p.call("odd", &p.t.int), 5);
    assert_eq!(p.call("even", &p.t.int), 2);
    assert_eq!(p.stats().infer_runs, 0);
}

#[test]
fn dependencies_recorded_without_compiling_are_revalidated() {
    let store = Arc::new(MemoryStore::new());
    let program = |p: &Proc, dep_value: u64| {
        p.def("leaf", &p.t.real, Calls::value(dep_value));
        p.def(
            "user",
            &p.t.int,
            Calls {
                value: 1,
                depends: vec!["leaf".into()],
                ..Calls::default()
            },
        );
    };
    {
        let p = Proc::new(&store, "1");
        program(&p, 1);
        p.call("user", &p.t.int);
        p.stats();
    }
    {
        let p = Proc::new(&store, "1");
        program(&p, 1);
        p.call("user", &p.t.int);
        assert_eq!(p.stats().persist_loads, 1);
    }
    let p = Proc::new(&store, "1");
    program(&p, 2);
    p.call("user", &p.t.int);
    let s = p.stats();
    assert_eq!((s.persist_loads, s.persist_refused_dependencies), (0, 1));
}

#[test]
fn many_threads_missing_one_key_run_one_load() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    {
        let p = Proc::new(&store, "1");
        p.def("k", &Ty::any(), Calls::value(7));
        p.call("k", &p.t.int);
        p.stats();
    }
    store.gets.lock().unwrap().clear();
    let p = Proc::new(&store, "1");
    p.def("k", &Ty::any(), Calls::value(7));
    store
        .hold_gets
        .store(true, std::sync::atomic::Ordering::SeqCst);
    const THREADS: usize = 8;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| assert_eq!(p.call("k", &p.t.int), 7));
        }
        // One thread is inside the load; the others wait on its job.
        store.entered.wait_for(1);
        while p.engine.stats().compile_waits < (THREADS - 1) as u64 {
            std::thread::yield_now();
        }
        store.release.raise();
    });
    assert_eq!(store.total_gets(), 1);
    let s = p.stats();
    assert_eq!((s.persist_loads, s.infer_runs, s.link_runs), (1, 0, 1));
}

#[test]
fn compilers_whose_sources_cannot_be_fingerprinted_store_nothing() {
    let store = Arc::new(MemoryStore::new());
    let p = Proc::new(&store, "1");
    p.cache
        .compiler()
        .opaque
        .store(true, std::sync::atomic::Ordering::Relaxed);
    chain_program(&p, 1);
    assert_eq!(p.call("f", &p.t.int), 111);
    let s = p.stats();
    assert_eq!((s.persist_stores, s.persist_unstorable), (0, 3));
    assert_eq!(store.stats().records, 0);
}
