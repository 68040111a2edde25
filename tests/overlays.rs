//! Many overlay tables (docs/semantics.md §3): defining a method of a function in one more
//! overlay must not copy what the function has in every other overlay. Each definition used to
//! clone the function's whole per-table list, so its cost grew with the number of overlays
//! holding methods of the function. A counting allocator measures the bytes a definition
//! allocates, which such a copy shows without timing anything.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use compiler_caching::{Engine, MethodTable, Ty};

struct Counting;

/// Bytes allocated so far (never decreases).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's own arguments, which
// meet `GlobalAlloc`'s contract because the caller's do; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()), Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The bytes one definition of `f` in a fresh overlay allocates (averaged over 50), when `n`
/// overlays already hold a method of `f`.
fn bytes_per_definition(n: usize) -> usize {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    engine.set_auto_reclaim(false);
    let overlay = |i: usize| engine.new_overlay(&format!("overlay{i}")).unwrap();
    for i in 0..n {
        engine
            .add_method_to(overlay(i), f, &[int.clone()], i)
            .unwrap();
    }
    let fresh: Vec<MethodTable> = (n..n + 50).map(overlay).collect();
    let signature = [int.clone()];
    let before = ALLOCATED.load(Ordering::Relaxed);
    let methods: Vec<_> = fresh
        .iter()
        .map(|&table| engine.add_method_to(table, f, &signature, 0usize).unwrap())
        .collect();
    let bytes = (ALLOCATED.load(Ordering::Relaxed) - before) / fresh.len();
    // Each definition took effect, in its own table only.
    let guard = engine.pin();
    for (&table, method) in fresh.iter().zip(&methods) {
        let stack = engine.stack(&[table, engine.global_table()]).unwrap();
        assert_eq!(
            guard.dispatch_in(stack, f, &signature).unwrap().method(),
            method
        );
    }
    bytes
}

#[test]
fn defining_a_method_in_one_more_overlay_costs_the_same_however_many_overlays_hold_the_function() {
    let small = bytes_per_definition(500);
    let large = bytes_per_definition(4_000);
    eprintln!("bytes allocated per definition: beside 500 overlays {small}, beside 4000 {large}");
    assert!(
        large < 2 * small,
        "eight times the overlays made a definition allocate {large} bytes against {small}"
    );
}
