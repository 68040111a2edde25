//! A legal but degenerate `Hash` of the lattice's types (docs/semantics.md §2, §8): every value
//! hashes alike. The dispatch cache must stay correct and its memory linear in what it caches,
//! through dispatches in the current and older worlds, invalidation and reclamation (which walks
//! the whole cache). A lock-free table keyed by such types directly grows until every key is
//! within a probe limit of its home slot, which keys with one hash never are: a few dozen of them
//! exhausted memory. A counting allocator measures the bytes live.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicIsize, Ordering};

use compiler_caching::{Engine, Lattice};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's own arguments, which
// meet `GlobalAlloc`'s contract because the caller's do; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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
    (LIVE.load(Ordering::Relaxed), engine)
}

#[test]
fn argument_types_that_all_hash_alike_cost_memory_linear_in_the_answers_cached() {
    let start = LIVE.load(Ordering::Relaxed);
    let (small, engine) = cache_answers(250);
    let small = small - start;
    drop(engine);
    let start = LIVE.load(Ordering::Relaxed);
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
