//! The default lattice's laws on hierarchies and types decoded from the input.
#![no_main]

use compiler_caching::{DefaultLattice, Lattice, Ty, TyKind};
use libfuzzer_sys::fuzz_target;

struct Bytes<'a>(std::slice::Iter<'a, u8>);

impl Bytes<'_> {
    fn next(&mut self) -> usize {
        self.0.next().copied().unwrap_or(0) as usize
    }
}

fn ty(b: &mut Bytes<'_>, named: &[Ty], depth: usize) -> Ty {
    match b.next() % if depth == 0 { 3 } else { 5 } {
        0 => named[b.next() % named.len()].clone(),
        1 => {
            if b.next().is_multiple_of(2) {
                Ty::any()
            } else {
                Ty::bottom()
            }
        }
        2 => named[b.next() % named.len()].clone(),
        3 => {
            let n = 2 + b.next() % 2;
            Ty::union((0..n).map(|_| ty(b, named, depth - 1)).collect::<Vec<_>>()).unwrap()
        }
        _ => {
            let n = 1 + b.next() % 2;
            Ty::tuple((0..n).map(|_| ty(b, named, depth - 1)).collect::<Vec<_>>()).unwrap()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data.iter());
    let lattice = DefaultLattice::new();
    let mut named: Vec<Ty> = Vec::new();
    for i in 0..(2 + b.next() % 8) {
        let abstracts: Vec<Ty> = named
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
            .cloned()
            .collect();
        let parent = match b.next() % (abstracts.len() + 1) {
            0 => Ty::any(),
            k => abstracts[k - 1].clone(),
        };
        let t = if i == 0 || b.next() % 2 == 0 {
            lattice.declare_abstract(&format!("T{i}"), &parent)
        } else {
            lattice.declare_concrete(&format!("T{i}"), &parent)
        };
        named.push(t.expect("valid declaration"));
    }
    let ts: Vec<Ty> = (0..3).map(|_| ty(&mut b, &named, 2)).collect();
    let (x, y, z) = (&ts[0], &ts[1], &ts[2]);
    let sub = |a: &Ty, b: &Ty| lattice.is_subtype(a, b);
    assert!(sub(x, x), "reflexive: {x}");
    assert!(sub(&Ty::bottom(), x) && sub(x, &Ty::any()), "bounds: {x}");
    if sub(x, y) && sub(y, z) {
        assert!(sub(x, z), "transitive: {x} <: {y} <: {z}");
    }
    let u = Ty::union([x.clone(), y.clone()]).unwrap();
    assert!(sub(x, &u) && sub(y, &u), "members below their union: {u}");
    assert_eq!(
        sub(&u, z),
        sub(x, z) && sub(y, z),
        "union is the least upper bound: {u}, {z}"
    );
    assert_eq!(Ty::union([y.clone(), x.clone()]).unwrap(), u, "union order");
    assert_eq!(
        lattice.is_disjoint(x, y),
        lattice.is_disjoint(y, x),
        "disjointness is symmetric"
    );
    if sub(x, y) && !x.is_bottom() {
        assert!(
            !lattice.is_disjoint(x, y),
            "a subtype meets its supertype: {x} {y}"
        );
    }
    assert!(
        sub(
            &Ty::tuple([x.clone()]).unwrap(),
            &Ty::tuple([u.clone()]).unwrap()
        ),
        "tuples are covariant"
    );
});
