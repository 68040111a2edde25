//! A legal but degenerate `Hash` of the lattice's types (docs/semantics.md §2, §8): every value
//! hashes alike. The dispatch cache must stay correct and its memory linear in what it caches,
//! through dispatches in the current and older worlds, invalidation and reclamation (which walks
//! the whole cache). A lock-free table keyed by such types directly grows until every key is
//! within a probe limit of its home slot, which keys with one hash never are: a few dozen of them
//! exhausted memory. A counting allocator measures the bytes live.

use std::hash::{Hash, Hasher};

use compiler_caching::{Engine, Lattice};
use test_support::alloc::CountingAlloc;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc::new();

/// A type whose every value hashes alike: legal (equal values hash alike), and as bad as a hash
/// can be.
#[derive(Clone, PartialEq, Eq, Debug)]
struct T(u32);

impl Hash for T {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl std::fmt::Display for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// `T(0)` is the top type, every other number a concrete leaf under it.
struct Flat;

impl Lattice for Flat {
    type Type = T;
    fn is_subtype(&self, a: &T, b: &T) -> bool {
        a == b || b.0 == 0
    }
    fn is_disjoint(&self, a: &T, b: &T) -> bool {
        a != b && a.0 != 0 && b.0 != 0
    }
    fn is_concrete(&self, a: &T) -> bool {
        a.0 != 0
    }
}

fn source(guard: &compiler_caching::Guard<'_, Flat>, f: compiler_caching::Function, n: u32) -> u32 {
    *guard
        .dispatch(f, &[T(n)])
        .unwrap()
        .method()
        .source::<u32>()
        .unwrap()
}

/// Caches `n` answers of one function whose argument types all hash alike, in the current world
/// and in an older one, through a redefinition that changes every one of them, then reclaims.
/// Returns the bytes live afterwards, with the engine.
fn cache_answers(n: u32) -> (isize, Engine<Flat>) {
    let engine = Engine::with_lattice(Flat);
    let f = engine.declare_function("f").unwrap();
    let generic = engine.add_method(f, &[T(0)], 0u32).unwrap();
    let old = engine.pin();
    for k in 1..=n {
        assert_eq!(source(&old, f, k), 0);
    }
    engine.add_method(f, &[T(0)], 1u32).unwrap();
    assert!(!generic.is_live_in(engine.current_world()));
    {
        let now = engine.pin();
        for k in 1..=n {
            assert_eq!(source(&now, f, k), 1, "f(T{k}) in the new world");
            assert_eq!(source(&old, f, k), 0, "f(T{k}) in the old world");
        }
    }
    let census = engine.reclaim();
    assert_eq!(census.dispatch_entries, 2 * n as usize, "{census:?}");
    drop(old);
    let census = engine.reclaim();
    assert_eq!(census.dispatch_entries, n as usize, "{census:?}");
    (ALLOCATOR.live_bytes(), engine)
}

#[test]
fn argument_types_that_all_hash_alike_cost_memory_linear_in_the_answers_cached() {
    let start = ALLOCATOR.live_bytes();
    let (small, engine) = cache_answers(250);
    let small = small - start;
    drop(engine);
    let start = ALLOCATOR.live_bytes();
    let (large, engine) = cache_answers(1000);
    let large = large - start;
    drop(engine);
    eprintln!("bytes live: 250 answers {small}, 1000 answers {large}");
    let per_answer = large as f64 / 1000.0;
    assert!(
        per_answer < 4096.0,
        "{per_answer:.0} bytes per cached answer"
    );
    assert!(
        (large as f64) < 8.0 * small as f64,
        "four times the answers took {large} bytes against {small}: not linear"
    );
}
