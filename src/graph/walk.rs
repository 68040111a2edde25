//! The invalidation walk.
//!
//! A mutation at world `w'` lowers the `max` of what it directly changes and then walks the
//! edges: every dependent computed before `w'` gets `max = w'` and its own dependents are visited in
//! turn. A dependent whose `max` was already at or below `w'` is not revisited, so the
//! walk touches each affected entry once and never looks at unaffected ones: its cost grows with
//! what it invalidates, not with the size of the cache.
//!
//! Small walks run as a plain depth-first search on the mutating thread. After [`PARALLEL_AFTER`]
//! visits the walk moves into a rayon scope and regularly hands part of its pending work to
//! another worker, so large graphs use every core while small ones pay nothing for coordination
//! (on two cores a naive parallel frontier is slower than a depth-first search).

use super::nodes::Nodes;
use super::{Cause, Edges, Graph, NodeRef};
use crate::sync::Mutex;
use std::cell::Cell;

/// Dependents a walk visits on the mutating thread before it brings in rayon workers.
pub(crate) const PARALLEL_AFTER: usize = 4096;

/// Dependents a worker visits between two hand-offs of part of its pending work.
const SPLIT_EVERY: usize = 512;

/// Pending entries above which a walk counts as wide (see [`parallel`]).
const WIDE: usize = 64;

/// What walks lowered: how many, and (with the `tracing` feature, while invalidations are traced)
/// which, for the trace.
#[cfg_attr(not(feature = "tracing"), derive(Default))]
pub(crate) struct Lowered {
    pub(crate) count: usize,
    #[cfg(feature = "tracing")]
    pub(crate) nodes: Vec<NodeRef>,
    /// Whether to keep `nodes`: decided once per walk, so that a build with the feature but no
    /// subscriber for the events does not grow (and copy between workers) a list nobody reads.
    #[cfg(feature = "tracing")]
    record: bool,
}

#[cfg(feature = "tracing")]
impl Default for Lowered {
    fn default() -> Self {
        Lowered {
            count: 0,
            nodes: Vec::new(),
            record: tracing::enabled!(
                target: "compiler_caching::invalidation",
                tracing::Level::DEBUG
            ),
        }
    }
}

impl Lowered {
    /// An empty record for a worker of the same walk as `self`.
    fn sibling(&self) -> Self {
        Lowered {
            count: 0,
            #[cfg(feature = "tracing")]
            nodes: Vec::new(),
            #[cfg(feature = "tracing")]
            record: self.record,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, _node: NodeRef) {
        self.count += 1;
        #[cfg(feature = "tracing")]
        if self.record {
            self.nodes.push(_node);
        }
    }

    pub(crate) fn extend(&mut self, nodes: &[NodeRef]) {
        self.count += nodes.len();
        #[cfg(feature = "tracing")]
        if self.record {
            self.nodes.extend_from_slice(nodes);
        }
    }

    fn append(&mut self, other: Lowered) {
        self.count += other.count;
        #[cfg(feature = "tracing")]
        self.nodes.extend(other.nodes);
    }
}

/// Propagates an invalidation at `world` from `seeds` (already lowered, causes set) through every
/// transitive dependent, adding each dependent it lowers (seeds not included) to `lowered`.
pub(crate) fn propagate(graph: &Graph, seeds: Vec<NodeRef>, world: u64, lowered: &mut Lowered) {
    let view = graph.view();
    let view = view.nodes();
    let mut stack = graph.take_stack();
    stack.extend(seeds);
    let mut visited = 0;
    let workers = rayon::current_num_threads() > 1;
    while let Some(node) = stack.pop() {
        expand(view, node, world, &mut stack, lowered);
        visited += 1;
        if workers && visited >= PARALLEL_AFTER && stack.len() >= 2 {
            let done = Mutex::new(lowered.sibling());
            let pending = &stack;
            rayon::scope(|scope| parallel(scope, view, pending, world, &done));
            lowered.append(done.into_inner());
            break;
        }
    }
    graph.give_stack(stack);
}

/// Largest pending stack a thread keeps for its next walk.
pub(crate) const KEEP_STACK: usize = 1 << 20;

thread_local! {
    /// A rayon worker's pending stack, kept between the jobs of a walk and between walks. A job
    /// that grew a fresh stack paid `realloc` as it went, and in a process that has just freed
    /// much memory (reclaimed code) glibc's `malloc` sorts its free lists first: the worker that
    /// took a split spent most of its time there and a tree walked on 2 threads ran at half the
    /// speed of 1 (`perf record` on `perf --bin walk`).
    static WORKER_STACK: Cell<Vec<NodeRef>> = const { Cell::new(Vec::new()) };
}

/// Walks depth-first like [`propagate`] from `given`, handing its oldest pending entries (those
/// nearest the roots, so the largest unexplored parts of the graph) to rayon every
/// [`SPLIT_EVERY`] visits. Splitting by visits rather than by stack size also parallelizes graphs
/// whose depth-first stack stays short, such as trees.
fn parallel<'s>(
    scope: &rayon::Scope<'s>,
    view: Nodes<'s>,
    given: &[NodeRef],
    world: u64,
    done: &'s Mutex<Lowered>,
) {
    let mut stack = WORKER_STACK.take();
    stack.extend_from_slice(given);
    let mut lowered = done.lock().sibling();
    let mut since_split = 0;
    while let Some(node) = stack.pop() {
        expand(view, node, world, &mut stack, &mut lowered);
        since_split += 1;
        if since_split >= SPLIT_EVERY && stack.len() >= 2 {
            since_split = 0;
            // A short stack is a narrow, deep walk (a tree): its oldest entry is the largest
            // unexplored part, about half of what is left. A long one is a wide frontier (a DAG):
            // half of it is about half the work. The entries given away are copied out, so this
            // worker keeps the stack it has grown.
            let give = if stack.len() > WIDE {
                stack.len() / 2
            } else {
                1
            };
            let older: Vec<NodeRef> = stack.drain(..give).collect();
            scope.spawn(move |scope| parallel(scope, view, &older, world, done));
        }
    }
    done.lock().append(lowered);
    if stack.capacity() <= KEEP_STACK {
        WORKER_STACK.set(stack);
    }
}

/// Lowers the dependents of `node` computed before `world`, records where their invalidation came
/// from, and pushes them.
#[inline]
fn expand(
    view: Nodes<'_>,
    node: NodeRef,
    world: u64,
    stack: &mut Vec<NodeRef>,
    lowered: &mut Lowered,
) {
    if let Some(n) = view.live(node) {
        n.lower_dependents(node, world, view, |d| {
            lowered.push(d);
            stack.push(d);
        });
    }
}

/// Lowers the dependents registered on `edges` (a dispatch node's, or a slot's while nothing is
/// compiled for it) with a root cause, returning those lowered as seeds for [`propagate`].
pub(crate) fn seed_from_edges(
    graph: &Graph,
    edges: &Edges,
    world: u64,
    cause: impl Fn() -> Cause,
) -> Vec<NodeRef> {
    let mut seeds = Vec::new();
    {
        let view = graph.view();
        let view = view.nodes();
        // Dead entries are taken too, and dropped.
        let taken = edges.take(|d| view.live(*d).is_none_or(|n| n.compile_world() < world));
        for d in taken {
            if view.live(d).is_some_and(|n| n.lower(world)) {
                seeds.push(d);
            }
        }
    }
    for &d in &seeds {
        // Causes hold descriptions (user values): set outside the table's lock.
        graph.set_root(d, cause());
    }
    seeds
}
