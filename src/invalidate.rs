//! The invalidation walk and its bookkeeping.
//!
//! Edges point from a dependency to the code instances that recorded it: from a dispatch result
//! (see [`crate::dispatch`]) and from a code-cache slot `(method instance, owner)` (see
//! [`crate::cache`]). A mutation at world `w'` lowers the `max` of what it directly changes and
//! then walks the edges: every dependent computed before `w'` gets `max = w'` and its own slot's
//! dependents are visited in turn. A dependent whose `max` was already at or below `w'` is not
//! revisited, so the walk touches each affected entry once and never looks at unaffected ones: its
//! cost grows with what it invalidates, not with the size of the cache.
//!
//! Small walks run as a plain depth-first search on the mutating thread. After `PARALLEL_AFTER`
//! (4096) visits the walk moves into a rayon scope and every 512 visits hands the older half of its
//! pending work to another worker, so large graphs use every core while small ones pay nothing for
//! coordination (on two cores a naive parallel frontier is slower than a DFS).

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::cache::lock;

use crate::raw::edges::EdgeSet;
use crate::raw::validity::Validity;
use crate::world::World;

/// A dependent: a code instance, seen without its compiler's types.
pub(crate) trait Dependent: Send + Sync {
    fn core(&self) -> &CiCore;
    /// A description such as `f(Int64) in MyCompiler[2]`.
    fn label(&self) -> String;
}

pub(crate) type DepRef = Arc<dyn Dependent>;

/// A backedge: the dependent's compile world (so an invalidation can select edges without
/// touching the dependent) and a weak reference to it. Weak, because the dependent in turn holds
/// its dependencies strongly; a strong backedge would make every edge a reference cycle.
pub(crate) struct Edge {
    pub(crate) compile_world: u64,
    pub(crate) dependent: std::sync::Weak<dyn Dependent>,
}

impl Edge {
    pub(crate) fn to(dependent: &DepRef) -> Edge {
        Edge {
            compile_world: dependent.core().validity.compile_world(),
            dependent: Arc::downgrade(dependent),
        }
    }

    /// Whether the edge can never matter again: its dependent is gone or already invalid, and a
    /// further invalidation could not lower it.
    pub(crate) fn is_dead(&self) -> bool {
        self.dependent
            .upgrade()
            .is_none_or(|d| d.core().validity.max() != crate::world::OPEN)
    }
}

pub(crate) type Edges = EdgeSet<Edge>;

/// What every code instance carries for invalidation, whatever its compiler.
pub(crate) struct CiCore {
    pub(crate) validity: Validity,
    /// Why it was invalidated; the first record stands. (A once-cell's initialization cost a
    /// sixth of the invalidation walk per instance; an uncontended lock is cheaper.)
    cause: Mutex<Option<Cause>>,
    /// The edges of this instance's own slot: who depends on this instance's result.
    pub(crate) slot_edges: Arc<Edges>,
}

impl CiCore {
    pub(crate) fn new(compile_world: u64, min: u64, slot_edges: Arc<Edges>) -> Self {
        CiCore {
            validity: Validity::new(compile_world, min),
            cause: Mutex::new(None),
            slot_edges,
        }
    }

    /// Records why the instance was invalidated; the first record stands.
    pub(crate) fn set_cause(&self, cause: Cause) {
        lock(&self.cause).get_or_insert(cause);
    }

    /// The upstream instance, if the cause is `Via`, or the root cause's parts otherwise.
    fn read_cause(&self) -> Option<Result<DepRef, (u64, String, String)>> {
        // Copied out first: describing runs user code (types' `Display`), not under the lock.
        let cause = lock(&self.cause).clone()?;
        Some(match cause {
            Cause::Via(up) => Ok(up),
            Cause::Dispatch { mutation, call } => Err((
                mutation.world,
                mutation.to_string(),
                format!("dispatch {call} changed"),
            )),
            Cause::Method { mutation, instance } => Err((
                mutation.world,
                mutation.to_string(),
                format!("method of {instance} was replaced or deleted"),
            )),
            Cause::DuringCompilation { world } => Err((
                world,
                "a dependency was invalidated while this was being compiled".to_owned(),
                "published already invalid".to_owned(),
            )),
        })
    }
}

impl Drop for CiCore {
    fn drop(&mut self) {
        // A `Via` cause holds the previous link of the invalidation's path (see drop_chain).
        let cause = self
            .cause
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        crate::drop_chain::defer(cause);
    }
}

/// A code-cache slot, seen without its compiler's types.
pub(crate) trait SlotNode: Send + Sync {
    /// Lowers every version computed before `world` to end at `world`, giving each the cause
    /// `cause` makes; returns those lowered.
    fn invalidate_versions(&self, world: u64, cause: &dyn Fn() -> Cause) -> Vec<DepRef>;
    /// Who depends on this slot's results.
    fn edges(&self) -> &Arc<Edges>;
    /// Ends a hold taken when a dependency on the slot was recorded (see [`crate::raw::slot`]).
    fn release(&self);
    /// The `[defined, deleted)` worlds of the slot's method.
    fn method_range(&self) -> (u64, u64);
}

/// Something the engine describes to a user only when asked (a method, a dispatch, a method
/// instance). Kept as a value rather than a string so that a mutation runs no user code (a
/// custom lattice's `Display`) once it has begun to change the engine.
pub(crate) type Describe = Arc<dyn fmt::Display + Send + Sync>;

/// The mutation at the root of an invalidation.
pub(crate) struct Mutation {
    pub(crate) world: u64,
    /// The method added, replaced or deleted.
    pub(crate) method: Describe,
    /// `"added to"`, `"replaced in"` or `"deleted from"`.
    pub(crate) verb: &'static str,
    pub(crate) table: Arc<str>,
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "method {} {} table {}",
            self.method, self.verb, self.table
        )
    }
}

/// Why a code instance was invalidated.
#[derive(Clone)]
pub(crate) enum Cause {
    /// A dispatch result it recorded changed.
    Dispatch {
        mutation: Arc<Mutation>,
        call: Describe,
    },
    /// The method of a method instance it depends on (or its own) was replaced or deleted.
    Method {
        mutation: Arc<Mutation>,
        instance: Describe,
    },
    /// A code instance it depends on was invalidated.
    Via(DepRef),
    /// A dependency was invalidated while it was being compiled; it was published already closed.
    DuringCompilation { world: u64 },
}

/// Why a code instance stopped being valid: the mutation, what it changed, and the chain of
/// dependencies through which the invalidation reached the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    /// The world the mutation created; the instance is valid only before it.
    pub world: World,
    /// The mutation, for example `method f(Int64) added to table global`.
    pub mutation: String,
    /// The edge the mutation hit first, for example `dispatch f(Int64) via [global] changed`.
    pub trigger: String,
    /// The code instances from the one the trigger hit down to the one asked about, inclusive.
    pub chain: Vec<String>,
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "world {}: {}; {}",
            self.world, self.mutation, self.trigger
        )?;
        for link in &self.chain {
            write!(f, " -> {link}")?;
        }
        Ok(())
    }
}

/// Reconstructs the invalidation record of `dep`, if it was invalidated by a walk.
pub(crate) fn explain(dep: &dyn Dependent) -> Option<Invalidation> {
    let mut chain = vec![dep.label()];
    let mut cause = dep.core().read_cause()?;
    loop {
        match cause {
            Ok(up) => {
                chain.push(up.label());
                cause = up.core().read_cause()?;
            }
            Err((world, mutation, trigger)) => {
                chain.reverse();
                return Some(Invalidation {
                    world: World::from_raw(world),
                    mutation,
                    trigger,
                    chain,
                });
            }
        }
    }
}

/// What an invalidation let go of. Dropping a code instance can run user code (its phase results'
/// destructors), so a mutation drops these only after it has published its world.
#[derive(Default)]
pub(crate) struct Released {
    /// Every dependent the walk lowered.
    pub(crate) deps: Vec<DepRef>,
    /// Everything else: dispatch nodes, slots, method instances.
    pub(crate) other: Vec<Box<dyn Send>>,
}

/// Dependents a walk visits on the mutating thread before it brings in rayon workers.
pub(crate) const PARALLEL_AFTER: usize = 4096;

/// Dependents a worker visits between two hand-offs of part of its pending work.
const SPLIT_EVERY: usize = 512;

/// Pending entries above which a walk counts as wide (see [`parallel`]).
const WIDE: usize = 64;

/// Propagates an invalidation at `world` from `seeds` (already lowered, causes set) through every
/// transitive dependent. Returns the number of dependents it lowered (seeds not included); every
/// dependent visited, seeds included, ends in `released`.
pub(crate) fn propagate(seeds: Vec<DepRef>, world: u64, released: &mut Vec<DepRef>) -> usize {
    let mut stack = seeds;
    let mut scratch = Vec::new();
    let mut lowered = 0;
    let mut visited = 0;
    while let Some(dep) = stack.pop() {
        lowered += expand(&dep, world, &mut stack, &mut scratch);
        released.push(dep);
        visited += 1;
        if visited >= PARALLEL_AFTER && stack.len() >= 2 && rayon::current_num_threads() > 1 {
            let counter = std::sync::atomic::AtomicUsize::new(lowered);
            let done = Mutex::new(Vec::new());
            rayon::scope(|scope| parallel(scope, stack, world, &counter, &done));
            released.append(&mut done.into_inner().unwrap_or_else(|p| p.into_inner()));
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
    mut stack: Vec<DepRef>,
    world: u64,
    counter: &'s std::sync::atomic::AtomicUsize,
    released: &'s Mutex<Vec<DepRef>>,
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
    counter.fetch_add(lowered, std::sync::atomic::Ordering::Relaxed);
    lock(released).append(&mut visited);
}

/// Visits the dependents of `dep`'s slot: lowers each computed before `world` and pushes those it
/// lowered. Returns how many it lowered. `scratch` is an empty buffer reused across calls.
fn expand(dep: &DepRef, world: u64, stack: &mut Vec<DepRef>, scratch: &mut Vec<Edge>) -> usize {
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
pub(crate) fn seed_from_edges(edges: &Edges, world: u64, cause: impl Fn() -> Cause) -> Vec<DepRef> {
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
