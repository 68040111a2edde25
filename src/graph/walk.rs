//! The invalidation walk.
//!
//! A mutation at world `w'` lowers the `max` of what it directly changes and then walks the
//! edges: every dependent computed before `w'` gets `max = w'` and its own slot's dependents are
//! visited in turn. A dependent whose `max` was already at or below `w'` is not revisited, so the
//! walk touches each affected entry once and never looks at unaffected ones: its cost grows with
//! what it invalidates, not with the size of the cache.
//!
//! Small walks run as a plain depth-first search on the mutating thread. After [`PARALLEL_AFTER`]
//! visits the walk moves into a rayon scope and regularly hands part of its pending work to
//! another worker, so large graphs use every core while small ones pay nothing for coordination
//! (on two cores a naive parallel frontier is slower than a depth-first search).

use super::{Cause, DependentRef, Edge, Edges};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

/// Dependents a walk visits on the mutating thread before it brings in rayon workers.
pub(crate) const PARALLEL_AFTER: usize = 4096;

/// Dependents a worker visits between two hand-offs of part of its pending work.
const SPLIT_EVERY: usize = 512;

/// Pending entries above which a walk counts as wide (see [`parallel`]).
const WIDE: usize = 64;

/// Propagates an invalidation at `world` from `seeds` (already lowered, causes set) through every
/// transitive dependent. Returns the number of dependents it lowered (seeds not included); every
/// dependent visited, seeds included, ends in `released`.
pub(crate) fn propagate(
    seeds: Vec<DependentRef>,
    world: u64,
    released: &mut Vec<DependentRef>,
) -> usize {
    let mut stack = seeds;
    let mut scratch = Vec::new();
    let mut lowered = 0;
    let mut visited = 0;
    while let Some(dep) = stack.pop() {
        lowered += expand(&dep, world, &mut stack, &mut scratch);
        released.push(dep);
        visited += 1;
        if visited >= PARALLEL_AFTER && stack.len() >= 2 && rayon::current_num_threads() > 1 {
            let counter = AtomicUsize::new(lowered);
            let done = Mutex::new(Vec::new());
            rayon::scope(|scope| parallel(scope, stack, world, &counter, &done));
            released.append(&mut done.into_inner());
            return counter.into_inner();
        }
    }
    lowered
}

/// Walks depth-first like [`propagate`], handing its oldest pending entries (those nearest the
/// roots, so the largest unexplored parts of the graph) to rayon every [`SPLIT_EVERY`] visits.
/// Splitting by visits rather than by stack size also parallelizes graphs whose depth-first stack
/// stays short, such as trees.
fn parallel<'s>(
    scope: &rayon::Scope<'s>,
    mut stack: Vec<DependentRef>,
    world: u64,
    counter: &'s AtomicUsize,
    released: &'s Mutex<Vec<DependentRef>>,
) {
    let mut scratch = Vec::new();
    let mut visited = Vec::new();
    let mut lowered = 0;
    let mut since_split = 0;
    while let Some(dep) = stack.pop() {
        lowered += expand(&dep, world, &mut stack, &mut scratch);
        visited.push(dep);
        since_split += 1;
        if since_split >= SPLIT_EVERY && stack.len() >= 2 {
            since_split = 0;
            // A short stack is a narrow, deep walk (a tree): its oldest entry is the largest
            // unexplored part, about half of what is left. A long one is a wide frontier (a DAG):
            // half of it is about half the work.
            let give = if stack.len() > WIDE {
                stack.len() / 2
            } else {
                1
            };
            let rest = stack.split_off(give);
            let older = std::mem::replace(&mut stack, rest);
            scope.spawn(move |scope| parallel(scope, older, world, counter, released));
        }
    }
    counter.fetch_add(lowered, Ordering::Relaxed);
    released.lock().append(&mut visited);
}

/// Visits the dependents of `dep`'s slot: lowers each computed before `world` and pushes those it
/// lowered. Returns how many it lowered. `scratch` is an empty buffer reused across calls.
fn expand(
    dep: &DependentRef,
    world: u64,
    stack: &mut Vec<DependentRef>,
    scratch: &mut Vec<Edge>,
) -> usize {
    dep.core()
        .slot_edges
        .take_into(|e| e.compile_world < world, scratch);
    let mut lowered = 0;
    for edge in scratch.drain(..) {
        let Some(d) = edge.dependent.upgrade() else {
            continue;
        };
        if d.core().validity.lower(world) {
            d.core().set_cause(Cause::Via(Arc::clone(dep)));
            lowered += 1;
            stack.push(d);
        }
    }
    lowered
}

/// Lowers the dependents registered on `edges` (a dispatch node's, or a slot with no valid version)
/// with a root cause, returning those lowered as seeds for [`propagate`].
pub(crate) fn seed_from_edges(
    edges: &Edges,
    world: u64,
    cause: impl Fn() -> Cause,
) -> Vec<DependentRef> {
    let mut seeds = Vec::new();
    let taken = edges.take(|e| e.compile_world < world);
    for d in taken.into_iter().filter_map(|e| e.dependent.upgrade()) {
        if d.core().validity.lower(world) {
            d.core().set_cause(cause());
            seeds.push(d);
        }
    }
    seeds
}
