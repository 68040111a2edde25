//! The invalidation walk.
//!
//! A mutation at world `w'` lowers the `max` of what it directly changes and then walks the
//! edges: every dependent computed before `w'` gets `max = w'` and its own dependents are visited in
//! turn. A dependent whose `max` was already at or below `w'` is not revisited, so the
//! walk touches each affected entry once and never looks at unaffected ones: its cost grows with
//! what it invalidates, not with the size of the cache.
//!
//! Small walks run as a plain depth-first search on the mutating thread. After [`PARALLEL_AFTER`]
//! visits the walk regularly offers part of its pending work to helpers it starts on the other
//! threads of the current rayon pool, so large graphs use every core while small ones pay nothing
//! for coordination (on two cores a naive parallel frontier is slower than a depth-first search).
//! The mutating thread never waits inside rayon, where it could pick up a queued job that mutates
//! the same engine and deadlock on its own writer lock (see `crate::raw::share`).

use super::nodes::Nodes;
use super::{Cause, Edges, Graph, NodeRef};
use crate::raw::share::{Offered, Share};
use crate::sync::Arc;
use std::cell::Cell;

/// Dependents a walk visits on the mutating thread before it brings in rayon workers.
pub(crate) const PARALLEL_AFTER: usize = 4096;

/// Dependents a worker visits between two hand-offs of part of its pending work.
const SPLIT_EVERY: usize = 512;

/// Pending entries above which a walk counts as wide (see [`Walk::offer`]).
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
pub(crate) fn propagate(
    graph: &Arc<Graph>,
    seeds: Vec<NodeRef>,
    world: u64,
    lowered: &mut Lowered,
) {
    let view = graph.view();
    let nodes = view.nodes();
    let mut stack = graph.take_stack();
    stack.extend(seeds);
    let mut visited = 0;
    let helpers = rayon::current_num_threads().saturating_sub(1);
    while let Some(node) = stack.pop() {
        expand(nodes, node, world, &mut stack, lowered);
        visited += 1;
        if helpers > 0 && visited >= PARALLEL_AFTER && stack.len() >= 2 {
            let walk = Arc::new(Walk {
                graph: Arc::clone(graph),
                share: Share::new(),
                world,
                helpers,
                template: lowered.sibling(),
            });
            walk.work(nodes, &mut stack, lowered);
            while let Some(batch) = walk.share.owner_next() {
                stack.extend(batch);
                walk.work(nodes, &mut stack, lowered);
            }
            for done in walk.share.take_results() {
                lowered.append(done);
            }
            break;
        }
    }
    graph.give_stack(stack);
}

/// Largest pending stack a thread keeps for its next walk.
pub(crate) const KEEP_STACK: usize = 1 << 20;

thread_local! {
    /// A helper's pending stack, kept between batches and walks. A helper that grew a fresh
    /// stack paid `realloc` as it went, and in a process that has just freed much memory
    /// (reclaimed code) glibc's `malloc` sorts its free lists first: the worker that took a split
    /// spent most of its time there and a tree walked on 2 threads ran at half the speed of 1
    /// (`perf record` on `perf --bin walk`).
    static WORKER_STACK: Cell<Vec<NodeRef>> = const { Cell::new(Vec::new()) };
}

/// A walk that has brought in rayon helpers (see `crate::raw::share` for why the walking thread
/// never waits inside rayon for them).
struct Walk {
    graph: Arc<Graph>,
    share: Share<NodeRef, Lowered>,
    world: u64,
    /// Helpers to start at most: the other threads of the pool.
    helpers: usize,
    /// An empty record, for helpers' records to be made like.
    template: Lowered,
}

impl Walk {
    /// Walks depth-first from `stack` until it is empty, offering its oldest pending entries
    /// (those nearest the roots, so the largest unexplored parts of the graph) every
    /// [`SPLIT_EVERY`] visits while nothing else is on offer. Splitting by visits rather than by
    /// stack size also parallelizes graphs whose depth-first stack stays short, such as trees.
    fn work(self: &Arc<Self>, nodes: Nodes<'_>, stack: &mut Vec<NodeRef>, lowered: &mut Lowered) {
        let mut since_split = 0;
        while let Some(node) = stack.pop() {
            expand(nodes, node, self.world, stack, lowered);
            since_split += 1;
            if since_split >= SPLIT_EVERY && stack.len() >= 2 {
                since_split = 0;
                if self.share.is_hungry() {
                    self.offer(stack);
                }
            }
        }
    }

    /// Offers part of `stack`, starting a helper for it if fewer than the pool allows run.
    fn offer(self: &Arc<Self>, stack: &mut Vec<NodeRef>) {
        // A short stack is a narrow, deep walk (a tree): its oldest entry is the largest
        // unexplored part, about half of what is left. A long one is a wide frontier (a DAG):
        // half of it is about half the work. The entries given are copied out, so this thread
        // keeps the stack it has grown.
        let give = if stack.len() > WIDE {
            stack.len() / 2
        } else {
            1
        };
        let batch: Vec<NodeRef> = stack.drain(..give).collect();
        if self.share.offer(batch, self.helpers) == Offered::StartHelper {
            let walk = Arc::clone(self);
            rayon::spawn(move || walk.help());
        }
    }

    /// A helper: takes offered batches until none is left.
    fn help(self: &Arc<Self>) {
        // The view before any batch: while a thread waits to grow the chunk table, a new reader
        // waits behind it, and that writer waits for the owner's view. Holding no batch here, this
        // helper is not one the owner waits for.
        let view = self.graph.view();
        let nodes = view.nodes();
        let mut stack = WORKER_STACK.take();
        let mut done = None;
        while let Some(batch) = self.share.take(done.take()) {
            stack.extend(batch);
            let mut lowered = self.template.sibling();
            self.work(nodes, &mut stack, &mut lowered);
            done = Some(lowered);
        }
        if stack.capacity() <= KEEP_STACK {
            WORKER_STACK.set(stack);
        }
    }
}

/// Lowers the dependents of `node` computed before `world`, records where their invalidation came
/// from, and pushes those that may have dependents of their own (a leaf of the call graph is
/// lowered without being visited).
#[inline]
fn expand(
    view: Nodes<'_>,
    node: NodeRef,
    world: u64,
    stack: &mut Vec<NodeRef>,
    lowered: &mut Lowered,
) {
    if let Some(n) = view.live(node) {
        n.lower_dependents(node, world, view, |d, dn| {
            if !dn.is_failed() {
                lowered.push(d);
            }
            if dn.may_have_dependents() {
                stack.push(d);
            }
        });
    }
}

/// Lowers the dependents registered on `edges` (a dispatch node's, or a slot's while nothing is
/// compiled for it) with a root cause, returning those lowered as seeds for [`propagate`] and
/// adding those that count as invalidated instances to `lowered`.
pub(crate) fn seed_from_edges(
    graph: &Graph,
    edges: &Edges,
    world: u64,
    cause: impl Fn() -> Cause,
    lowered: &mut Lowered,
) -> Vec<NodeRef> {
    let mut seeds = Vec::new();
    {
        let view = graph.view();
        let view = view.nodes();
        // Dead entries are taken too, and dropped.
        let taken = edges.take(|d| view.live(*d).is_none_or(|n| n.compile_world() < world));
        for d in taken {
            if let Some(n) = view.live(d).filter(|n| n.lower(world)) {
                if !n.is_failed() {
                    lowered.push(d);
                }
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
