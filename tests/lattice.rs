//! The default lattice's laws (docs/semantics.md §2), checked as properties over random hierarchies and
//! types, and its declaration errors (§9).

use compiler_caching::{DefaultLattice, Lattice, Ty, TyKind, TypeDecl, TypeError};
use proptest::prelude::*;

/// A random hierarchy: each entry names a parent among the earlier abstract entries (or `Any`).
fn hierarchy(spec: &[(u8, bool)]) -> (DefaultLattice, Vec<Ty>) {
    let lattice = DefaultLattice::new();
    let mut types: Vec<Ty> = Vec::new();
    for (i, &(parent, is_abstract)) in spec.iter().enumerate() {
        let abstracts: Vec<&Ty> = types
            .iter()
            .filter(|t| {
                matches!(
                    t.kind(),
                    TyKind::Named {
                        is_abstract: true,
                        ..
                    }
                )
            })
            .collect();
        let parent =
            if abstracts.is_empty() || (parent as usize).is_multiple_of(abstracts.len() + 1) {
                Ty::any()
            } else {
                abstracts[parent as usize % (abstracts.len() + 1) - 1].clone()
            };
        let name = format!("T{i}");
        let t = if is_abstract || i == 0 {
            lattice.declare_abstract(&name, &parent).unwrap()
        } else {
            lattice.declare_concrete(&name, &parent).unwrap()
        };
        types.push(t);
    }
    (lattice, types)
}

#[derive(Clone, Debug)]
enum Expr {
    Any,
    Bottom,
    Named(u8),
    Union(Vec<Expr>),
    Tuple(Vec<Expr>),
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        1 => Just(Expr::Any),
        1 => Just(Expr::Bottom),
        6 => any::<u8>().prop_map(Expr::Named),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Union),
            prop::collection::vec(inner, 1..3).prop_map(Expr::Tuple),
        ]
    })
}

fn build(e: &Expr, named: &[Ty]) -> Ty {
    match e {
        Expr::Any => Ty::any(),
        Expr::Bottom => Ty::bottom(),
        Expr::Named(i) => named[*i as usize % named.len()].clone(),
        Expr::Union(ms) => Ty::union(ms.iter().map(|m| build(m, named))).unwrap(),
        Expr::Tuple(es) => Ty::tuple(es.iter().map(|m| build(m, named))).unwrap(),
    }
}

fn spec() -> impl Strategy<Value = Vec<(u8, bool)>> {
    prop::collection::vec(any::<(u8, bool)>(), 2..10)
}

proptest! {
    // `LATTICE_CASES=N` runs a longer campaign.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("LATTICE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400)
    ))]

    #[test]
    fn reflexive_and_bounded(spec in spec(), e in expr()) {
        let (lattice, named) = hierarchy(&spec);
        let t = build(&e, &named);
        prop_assert!(lattice.is_subtype(&t, &t));
        prop_assert!(lattice.is_subtype(&Ty::bottom(), &t));
        prop_assert!(lattice.is_subtype(&t, &Ty::any()));
        if lattice.is_subtype(&Ty::any(), &t) { prop_assert!(t.is_any()); }
        if lattice.is_subtype(&t, &Ty::bottom()) { prop_assert!(t.is_bottom()); }
        // Every type of this lattice passes the check but Bottom, which no value has.
        prop_assert_eq!(lattice.check(&t).is_ok(), !t.is_bottom());
    }

    #[test]
    fn transitive(spec in spec(), a in expr(), b in expr(), c in expr()) {
        let (lattice, named) = hierarchy(&spec);
        let (a, b, c) = (build(&a, &named), build(&b, &named), build(&c, &named));
        if lattice.is_subtype(&a, &b) && lattice.is_subtype(&b, &c) {
            prop_assert!(lattice.is_subtype(&a, &c), "{a} <: {b} <: {c}");
        }
    }

    #[test]
    fn union_laws(spec in spec(), ms in prop::collection::vec(expr(), 1..4), t in expr()) {
        let (lattice, named) = hierarchy(&spec);
        let members: Vec<Ty> = ms.iter().map(|m| build(m, &named)).collect();
        let t = build(&t, &named);
        let u = Ty::union(members.clone()).unwrap();
        for m in &members {
            prop_assert!(lattice.is_subtype(m, &u), "{m} <: {u}");
        }
        // The union is the least upper bound of its members.
        let all_below = members.iter().all(|m| lattice.is_subtype(m, &t));
        prop_assert_eq!(lattice.is_subtype(&u, &t), all_below, "{} vs {}", u, t);
        // Normalization does not depend on order, and is idempotent.
        let mut reversed = members.clone();
        reversed.reverse();
        prop_assert_eq!(Ty::union(reversed).unwrap(), u.clone());
        prop_assert_eq!(Ty::union([u.clone()]).unwrap(), u.clone());
        // No member of a normalized union is a subtype of another.
        if let TyKind::Union(ms) = u.kind() {
            prop_assert!(ms.len() >= 2);
            for (i, x) in ms.iter().enumerate() {
                for (j, y) in ms.iter().enumerate() {
                    prop_assert!(i == j || !lattice.is_subtype(x, y), "{x} <: {y} in {u}");
                }
            }
        }
    }

    #[test]
    fn tuples_are_covariant(spec in spec(), a in prop::collection::vec(0u8..64, 1..4), b in prop::collection::vec(0u8..64, 1..4)) {
        let (lattice, named) = hierarchy(&spec);
        let a: Vec<Ty> = a.iter().map(|&i| named[i as usize % named.len()].clone()).collect();
        let b: Vec<Ty> = b.iter().map(|&i| named[i as usize % named.len()].clone()).collect();
        let elementwise = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| lattice.is_subtype(x, y));
        prop_assert_eq!(lattice.is_subtype(&Ty::tuple(a.clone()).unwrap(), &Ty::tuple(b.clone()).unwrap()), elementwise);
        let disjoint = a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| lattice.is_disjoint(x, y));
        prop_assert_eq!(lattice.is_disjoint(&Ty::tuple(a).unwrap(), &Ty::tuple(b).unwrap()), disjoint);
    }

    #[test]
    fn disjointness_agrees_with_concrete_members(spec in spec(), a in expr(), b in expr()) {
        let (lattice, named) = hierarchy(&spec);
        let (a, b) = (build(&a, &named), build(&b, &named));
        prop_assert_eq!(lattice.is_disjoint(&a, &b), lattice.is_disjoint(&b, &a));
        // A type below both witnesses that they meet.
        for c in &named {
            if lattice.is_subtype(c, &a) && lattice.is_subtype(c, &b) {
                prop_assert!(!lattice.is_disjoint(&a, &b), "{c} is in {a} and {b}");
            }
        }
        if lattice.is_subtype(&a, &b) && !a.is_bottom() {
            prop_assert!(!lattice.is_disjoint(&a, &b));
        }
    }

    #[test]
    fn concrete_types_are_leaves(spec in spec(), a in 0u8..64, b in 0u8..64) {
        let (lattice, named) = hierarchy(&spec);
        let (a, b) = (&named[a as usize % named.len()], &named[b as usize % named.len()]);
        if lattice.is_concrete(a) && lattice.is_subtype(b, a) {
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn unions_normalize_as_documented() {
    let l = DefaultLattice::new();
    let real = l.declare_abstract("Real", &Ty::any()).unwrap();
    let int = l.declare_concrete("Int", &real).unwrap();
    let s = l.declare_concrete("Str", &Ty::any()).unwrap();
    assert_eq!(Ty::union([real.clone(), int.clone()]).unwrap(), real);
    assert_eq!(Ty::union([int.clone()]).unwrap(), int);
    assert_eq!(Ty::union([]).unwrap(), Ty::bottom());
    assert_eq!(Ty::union([int.clone(), Ty::any()]).unwrap(), Ty::any());
    assert_eq!(
        Ty::union([s.clone(), int.clone()]).unwrap(),
        Ty::union([int.clone(), s.clone()]).unwrap()
    );
    assert_eq!(
        Ty::tuple([int.clone(), Ty::bottom()]).unwrap(),
        Ty::bottom()
    );
    // Tuples distribute over unions.
    let tu = Ty::tuple([Ty::union([int.clone(), s.clone()]).unwrap()]).unwrap();
    let ut = Ty::union([
        Ty::tuple([int.clone()]).unwrap(),
        Ty::tuple([s.clone()]).unwrap(),
    ])
    .unwrap();
    assert!(tu.is_subtype(&ut) && ut.is_subtype(&tu));
    assert!(int.is_concrete() && !real.is_concrete() && !Ty::any().is_concrete());
    assert!(Ty::tuple([int.clone(), s.clone()]).unwrap().is_concrete());
    assert_eq!(tu.to_string(), "Tuple{Union{Int, Str}}");
}

#[test]
fn declaration_errors_are_typed() {
    let l = DefaultLattice::new();
    let real = l.declare_abstract("Real", &Ty::any()).unwrap();
    let int = l.declare_concrete("Int", &real).unwrap();
    assert_eq!(
        l.declare_concrete("Int", &real),
        Err(TypeError::DuplicateType { name: "Int".into() })
    );
    assert!(matches!(
        l.declare_concrete("Sub", &int),
        Err(TypeError::ConcreteParent { .. })
    ));
    // Union{Int, Real} is Real: a valid parent.
    assert!(l
        .declare_abstract("U", &Ty::union([int.clone(), real.clone()]).unwrap())
        .is_ok());
    assert!(matches!(
        l.declare_abstract("T", &Ty::tuple([int.clone()]).unwrap()),
        Err(TypeError::InvalidParent { .. })
    ));
    assert!(matches!(
        l.declare_abstract("B", &Ty::bottom()),
        Err(TypeError::InvalidParent { .. })
    ));
    for bad in ["", "Any", "Bottom", "has space", "a{b}", "x,y"] {
        assert!(
            matches!(
                l.declare_abstract(bad, &Ty::any()),
                Err(TypeError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        l.lookup("Nope"),
        Err(TypeError::UnknownType {
            name: "Nope".into()
        })
    );

    let other = DefaultLattice::new();
    let foreign = other.declare_abstract("Real", &Ty::any()).unwrap();
    assert!(matches!(
        l.declare_concrete("F", &foreign),
        Err(TypeError::ForeignType { .. })
    ));
    assert!(matches!(
        l.check(&Ty::tuple([foreign.clone()]).unwrap()),
        Err(TypeError::ForeignType { .. })
    ));
    // Same name, different lattices: different types.
    assert_ne!(foreign, real);
    assert!(!foreign.is_subtype(&real));
}

#[test]
fn batch_declarations_detect_cycles_and_declare_nothing_on_error() {
    let l = DefaultLattice::new();
    let err = l
        .declare_all(&[
            TypeDecl::abstract_type("A", "B"),
            TypeDecl::abstract_type("B", "C"),
            TypeDecl::abstract_type("C", "A"),
            TypeDecl::abstract_type("Ok", "Any"),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        TypeError::CyclicDeclaration {
            names: vec!["A".into(), "B".into(), "C".into()]
        }
    );
    assert!(l.is_empty(), "a failed batch declares nothing");
    let err = l
        .declare_all(&[TypeDecl::abstract_type("A", "A")])
        .unwrap_err();
    assert!(matches!(err, TypeError::CyclicDeclaration { .. }));
    assert_eq!(
        l.declare_all(&[TypeDecl::concrete_type("A", "Missing")]),
        Err(TypeError::UnknownType {
            name: "Missing".into()
        })
    );
    assert!(matches!(
        l.declare_all(&[
            TypeDecl::concrete_type("A", "Any"),
            TypeDecl::concrete_type("B", "A")
        ]),
        Err(TypeError::ConcreteParent { .. })
    ));
    assert!(matches!(
        l.declare_all(&[
            TypeDecl::concrete_type("A", "Any"),
            TypeDecl::concrete_type("A", "Any")
        ]),
        Err(TypeError::DuplicateType { .. })
    ));
    assert!(l.is_empty());
    let made = l
        .declare_all(&[
            TypeDecl::concrete_type("Leaf", "Mid"),
            TypeDecl::abstract_type("Mid", "Any"),
        ])
        .unwrap();
    assert!(made[0].is_subtype(&made[1]));
}
