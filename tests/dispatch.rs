//! Dispatch (docs/semantics.md §1, §3, §4, §5, §9): specificity, ambiguity, missing methods, overlays,
//! replacement and deletion, each asked in the old and the new world; typed errors.

use compiler_caching::{Engine, Error, Ty, TypeError, World};
use test_support::setups::types;

fn source(
    engine: &Engine,
    world: World,
    f: compiler_caching::Function,
    args: &[Ty],
) -> Result<&'static str, Error> {
    let guard = engine.pin_world(world)?;
    let mi = guard.dispatch(f, args)?;
    Ok(*mi.method().source::<&'static str>().unwrap())
}

#[test]
fn world_starts_at_one_and_each_mutation_advances_it_by_one() {
    let engine = Engine::new();
    let t = types(&engine);
    assert_eq!(engine.current_world(), World::FIRST);
    assert_eq!(World::FIRST.get(), 1);
    let f = engine.declare_function("f").unwrap();
    assert_eq!(
        engine.current_world().get(),
        1,
        "declarations are not table mutations"
    );
    let m = engine.add_method(f, &[t.real.clone()], "real").unwrap();
    assert_eq!(engine.current_world().get(), 2);
    assert_eq!(m.defined().get(), 2);
    let m2 = engine.add_method(f, &[t.real.clone()], "real2").unwrap();
    assert_eq!(engine.current_world().get(), 3);
    assert_eq!(
        m.deleted().map(World::get),
        Some(3),
        "replacement deletes the old method"
    );
    engine.delete_method(&m2).unwrap();
    assert_eq!(engine.current_world().get(), 4);
    // Failed mutations do not advance the world.
    assert!(engine.delete_method(&m2).is_err());
    assert!(engine
        .add_method(f, &[Ty::tuple([Ty::any()]).unwrap(), Ty::any()], "x")
        .is_ok());
    assert_eq!(engine.current_world().get(), 5);
}

#[test]
fn most_specific_applicable_method_wins() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[Ty::any()], "any").unwrap();
    engine.add_method(f, &[t.real.clone()], "real").unwrap();
    engine.add_method(f, &[t.int.clone()], "int").unwrap();
    let w = engine.current_world();
    assert_eq!(source(&engine, w, f, &[t.int.clone()]), Ok("int"));
    assert_eq!(source(&engine, w, f, &[t.float.clone()]), Ok("real"));
    assert_eq!(source(&engine, w, f, &[t.boolean.clone()]), Ok("real"));
    assert_eq!(source(&engine, w, f, &[t.string.clone()]), Ok("any"));
    // Abstract argument types dispatch too.
    assert_eq!(source(&engine, w, f, &[t.integer.clone()]), Ok("real"));
    assert_eq!(source(&engine, w, f, &[t.number.clone()]), Ok("any"));
}

#[test]
fn two_argument_specificity_and_ambiguity() {
    let engine = Engine::new();
    let t = types(&engine);
    let g = engine.declare_function("g").unwrap();
    engine
        .add_method(g, &[t.int.clone(), Ty::any()], "int,any")
        .unwrap();
    engine
        .add_method(g, &[Ty::any(), t.int.clone()], "any,int")
        .unwrap();
    let w = engine.current_world();
    assert_eq!(
        source(&engine, w, g, &[t.int.clone(), t.float.clone()]),
        Ok("int,any")
    );
    assert_eq!(
        source(&engine, w, g, &[t.float.clone(), t.int.clone()]),
        Ok("any,int")
    );
    let err = source(&engine, w, g, &[t.int.clone(), t.int.clone()]).unwrap_err();
    match &err {
        Error::Ambiguous {
            function,
            argtypes,
            candidate,
            rivals,
        } => {
            assert_eq!(function, "g");
            assert_eq!(argtypes, "(Int64, Int64)");
            // Neither beats the other; the older one is named as the would-be winner.
            assert_eq!(candidate, "g(Int64, Any)");
            assert_eq!(rivals, &["g(Any, Int64)".to_string()]);
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    assert!(err.to_string().contains("ambiguous"));
    // A method more specific than both resolves it, in the new world only.
    engine
        .add_method(g, &[t.int.clone(), t.int.clone()], "int,int")
        .unwrap();
    let w2 = engine.current_world();
    assert_eq!(
        source(&engine, w2, g, &[t.int.clone(), t.int.clone()]),
        Ok("int,int")
    );
    assert!(matches!(
        source(&engine, w, g, &[t.int.clone(), t.int.clone()]),
        Err(Error::Ambiguous { .. })
    ));
}

#[test]
fn union_signatures_follow_the_specificity_rule() {
    let engine = Engine::new();
    let t = types(&engine);
    let h = engine.declare_function("h").unwrap();
    engine.add_method(h, &[Ty::any()], "any").unwrap();
    engine
        .add_method(
            h,
            &[Ty::union([t.int.clone(), t.string.clone()]).unwrap()],
            "int|string",
        )
        .unwrap();
    let w = engine.current_world();
    assert_eq!(source(&engine, w, h, &[t.int.clone()]), Ok("int|string"));
    assert_eq!(source(&engine, w, h, &[t.string.clone()]), Ok("int|string"));
    assert_eq!(source(&engine, w, h, &[t.float.clone()]), Ok("any"));
    engine.add_method(h, &[t.real.clone()], "real").unwrap();
    let w = engine.current_world();
    assert_eq!(source(&engine, w, h, &[t.int.clone()]), Ok("int|string"));
    assert_eq!(source(&engine, w, h, &[t.float.clone()]), Ok("real"));
    engine.add_method(h, &[t.int.clone()], "int").unwrap();
    let w = engine.current_world();
    assert_eq!(source(&engine, w, h, &[t.int.clone()]), Ok("int"));
}

#[test]
fn no_method_names_function_and_argument_types() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("lonely").unwrap();
    let guard = engine.pin();
    let err = guard.dispatch(f, &[t.int.clone()]).unwrap_err();
    assert_eq!(
        err,
        Error::NoMethod {
            function: "lonely".into(),
            argtypes: "(Int64)".into()
        }
    );
    assert_eq!(err.to_string(), "no method of `lonely` matches (Int64)");
    drop(guard);
    engine.add_method(f, &[t.float.clone()], "float").unwrap();
    assert!(matches!(
        source(&engine, engine.current_world(), f, &[t.int.clone()]),
        Err(Error::NoMethod { .. })
    ));
    // Arity is part of applicability.
    assert!(matches!(
        source(
            &engine,
            engine.current_world(),
            f,
            &[t.float.clone(), t.float.clone()]
        ),
        Err(Error::NoMethod { .. })
    ));
}

#[test]
fn replacement_and_deletion_answer_per_world() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[t.real.clone()], "v1").unwrap();
    let w1 = engine.current_world();
    // Union{Real, Int64} normalizes to Real: type-equal, so this replaces v1.
    let v2 = engine
        .add_method(
            f,
            &[Ty::union([t.real.clone(), t.int.clone()]).unwrap()],
            "v2",
        )
        .unwrap();
    let w2 = engine.current_world();
    assert_eq!(source(&engine, w1, f, &[t.int.clone()]), Ok("v1"));
    assert_eq!(source(&engine, w2, f, &[t.int.clone()]), Ok("v2"));
    engine.delete_method(&v2).unwrap();
    let w3 = engine.current_world();
    assert!(matches!(
        source(&engine, w3, f, &[t.int.clone()]),
        Err(Error::NoMethod { .. })
    ));
    assert_eq!(source(&engine, w2, f, &[t.int.clone()]), Ok("v2"));
    assert_eq!(source(&engine, w1, f, &[t.int.clone()]), Ok("v1"));
    assert!(!v2.is_live_in(w3) && v2.is_live_in(w2) && !v2.is_live_in(w1));
    // Deleting a method reveals the less specific one again.
    engine.add_method(f, &[Ty::any()], "any").unwrap();
    let int_m = engine.add_method(f, &[t.int.clone()], "int").unwrap();
    assert_eq!(
        source(&engine, engine.current_world(), f, &[t.int.clone()]),
        Ok("int")
    );
    engine.delete_method(&int_m).unwrap();
    assert_eq!(
        source(&engine, engine.current_world(), f, &[t.int.clone()]),
        Ok("any")
    );
}

#[test]
fn overlays_win_when_applicable_and_fall_through_otherwise() {
    let engine = Engine::new();
    let t = types(&engine);
    let kernel = engine.declare_function("device_kernel").unwrap();
    let overlay = engine.new_overlay("device").unwrap();
    let stack = engine.stack(&[overlay, engine.global_table()]).unwrap();
    assert_eq!(
        stack,
        engine.stack(&[overlay, engine.global_table()]).unwrap(),
        "stacks are interned"
    );
    engine
        .add_method(kernel, &[Ty::any()], "global any")
        .unwrap();
    engine
        .add_method_to(overlay, kernel, &[t.int.clone()], "overlay int")
        .unwrap();
    let guard = engine.pin();
    let via = |args: &[Ty]| {
        *guard
            .dispatch_in(stack, kernel, args)
            .unwrap()
            .method()
            .source::<&str>()
            .unwrap()
    };
    assert_eq!(via(&[t.int.clone()]), "overlay int");
    assert_eq!(via(&[t.float.clone()]), "global any");
    // The global stack never sees overlay methods.
    assert_eq!(
        *guard
            .dispatch(kernel, &[t.int.clone()])
            .unwrap()
            .method()
            .source::<&str>()
            .unwrap(),
        "global any"
    );
    // The first table with an applicable method decides, even if a later one is more specific.
    drop(guard);
    engine
        .add_method_to(overlay, kernel, &[Ty::any()], "overlay any")
        .unwrap();
    engine
        .add_method(kernel, &[t.float.clone()], "global float")
        .unwrap();
    let guard = engine.pin();
    assert_eq!(
        *guard
            .dispatch_in(stack, kernel, &[t.float.clone()])
            .unwrap()
            .method()
            .source::<&str>()
            .unwrap(),
        "overlay any"
    );
}

#[test]
fn method_instances_are_interned_and_cached() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[t.real.clone()], "real").unwrap();
    let guard = engine.pin();
    let a = guard.dispatch(f, &[t.int.clone()]).unwrap().clone();
    let misses = engine.stats().dispatch_misses;
    let b = guard.dispatch(f, &[t.int.clone()]).unwrap().clone();
    assert_eq!(a, b);
    assert_eq!(a.id(), b.id());
    assert_eq!(
        engine.stats().dispatch_misses,
        misses,
        "the second dispatch is a cache hit"
    );
    // A guard tallies its hits and adds them to the engine's counters when it is dropped.
    let hits = engine.stats().dispatch_hits;
    let counted = engine.pin();
    counted.dispatch(f, &[t.int.clone()]).unwrap();
    counted.dispatch(f, &[t.int.clone()]).unwrap();
    assert_eq!(engine.stats().dispatch_hits, hits, "not yet added");
    drop(counted);
    assert_eq!(engine.stats().dispatch_hits, hits + 2);
    let c = guard.dispatch(f, &[t.float.clone()]).unwrap().clone();
    assert_ne!(a, c, "different argument types, different instances");
    assert_eq!(a.method(), c.method());
    assert_eq!(a.argtypes(), &[t.int.clone()]);
    let via_seed_api = engine
        .method_instance(
            f,
            &[t.int.clone()],
            engine.current_world(),
            engine.global_stack(),
        )
        .unwrap();
    assert_eq!(via_seed_api, a);
    assert_eq!(a.to_string(), "f(Int64)");
}

#[test]
fn bad_input_gives_typed_errors() {
    let engine = Engine::new();
    let t = types(&engine);
    let other = Engine::new();
    let foreign_f = other.declare_function("f").unwrap();
    let foreign_ty = other
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let foreign_table = other.new_overlay("o").unwrap();

    let f = engine.declare_function_with_arity("f", 1).unwrap();
    assert!(matches!(
        engine.declare_function("f"),
        Err(Error::DuplicateFunction { .. })
    ));
    assert!(matches!(
        engine.declare_function(""),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        engine.function("nope"),
        Err(Error::UnknownFunction { .. })
    ));
    assert!(matches!(
        engine.add_method(foreign_f, &[t.int.clone()], ()),
        Err(Error::UnknownFunction { .. })
    ));
    assert_eq!(
        engine
            .add_method(f, &[t.int.clone(), t.int.clone()], ())
            .unwrap_err(),
        Error::ArityMismatch {
            function: "f".into(),
            expected: 1,
            found: 2
        }
    );
    assert!(matches!(
        engine.add_method(f, &[foreign_ty.clone()], ()),
        Err(Error::Type(TypeError::ForeignType { .. }))
    ));
    assert!(matches!(
        engine.add_method_to(foreign_table, f, &[t.int.clone()], ()),
        Err(Error::UnknownTable { .. })
    ));
    assert!(matches!(
        engine.stack(&[foreign_table]),
        Err(Error::UnknownTable { .. })
    ));
    assert!(matches!(engine.stack(&[]), Err(Error::UnknownTable { .. })));
    assert_eq!(
        engine.current_world(),
        World::FIRST,
        "no failed call mutated anything"
    );

    let m = engine.add_method(f, &[t.int.clone()], ()).unwrap();
    let guard = engine.pin();
    assert!(matches!(
        guard.dispatch(foreign_f, &[t.int.clone()]),
        Err(Error::UnknownFunction { .. })
    ));
    assert!(matches!(
        guard.dispatch(f, &[]),
        Err(Error::ArityMismatch { .. })
    ));
    assert!(matches!(
        guard.dispatch(f, &[foreign_ty]),
        Err(Error::Type(TypeError::ForeignType { .. }))
    ));
    assert!(matches!(
        guard.dispatch_in(other.global_stack(), f, &[t.int.clone()]),
        Err(Error::UnknownTable { .. })
    ));
    drop(guard);
    let foreign_m = other.add_method(foreign_f, &[Ty::any()], ()).unwrap();
    assert!(matches!(
        engine.delete_method(&foreign_m),
        Err(Error::MethodNotLive { .. })
    ));
    engine.delete_method(&m).unwrap();
    assert!(matches!(
        engine.delete_method(&m),
        Err(Error::MethodNotLive { .. })
    ));
    assert!(matches!(
        engine.pin_world(future_world()),
        Err(Error::FutureWorld { .. })
    ));
    // Nothing above disturbed the engine.
    let g = engine.declare_function("g").unwrap();
    engine.add_method(g, &[Ty::any()], "ok").unwrap();
    assert_eq!(
        source(&engine, engine.current_world(), g, &[t.int.clone()]),
        Ok("ok")
    );
}

/// A world this test's engine has not reached: worlds are only made by an engine, so ask a
/// scratch engine that has made more of them.
fn future_world() -> World {
    let scratch = Engine::new();
    let f = scratch.declare_function("f").unwrap();
    for _ in 0..100 {
        scratch.add_method(f, &[Ty::any()], ()).unwrap();
    }
    scratch.current_world()
}

#[test]
fn custom_lattices_plug_in() {
    use compiler_caching::Lattice;
    /// Types are bit sets; subtyping is inclusion.
    struct Bits;
    impl Lattice for Bits {
        type Type = u8;
        fn is_subtype(&self, a: &u8, b: &u8) -> bool {
            a & !b == 0
        }
        fn is_disjoint(&self, a: &u8, b: &u8) -> bool {
            a & b == 0
        }
        fn is_concrete(&self, a: &u8) -> bool {
            a.count_ones() == 1
        }
    }
    let engine = Engine::with_lattice(Bits);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[0b1111], "wide").unwrap();
    engine.add_method(f, &[0b0011], "narrow").unwrap();
    engine.add_method(f, &[0b0110], "other").unwrap();
    let g = engine.pin();
    assert_eq!(
        g.dispatch(f, &[0b0001]).unwrap().method().source::<&str>(),
        Some(&"narrow")
    );
    assert_eq!(
        g.dispatch(f, &[0b1000]).unwrap().method().source::<&str>(),
        Some(&"wide")
    );
    assert!(matches!(
        g.dispatch(f, &[0b0010]),
        Err(Error::Ambiguous { .. })
    ));
    assert!(matches!(
        g.dispatch(f, &[0b1_0000]),
        Err(Error::NoMethod { .. })
    ));
}

#[test]
fn two_engines_share_nothing() {
    let a = Engine::new();
    let b = Engine::new();
    let ta = types(&a);
    let tb = types(&b);
    let fa = a.declare_function("f").unwrap();
    let fb = b.declare_function("f").unwrap();
    a.add_method(fa, &[Ty::any()], "a").unwrap();
    a.add_method(fa, &[ta.int.clone()], "a int").unwrap();
    // Same names, separate universes: worlds, tables and caches are independent.
    assert_eq!(a.current_world().get(), 3);
    assert_eq!(b.current_world(), World::FIRST);
    let gb = b.pin();
    assert!(matches!(
        gb.dispatch(fb, &[tb.int.clone()]),
        Err(Error::NoMethod { .. })
    ));
    // Handles and types of one engine are not accepted by the other.
    assert!(matches!(
        gb.dispatch(fa, &[tb.int.clone()]),
        Err(Error::UnknownFunction { .. })
    ));
    assert!(matches!(
        gb.dispatch(fb, &[ta.int.clone()]),
        Err(Error::Type(TypeError::ForeignType { .. }))
    ));
    assert_ne!(ta.int, tb.int);
    drop(gb);
    b.add_method(fb, &[Ty::any()], "b").unwrap();
    assert_eq!(
        source(&a, a.current_world(), fa, &[ta.int.clone()]),
        Ok("a int")
    );
    assert_eq!(
        source(&b, b.current_world(), fb, &[tb.int.clone()]),
        Ok("b")
    );
}

#[test]
fn an_old_world_answer_that_changed_later_is_computed_once_and_then_served_from_the_cache() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[t.real.clone()], "real").unwrap();
    let old = engine.pin();
    let w_old = old.world();
    // Two more worlds in which f(Int64) is still f(::Real), then one that changes it.
    let g = engine.declare_function("g").unwrap();
    engine.add_method(g, &[t.int.clone()], "g1").unwrap();
    let middle = engine.pin();
    engine.add_method(g, &[t.int.clone()], "g2").unwrap();
    engine.add_method(f, &[t.int.clone()], "int").unwrap();
    let new = engine.current_world();

    let misses = || engine.stats().dispatch_misses;
    let hits_of = |guard: compiler_caching::Guard<'_>| {
        drop(guard); // a guard's hits are counted when it is dropped
        engine.stats().dispatch_hits
    };
    let before = misses();
    let mi = old.dispatch(f, &[t.int.clone()]).unwrap().clone();
    assert_eq!(mi.method().source::<&str>(), Some(&"real"));
    assert_eq!(
        misses(),
        before + 1,
        "the first old-world dispatch computes"
    );

    // The same call in the same world, again: a hit, the very same answer.
    let hits = engine.stats().dispatch_hits;
    for _ in 0..3 {
        assert_eq!(old.dispatch(f, &[t.int.clone()]).unwrap(), &mi);
    }
    assert_eq!(
        misses(),
        before + 1,
        "a repeated old-world dispatch recomputed"
    );
    // The answer holds over the worlds it was computed for: another of them is served too.
    assert_eq!(middle.dispatch(f, &[t.int.clone()]).unwrap(), &mi);
    assert_eq!(
        misses(),
        before + 1,
        "an answer's other worlds recomputed it"
    );
    assert_eq!(hits_of(middle), hits + 1);
    // Other worlds and other calls still get their own answers.
    assert_eq!(source(&engine, new, f, &[t.int.clone()]), Ok("int"));
    let real = old.dispatch(f, &[t.real.clone()]).unwrap();
    assert_eq!(real.method().source::<&str>(), Some(&"real"));
    assert_eq!(hits_of(old), hits + 4);

    // Once no guard can ask for the old worlds, reclamation drops the old answer.
    let kept = engine.census().dispatch_entries;
    let census = engine.reclaim();
    assert!(
        census.dispatch_entries < kept,
        "{census:?} kept the old-world answer ({kept} before)"
    );
    assert!(matches!(
        engine.pin_world(w_old),
        Err(Error::WorldNotRetained { .. })
    ));
}

/// Dispatch by an interned signature answers exactly as by slice: in the current world after each
/// mutation, in an older pinned world, through an overlay, and with a signature interned by
/// another engine (a plain tuple there, compared by value).
#[test]
fn dispatch_by_signature_answers_as_by_slice_across_mutations_worlds_and_engines() {
    let engine = Engine::new();
    let t = types(&engine);
    let f = engine.declare_function("f").unwrap();
    let any = engine.add_method(f, &[Ty::any()], "any").unwrap();
    let site = engine.signature(&[t.int.clone()]);
    assert_eq!(site, engine.signature(&[t.int.clone()]), "interned once");
    assert_ne!(site, engine.signature(&[t.float.clone()]));
    assert_eq!(site.types(), &[t.int.clone()]);

    let before = engine.pin();
    assert_eq!(before.dispatch_signature(f, &site).unwrap().method(), &any);
    let int = engine.add_method(f, &[t.int.clone()], "int").unwrap();
    // The answer cached above (by signature) is invalidated like any other.
    let now = engine.pin();
    assert_eq!(now.dispatch_signature(f, &site).unwrap().method(), &int);
    assert_eq!(now.dispatch(f, &[t.int.clone()]).unwrap().method(), &int);
    // The older world still answers as it stood, by either path.
    assert_eq!(before.dispatch_signature(f, &site).unwrap().method(), &any);
    assert_eq!(before.dispatch(f, &[t.int.clone()]).unwrap().method(), &any);
    drop((before, now));

    // Cached by slice first, then found by signature (and the other way round for `Float`).
    let float_site = engine.signature(&[t.float.clone()]);
    let g = engine.pin();
    assert_eq!(g.dispatch(f, &[t.int.clone()]).unwrap().method(), &int);
    assert_eq!(g.dispatch_signature(f, &site).unwrap().method(), &int);
    assert_eq!(g.dispatch_signature(f, &float_site).unwrap().method(), &any);
    assert_eq!(g.dispatch(f, &[t.float.clone()]).unwrap().method(), &any);

    // Deleting the method the answer names brings the general one back.
    drop(g);
    engine.delete_method(&int).unwrap();
    assert_eq!(
        engine.pin().dispatch_signature(f, &site).unwrap().method(),
        &any
    );

    // Errors are the same errors.
    let two = engine.signature(&[t.int.clone(), t.int.clone()]);
    let g = engine.pin();
    assert_eq!(
        g.dispatch_signature(f, &two).unwrap_err(),
        g.dispatch(f, &[t.int.clone(), t.int.clone()]).unwrap_err()
    );

    // A signature interned by another engine with the same lattice types.
    let other = Engine::new();
    let foreign_site = other.signature(&[t.int.clone()]);
    assert_eq!(
        g.dispatch_signature(f, &foreign_site).unwrap().method(),
        &any
    );
}

/// `P = f(Tuple{Union{C1, C2}})` and `Q = f(Union{Tuple{C1}, Tuple{C2}})` are type-equal (one
/// lineage) but rank differently against `M = f(Union{Tuple{C1}, C3})`: M strictly beats P, and
/// neither M nor Q beats the other. Returns the engine, `f`, `Tuple{C1}` and the three signatures.
fn differently_written() -> (Engine, compiler_caching::Function, Ty, [Vec<Ty>; 3]) {
    let engine = Engine::new();
    let l = engine.lattice();
    let c1 = l.declare_concrete("C1", &Ty::any()).unwrap();
    let c2 = l.declare_concrete("C2", &Ty::any()).unwrap();
    let c3 = l.declare_concrete("C3", &Ty::any()).unwrap();
    let t1 = Ty::tuple([c1.clone()]).unwrap();
    let t2 = Ty::tuple([c2.clone()]).unwrap();
    let p = vec![Ty::tuple([Ty::union([c1, c2]).unwrap()]).unwrap()];
    let q = vec![Ty::union([t1.clone(), t2]).unwrap()];
    let m = vec![Ty::union([t1.clone(), c3]).unwrap()];
    assert!(compiler_caching::sig_equal(l, &p, &q) && p != q);
    let f = engine.declare_function("f").unwrap();
    (engine, f, t1, [p, q, m])
}

#[test]
fn a_lineage_written_differently_later_is_ranked_by_how_it_is_written_then() {
    // A method deleted and defined again, written differently, starts a new run of its lineage.
    // An answer's range used to be bounded by judging every run by the first one's signature:
    // M was taken to beat Q because it beats P, so f(Tuple{C1}) answered M across Q's definition.
    let ambiguous = |r: Result<&compiler_caching::MethodInstance, Error>| {
        matches!(r, Err(Error::Ambiguous { .. }))
    };
    // The answer's end: asked first in the world before Q is defined, then in Q's.
    let (engine, f, t1, [p, q, m]) = differently_written();
    let first = engine.add_method(f, &p, "P").unwrap();
    engine.delete_method(&first).unwrap();
    engine.add_method(f, &m, "M").unwrap();
    let before = engine.pin();
    engine.add_method(f, &q, "Q").unwrap();
    assert_eq!(
        before
            .dispatch(f, std::slice::from_ref(&t1))
            .unwrap()
            .method()
            .source::<&str>(),
        Some(&"M")
    );
    assert!(ambiguous(
        engine.pin().dispatch(f, std::slice::from_ref(&t1))
    ));
    // The answer's start: asked first in the world after Q is deleted, then in the one before.
    let (engine, f, t1, [p, q, m]) = differently_written();
    let first = engine.add_method(f, &p, "P").unwrap();
    engine.delete_method(&first).unwrap();
    let second = engine.add_method(f, &q, "Q").unwrap();
    engine.add_method(f, &m, "M").unwrap();
    let before = engine.pin();
    engine.delete_method(&second).unwrap();
    assert_eq!(
        engine
            .pin()
            .dispatch(f, std::slice::from_ref(&t1))
            .unwrap()
            .method()
            .source::<&str>(),
        Some(&"M")
    );
    assert!(ambiguous(before.dispatch(f, std::slice::from_ref(&t1))));
}
