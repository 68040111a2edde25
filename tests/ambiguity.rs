//! Ambiguity with unions (docs/semantics.md §4), where specificity is not transitive: `f(Union{C6, A1})` beats `f(A4)`,
//! `f(A4)` beats `f(Union{C2, A2})`, and `f(Union{C6, A1})` does not beat `f(Union{C2, A2})`. A
//! call `f(C6)` is then ambiguous although one method is beaten by nobody, and a cached answer
//! must notice every mutation that changes that: the deletion of a method that only blocked the
//! would-be winner, a replacement, an overlay, in the current world and in pinned older ones,
//! and for code compiled against the ambiguous answer.

use compiler_caching::{CompilerCache, Engine, Error, Function, Method, MethodTable, Ty};
use test_support::foreign::{Foreign, Ir};

struct Setup {
    engine: Engine,
    c6: Ty,
    f: Function,
}

/// `A1`, `A2 > A4` abstract under `Any`; `C2 <: A1`, `C6 <: A4` concrete.
fn hierarchy() -> Setup {
    let engine = Engine::new();
    let l = engine.lattice();
    let a1 = l.declare_abstract("A1", &Ty::any()).unwrap();
    let a2 = l.declare_abstract("A2", &Ty::any()).unwrap();
    let a4 = l.declare_abstract("A4", &a2).unwrap();
    let _c2 = l.declare_concrete("C2", &a1).unwrap();
    let c6 = l.declare_concrete("C6", &a4).unwrap();
    let f = engine.declare_function("f").unwrap();
    Setup { engine, c6, f }
}

fn ty(e: &Engine, name: &str) -> Ty {
    e.lattice().lookup(name).unwrap()
}

/// The four methods of the example in `table`; returns the blocker `f(Union{C2, A2})`.
fn define(s: &Setup, table: MethodTable) -> Method {
    let e = &s.engine;
    let u = |a: &str, b: &str| Ty::union([ty(e, a), ty(e, b)]).unwrap();
    e.add_method_to(table, s.f, &[Ty::any()], Ir::constant(1))
        .unwrap();
    let blocker = e
        .add_method_to(table, s.f, &[u("C2", "A2")], Ir::constant(2))
        .unwrap();
    e.add_method_to(table, s.f, &[u("C6", "A1")], Ir::constant(3))
        .unwrap();
    e.add_method_to(table, s.f, &[ty(e, "A4")], Ir::constant(4))
        .unwrap();
    blocker
}

fn answer(s: &Setup, guard: &compiler_caching::Guard<'_>) -> Result<i64, Error> {
    guard
        .dispatch(s.f, &[s.c6.clone()])
        .map(|mi| mi.method().source::<Ir>().unwrap().value)
}

#[test]
fn specificity_is_not_transitive_here() {
    let s = hierarchy();
    let e = &s.engine;
    let u = |a: &str, b: &str| [Ty::union([ty(e, a), ty(e, b)]).unwrap()];
    let beats = |a: &[Ty], b: &[Ty]| compiler_caching::Lattice::is_more_specific(e.lattice(), a, b);
    let (c6a1, a4, c2a2) = (u("C6", "A1"), [ty(e, "A4")], u("C2", "A2"));
    assert!(beats(&c6a1, &a4));
    assert!(beats(&a4, &c2a2));
    assert!(!beats(&c6a1, &c2a2));
    assert!(!beats(&c2a2, &c6a1));
}

#[test]
fn the_error_names_the_would_be_winner_and_what_it_fails_to_beat() {
    let s = hierarchy();
    define(&s, s.engine.global_table());
    let err = answer(&s, &s.engine.pin()).unwrap_err();
    let Error::Ambiguous {
        function,
        argtypes,
        candidate,
        rivals,
    } = &err
    else {
        panic!("expected an ambiguity, got {err:?}");
    };
    assert_eq!(function, "f");
    assert_eq!(argtypes, "(C6)");
    assert_eq!(candidate, "f(Union{A1, C6})");
    assert_eq!(rivals, &["f(Union{A2, C2})".to_string()]);
    assert_eq!(
        err.to_string(),
        "call f(C6) is ambiguous: f(Union{A1, C6}) is not more specific than f(Union{A2, C2})"
    );
}

#[test]
fn deleting_the_blocker_resolves_a_cached_ambiguity() {
    let s = hierarchy();
    let blocker = define(&s, s.engine.global_table());
    let before = s.engine.pin();
    assert!(matches!(answer(&s, &before), Err(Error::Ambiguous { .. })));
    s.engine.delete_method(&blocker).unwrap();
    // A fresh engine with the same three live methods answers `f(Union{C6, A1})`.
    assert_eq!(answer(&s, &s.engine.pin()), Ok(3));
    // The world pinned before the deletion still sees the ambiguity.
    assert!(matches!(answer(&s, &before), Err(Error::Ambiguous { .. })));
}

#[test]
fn an_older_world_first_asked_after_the_change_answers_as_it_stood() {
    let s = hierarchy();
    let blocker = define(&s, s.engine.global_table());
    let then = s.engine.current_world();
    let old = s.engine.pin_world(then).unwrap();
    s.engine.delete_method(&blocker).unwrap();
    assert_eq!(answer(&s, &s.engine.pin()), Ok(3));
    // Never dispatched before the deletion: computed for the old world from the history.
    assert!(matches!(answer(&s, &old), Err(Error::Ambiguous { .. })));
    // And the current answer stays cached and right after the old world's query.
    assert_eq!(answer(&s, &s.engine.pin()), Ok(3));
}

#[test]
fn replacing_the_blocker_keeps_the_ambiguity_and_its_deletion_then_resolves_it() {
    let s = hierarchy();
    let e = &s.engine;
    define(&s, e.global_table());
    assert!(matches!(answer(&s, &e.pin()), Err(Error::Ambiguous { .. })));
    let sig = [Ty::union([ty(e, "C2"), ty(e, "A2")]).unwrap()];
    let replacement = e.add_method(s.f, &sig, Ir::constant(20)).unwrap();
    assert!(matches!(answer(&s, &e.pin()), Err(Error::Ambiguous { .. })));
    e.delete_method(&replacement).unwrap();
    assert_eq!(answer(&s, &e.pin()), Ok(3));
}

#[test]
fn deleting_a_method_the_candidate_beats_can_change_the_candidate() {
    // Oldest first: D = f(Union{C2, A2}), C = f(Union{C6, A1}), X = f(A4). C beats X, X beats D,
    // C does not beat D. X is neither the would-be winner nor one of its rivals, yet deleting it
    // changes the answer: D is no longer beaten by anything, and it is older than C.
    let s = hierarchy();
    let e = &s.engine;
    let u = |a: &str, b: &str| Ty::union([ty(e, a), ty(e, b)]).unwrap();
    e.add_method(s.f, &[u("C2", "A2")], Ir::constant(2))
        .unwrap();
    e.add_method(s.f, &[u("C6", "A1")], Ir::constant(3))
        .unwrap();
    let x = e.add_method(s.f, &[ty(e, "A4")], Ir::constant(4)).unwrap();
    let before = answer(&s, &e.pin()).unwrap_err();
    let Error::Ambiguous {
        candidate, rivals, ..
    } = &before
    else {
        panic!("{before:?}")
    };
    assert_eq!(candidate, "f(Union{A1, C6})");
    assert_eq!(rivals, &["f(Union{A2, C2})".to_string()]);
    e.delete_method(&x).unwrap();
    let after = answer(&s, &e.pin()).unwrap_err();
    let Error::Ambiguous {
        candidate, rivals, ..
    } = &after
    else {
        panic!("{after:?}")
    };
    assert_eq!(candidate, "f(Union{A2, C2})");
    assert_eq!(rivals, &["f(Union{A1, C6})".to_string()]);
    // A fresh engine with the same live methods gives the same error.
    let fresh = hierarchy();
    let fe = &fresh.engine;
    let fu = |a: &str, b: &str| Ty::union([ty(fe, a), ty(fe, b)]).unwrap();
    fe.add_method(fresh.f, &[fu("C2", "A2")], Ir::constant(2))
        .unwrap();
    fe.add_method(fresh.f, &[fu("C6", "A1")], Ir::constant(3))
        .unwrap();
    assert_eq!(answer(&fresh, &fe.pin()).unwrap_err(), after);
}

#[test]
fn overlays_resolve_like_the_global_table() {
    let s = hierarchy();
    let e = &s.engine;
    let overlay = e.new_overlay("gpu").unwrap();
    let stack = e.stack(&[overlay, e.global_table()]).unwrap();
    e.add_method(s.f, &[Ty::any()], Ir::constant(100)).unwrap();
    let blocker = define(&s, overlay);
    let ask = |g: &compiler_caching::Guard<'_>| {
        g.dispatch_in(stack, s.f, &[s.c6.clone()])
            .map(|mi| mi.method().source::<Ir>().unwrap().value)
    };
    assert!(matches!(ask(&e.pin()), Err(Error::Ambiguous { .. })));
    assert_eq!(
        answer(&s, &e.pin()),
        Ok(100),
        "the global table alone is not ambiguous"
    );
    e.delete_method(&blocker).unwrap();
    assert_eq!(ask(&e.pin()), Ok(3));
}

#[test]
fn code_compiled_against_the_ambiguity_is_invalidated_when_a_deletion_resolves_it() {
    let s = hierarchy();
    let e = &s.engine;
    let blocker = define(&s, e.global_table());
    // g(C6) calls f(C6): ambiguous, so the call contributes nothing (a runtime error).
    let g = e.declare_function("g").unwrap();
    let call = test_support::foreign::Call {
        function: "f".into(),
        args: vec![s.c6.clone()],
    };
    e.add_method(
        g,
        &[s.c6.clone()],
        Ir {
            value: 1000,
            calls: vec![call],
            opaque_deps: Vec::new(),
        },
    )
    .unwrap();
    let compiler = Foreign::default();
    let log = compiler.log.clone();
    let cache = CompilerCache::new(e, "C", compiler).unwrap();
    let run = || {
        let guard = e.pin();
        let mi = guard.dispatch(g, &[s.c6.clone()]).unwrap();
        *cache.compile(&guard, mi, &0).unwrap()
    };
    assert_eq!(run(), 1000);
    let world = e.current_world();
    e.delete_method(&blocker).unwrap();
    assert_eq!(run(), 1003, "recompiled against f(Union{{C6, A1}})");
    assert_eq!(log.runs("g", compiler_caching::Phase::Infer), 2);
    let mi = e
        .method_instance(g, &[s.c6.clone()], world, e.global_stack())
        .unwrap();
    let old = &cache.versions(&mi, &0)[0];
    let why = old.invalidation().expect("invalidated");
    assert!(why.trigger.contains("dispatch f(C6)"), "{why}");
}

#[test]
fn replacing_the_oldest_of_methods_that_all_lose_changes_the_candidate() {
    use compiler_caching::Lattice;
    /// Type 1 is under 2, 3 and 4 (and 0, the top); specificity is cyclic: 3 beats 2, 2 beats 4,
    /// 4 beats 3. Every method applicable to 1 is beaten, so the candidate is the oldest.
    struct Cyclic;
    impl Lattice for Cyclic {
        type Type = u8;
        fn is_subtype(&self, a: &u8, b: &u8) -> bool {
            a == b || *b == 0 || (*a == 1 && (2..=4).contains(b))
        }
        fn is_disjoint(&self, _: &u8, _: &u8) -> bool {
            false
        }
        fn is_concrete(&self, a: &u8) -> bool {
            *a == 1
        }
        fn is_more_specific(&self, s1: &[u8], s2: &[u8]) -> bool {
            matches!((s1[0], s2[0]), (3, 2) | (2, 4) | (4, 3))
        }
    }
    let answer = |r: Result<&compiler_caching::MethodInstance<Cyclic>, Error>| match r {
        Err(Error::Ambiguous {
            candidate, rivals, ..
        }) => (candidate, rivals),
        other => panic!("not ambiguous: {other:?}"),
    };
    let engine = Engine::with_lattice(Cyclic);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[2], "A").unwrap();
    engine.add_method(f, &[3], "B").unwrap();
    engine.add_method(f, &[4], "C").unwrap();
    let before = engine.pin();
    // A replaced: the same signature, a younger method, so B is now the oldest.
    engine.add_method(f, &[2], "A'").unwrap();
    // Asked first in the newest world, whose answer's range must not reach back past A'.
    let now = answer(engine.pin().dispatch(f, &[1]));
    assert_eq!(now, ("f(3)".to_string(), vec!["f(4)".to_string()]));
    let then = answer(before.dispatch(f, &[1]));
    assert_eq!(then, ("f(2)".to_string(), vec!["f(3)".to_string()]));

    // The same, behind a replacement of a method the newer answer names: C replaced, then A.
    // Asked first in the newest world (candidate B, rival C'), the answer's range reached back
    // to C's replacement, past A's, into a world whose candidate is A.
    let engine = Engine::with_lattice(Cyclic);
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[2], "A").unwrap();
    engine.add_method(f, &[3], "B").unwrap();
    engine.add_method(f, &[4], "C").unwrap();
    engine.add_method(f, &[4], "C'").unwrap();
    let before = engine.pin();
    engine.add_method(f, &[2], "A'").unwrap();
    let now = answer(engine.pin().dispatch(f, &[1]));
    assert_eq!(now, ("f(3)".to_string(), vec!["f(4)".to_string()]));
    let then = answer(before.dispatch(f, &[1]));
    assert_eq!(then, ("f(2)".to_string(), vec!["f(3)".to_string()]));
}
