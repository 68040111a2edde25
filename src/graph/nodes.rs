//! The dependency graph's nodes: one per code instance, held in an arena so that the invalidation
//! walk reads dense memory instead of chasing reference-counted allocations.
//!
//! A node holds what the walk reads and writes: its code instance's validity, the backedges of the
//! instances compiled against it (inline while there are few), and why it was invalidated (the
//! upstream node). What only a description needs (the instance itself, a root cause) sits in a cold
//! part beside it. Nodes live in chunks of [`CHUNK`]; a code instance owns its node through a
//! [`NodeHandle`], which keeps the chunk alive, so a hit reads the validity with no lookup. A walk
//! looks nodes up by index in the chunk table, which it reads under a shared lock held for the
//! whole walk (a [`View`]): a lookup is an index computation and two loads.
//!
//! # Identity and reuse
//!
//! A node is named by a [`NodeRef`]: its index and a generation, bumped when the node is freed. A
//! backedge is a `NodeRef`, weak in effect: a stale generation means the dependent is gone.
//!
//! Every change to a node's identity happens under the engine's writer lock, where every walk runs
//! too. Dropping a code instance only queues its node; [`Graph::recycle`], called under the lock,
//! frees the queued nodes (bumping their generation) and only then lets their indices be reused,
//! and gives back chunks left empty. So a node a walk has found live stays the same node until the
//! walk ends: at worst the walk lowers the validity of an instance dropped meanwhile, which nobody
//! reads again.
//!
//! A node that others name as the upstream of their invalidation (`via`) is not freed with its
//! instance: it stays, with the instance's description, until the last of them is freed, so that a
//! why-chain survives the reclamation of the instances along it.
//!
//! # Lock order
//!
//! The chunk table's lock, then a backedges lock (a node's, a dispatch answer's or a slot's).
//! Registration on a node takes the table's shared lock before the backedges lock (it may compact
//! them), as a walk does; growing the table takes its exclusive lock holding no other. A
//! compaction that holds a backedges lock without a view only *tries* the table
//! ([`Graph::is_dead_if_free`]): std's lock queues new readers behind a waiting writer, so a
//! blocking read there would wait for a grower that waits for a walk that waits for that
//! backedges lock.

use std::sync::RwLockReadGuard;

use super::{Cause, Dependent};
use crate::raw::edges::EdgeSet;
use crate::sync::{
    Arc, AtomicBool, AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering, RwLock, Weak,
};
use crate::world::OPEN;

/// Nodes per chunk.
pub(crate) const CHUNK: usize = 64;

/// A node's index and generation, packed: a backedge, or the upstream node of a cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeRef(u64);

impl NodeRef {
    /// No node.
    const NONE: u64 = u64::MAX;

    fn new(index: u32, generation: u32) -> Self {
        NodeRef(u64::from(index) << 32 | u64::from(generation))
    }

    fn index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn generation(self) -> u32 {
        self.0 as u32
    }
}

/// What the walk touches, in one cache-line pair.
#[repr(align(128))]
pub(crate) struct Node {
    generation: AtomicU32,
    /// How many nodes name this one as their `via`. Changed under the writer lock only.
    referrers: AtomicU32,
    /// Whether its code instance was dropped (the node waits for its last referrer).
    dropped: AtomicBool,
    /// Whether its compilation failed after something had recorded a dependency on it while it
    /// ran: a walk goes on through the node without counting it as an invalidated instance (see
    /// `crate::cache::phases`). Written and read under the writer lock only.
    failed: AtomicBool,
    compile_world: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    /// The node whose invalidation reached this one ([`NodeRef::NONE`] for a root, or none).
    via: AtomicU64,
    /// The dependents compiled against this node: registered and lowered under its lock (the
    /// protocol of `crate::raw::edges`, which the loom models check). The first few are inline,
    /// so the walk reads most nodes' backedges without another allocation.
    backedges: EdgeSet<NodeRef>,
}

// A node is one cache-line pair: the walk's loads of one node never share a line with another's,
// and a few backedges still fit inline.
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Node>() == 128);

/// What only descriptions read.
#[derive(Default)]
struct Cold {
    /// The code instance, for its label.
    owner: Mutex<Option<Weak<dyn Dependent>>>,
    /// The instance's label, kept when the instance was dropped while others named the node as
    /// their `via`.
    label: Mutex<Option<String>>,
    /// Why it was invalidated, for a node a walk started from.
    root: Mutex<Option<Cause>>,
}

/// [`CHUNK`] nodes and their cold parts, in two allocations each built in place: a chunk is
/// about 15 KB, and building it by value and moving it into place cost two copies of it, 7%
/// of a cold miss's instructions (`bash perf/callgrind.sh`). The nodes are one pointer away from
/// the chunk table, as they were when inline.
#[derive(Clone)]
pub(crate) struct Chunk {
    nodes: Arc<[Node; CHUNK]>,
    rest: Arc<ChunkRest>,
}

/// The chunks by number, their nodes and the rest in two lists: the walk reads only the first,
/// which so stays one pointer per chunk. `None` for a chunk given back.
#[derive(Default)]
struct Table {
    nodes: Vec<Option<Arc<[Node; CHUNK]>>>,
    rest: Vec<Option<Arc<ChunkRest>>>,
}

impl Table {
    fn get(&self, number: usize) -> Option<Chunk> {
        Some(Chunk {
            nodes: Arc::clone(self.nodes[number].as_ref()?),
            rest: Arc::clone(self.rest[number].as_ref()?),
        })
    }

    fn set(&mut self, number: usize, chunk: Option<Chunk>) -> Option<Chunk> {
        let (nodes, rest) = chunk.map(|c| (c.nodes, c.rest)).unzip();
        let nodes = std::mem::replace(&mut self.nodes[number], nodes);
        let rest = std::mem::replace(&mut self.rest[number], rest);
        Some(Chunk {
            nodes: nodes?,
            rest: rest?,
        })
    }

    fn push(&mut self, chunk: Chunk) {
        self.nodes.push(Some(chunk.nodes));
        self.rest.push(Some(chunk.rest));
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// What only descriptions and the drop of a node's handle read.
struct ChunkRest {
    cold: Box<[Cold; CHUNK]>,
    /// The graph's queue of dropped nodes.
    dropped: Arc<Mutex<Vec<u32>>>,
}

impl Chunk {
    fn new(dropped: Arc<Mutex<Vec<u32>>>, generation: u32) -> Self {
        // Collected from exact-size iterators, the arrays are written straight into their
        // allocations.
        let nodes: Arc<[Node]> = (0..CHUNK)
            .map(|_| Node {
                generation: AtomicU32::new(generation),
                referrers: AtomicU32::new(0),
                dropped: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                compile_world: AtomicU64::new(0),
                min: AtomicU64::new(0),
                max: AtomicU64::new(0),
                via: AtomicU64::new(NodeRef::NONE),
                backedges: EdgeSet::new(),
            })
            .collect();
        let cold: Box<[Cold]> = (0..CHUNK).map(|_| Cold::default()).collect();
        let (Ok(nodes), Ok(cold)) = (nodes.try_into(), cold.try_into()) else {
            unreachable!("both were collected from CHUNK items");
        };
        Chunk {
            nodes,
            rest: Arc::new(ChunkRest { cold, dropped }),
        }
    }
}

/// Every node of one engine.
#[derive(Default)]
pub(crate) struct Graph {
    /// The chunks by number; `None` for a chunk given back.
    table: RwLock<Table>,
    allocator: Mutex<Allocator>,
    /// Indices of nodes whose instances were dropped since the last [`Graph::recycle`].
    dropped: Arc<Mutex<Vec<u32>>>,
    /// The pending stack of the last walk, kept so that a walk does not grow a fresh one from
    /// nothing each time (reallocating was a fifth of a large walk's cost).
    stack: Mutex<Vec<NodeRef>>,
}

#[derive(Default)]
struct Allocator {
    /// Free indices in chunks that are in the table.
    free: Vec<u32>,
    /// Nodes in use (live or waiting for referrers) per chunk.
    used: Vec<u32>,
    /// Chunk numbers given back, to fill again first, each with the generation its nodes start
    /// at when it is: above every generation its earlier nodes had, so that a backedge still
    /// naming one of them (a stale entry on a dispatch answer or another node) never names a
    /// node of the new chunk.
    vacant: Vec<(u32, u32)>,
}

impl Graph {
    /// A node for a code instance compiled in `compile_world`, valid from `min` with an open end.
    pub(crate) fn alloc(&self, compile_world: u64, min: u64) -> NodeHandle {
        let mut allocator = self.allocator.lock();
        let index = match allocator.free.pop() {
            Some(index) => index,
            None => self.grow(&mut allocator),
        };
        allocator.used[index as usize / CHUNK] += 1;
        let chunk = match self.table.read().get(index as usize / CHUNK) {
            Some(chunk) => chunk,
            None => unreachable!("free indices are in chunks of the table"),
        };
        drop(allocator);
        let node = &chunk.nodes[index as usize % CHUNK];
        node.compile_world.store(compile_world, Ordering::Relaxed);
        node.min.store(min, Ordering::Relaxed);
        node.max.store(OPEN, Ordering::Relaxed);
        node.via.store(NodeRef::NONE, Ordering::Relaxed);
        node.referrers.store(0, Ordering::Relaxed);
        node.dropped.store(false, Ordering::Relaxed);
        node.failed.store(false, Ordering::Relaxed);
        let generation = node.generation.load(Ordering::Relaxed);
        NodeHandle {
            chunk,
            index,
            generation,
        }
    }

    /// Adds a chunk (in a vacant place if there is one) and returns its first index, the others
    /// going to the free list.
    #[cold]
    fn grow(&self, allocator: &mut Allocator) -> u32 {
        let vacant = allocator.vacant.pop();
        let generation = vacant.map_or(0, |(_, generation)| generation);
        let chunk = Chunk::new(Arc::clone(&self.dropped), generation);
        let mut table = self.table.write();
        let number = match vacant {
            Some((number, _)) => {
                table.set(number as usize, Some(chunk));
                number
            }
            None => {
                let number = u32::try_from(table.len())
                    .ok()
                    .filter(|n| (*n as usize) < (u32::MAX as usize) / CHUNK)
                    .expect("fewer than 2^32 code instances alive at once");
                table.push(chunk);
                allocator.used.push(0);
                number
            }
        };
        let first = number * CHUNK as u32;
        allocator
            .free
            .extend((first + 1..first + CHUNK as u32).rev());
        first
    }

    /// Reads the chunk table for a series of lookups (a walk, a description).
    /// Takes the stack a walk keeps its pending nodes on (empty, with the capacity earlier walks
    /// grew it to).
    pub(crate) fn take_stack(&self) -> Vec<NodeRef> {
        std::mem::take(&mut *self.stack.lock())
    }

    /// Gives a walk's stack back for the next walk, unless it grew past what is worth keeping.
    pub(crate) fn give_stack(&self, mut stack: Vec<NodeRef>) {
        if stack.capacity() <= super::walk::KEEP_STACK {
            stack.clear();
            *self.stack.lock() = stack;
        }
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            table: self.table.read(),
        }
    }

    /// Whether a backedge's dependent is gone or already invalid (a further invalidation could
    /// not lower it), asked by a compaction running under that backedges lock.
    ///
    /// The lock order is the chunk table, then a backedges lock. A compaction that blocked on the
    /// table under a backedges lock would close a cycle: a walk holds the table and waits for that
    /// backedges lock, and a thread growing the table queues between them (std's lock makes new
    /// readers wait behind a waiting writer). So the table is only read if it is free right away,
    /// and released at once; otherwise the entry counts as alive and stays until a later
    /// compaction.
    pub(crate) fn is_dead_if_free(&self, r: NodeRef) -> bool {
        self.table
            .try_read()
            .is_some_and(|table| View { table }.nodes().is_dead(r))
    }

    /// The label of the instance `r` names: from the instance, or kept from it. Describing runs
    /// user code, outside the table's lock.
    pub(crate) fn label(&self, r: NodeRef) -> Option<String> {
        let owner = self.view().nodes().owner(r)?;
        Some(match owner {
            Ok(owner) => owner.label(),
            Err(label) => label,
        })
    }

    /// Why `r` was invalidated: the upstream node, or its root cause.
    pub(crate) fn cause(&self, r: NodeRef) -> Option<Result<NodeRef, Cause>> {
        self.view().nodes().cause(r)
    }

    /// `r`'s upper bound, if it is still the same node.
    pub(crate) fn max_of(&self, r: NodeRef) -> Option<u64> {
        self.view().nodes().live(r).map(Node::max)
    }

    /// Sets why `r` was invalidated, if nothing has yet (the first record stands).
    pub(crate) fn set_root(&self, r: NodeRef, cause: Cause) {
        let view = self.view();
        let view = view.nodes();
        if view.live(r).is_some() {
            view.cold(r.index()).root.lock().get_or_insert(cause);
        }
    }

    /// How many nodes wait for [`Graph::recycle`].
    pub(crate) fn dropped_backlog(&self) -> usize {
        self.dropped.lock().len()
    }

    /// Chunks in the table, for tests of what the arena holds.
    #[cfg(test)]
    pub(crate) fn chunks(&self) -> usize {
        self.table.read().nodes.iter().flatten().count()
    }

    /// Frees the nodes of the instances dropped so far, except those still named as a `via`, lets
    /// their indices be reused, and gives back the chunks left empty. The caller holds the
    /// engine's writer lock, so no walk is running (see the module docs).
    pub(crate) fn recycle(&self) {
        let dropped = std::mem::take(&mut *self.dropped.lock());
        if dropped.is_empty() {
            return;
        }
        let mut freed = Vec::with_capacity(dropped.len());
        let mut kept = Vec::new();
        {
            let view = self.view();
            let view = view.nodes();
            for index in dropped {
                view.node(index).dropped.store(true, Ordering::Relaxed);
                let mut next = Some(index);
                // Freeing a node releases its upstream, which may be waiting for its last one.
                while let Some(index) = next.take() {
                    let node = view.node(index);
                    if node.referrers.load(Ordering::Relaxed) > 0 {
                        break;
                    }
                    let via = view.free(index, &mut kept);
                    freed.push(index);
                    if let Some(up) = via {
                        if let Some(upn) = view.live(up) {
                            let left = upn.referrers.fetch_sub(1, Ordering::Relaxed) - 1;
                            if left == 0 && upn.dropped.load(Ordering::Relaxed) {
                                next = Some(up.index());
                            }
                        }
                    }
                }
            }
        }
        let mut allocator = self.allocator.lock();
        let mut emptied = Vec::new();
        for &index in &freed {
            let number = index as usize / CHUNK;
            allocator.used[number] -= 1;
            if allocator.used[number] == 0 {
                emptied.push(number as u32);
            }
        }
        allocator.free.extend(freed);
        if !emptied.is_empty() {
            let mut table = self.table.write();
            let mut gone = vec![false; table.len()];
            let mut vacant = Vec::with_capacity(emptied.len());
            for &number in &emptied {
                let chunk = table.set(number as usize, None);
                let next = chunk.map_or(0, |chunk| {
                    let newest = chunk
                        .nodes
                        .iter()
                        .map(|n| n.generation.load(Ordering::Relaxed));
                    newest.max().unwrap_or(0)
                });
                vacant.push((number, next));
                gone[number as usize] = true;
            }
            drop(table);
            allocator.free.retain(|&i| !gone[i as usize / CHUNK]);
            allocator.vacant.extend(vacant);
        }
        drop(allocator);
        // User values (descriptions in root causes), dropped outside every lock.
        drop(kept);
    }
}

/// The chunk table, read for a series of lookups (see [`Graph::view`]).
pub(crate) struct View<'g> {
    table: RwLockReadGuard<'g, Table>,
}

impl View<'_> {
    /// The nodes, looked up through the table this view holds.
    #[inline]
    pub(crate) fn nodes(&self) -> Nodes<'_> {
        Nodes {
            chunks: self.table.nodes.as_slice(),
            rest: self.table.rest.as_slice(),
        }
    }
}

/// The chunk table of a [`View`], by value: each of the walk's workers holds its own copy, so a
/// lookup does not go through the guard on the stack of the thread that took the view.
#[derive(Clone, Copy)]
pub(crate) struct Nodes<'v> {
    chunks: &'v [Option<Arc<[Node; CHUNK]>>],
    rest: &'v [Option<Arc<ChunkRest>>],
}

impl<'v> Nodes<'v> {
    #[inline]
    fn chunk(self, index: u32) -> Option<&'v [Node; CHUNK]> {
        self.chunks.get(index as usize / CHUNK)?.as_deref()
    }

    fn node(self, index: u32) -> &'v Node {
        match self.chunk(index) {
            Some(nodes) => &nodes[index as usize % CHUNK],
            None => unreachable!("a node queued or named is in a chunk of the table"),
        }
    }

    fn cold(self, index: u32) -> &'v Cold {
        match self.rest.get(index as usize / CHUNK) {
            Some(Some(rest)) => &rest.cold[index as usize % CHUNK],
            _ => unreachable!("a node queued or named is in a chunk of the table"),
        }
    }

    /// The node `r` names, if it is still the same node (not freed).
    #[inline]
    pub(crate) fn live(self, r: NodeRef) -> Option<&'v Node> {
        self.at(r)
            .filter(|node| node.generation.load(Ordering::Acquire) == r.generation())
    }

    /// The node at `r`'s index, whether or not it is still the node `r` names (see
    /// [`Nodes::live`]); `None` if its chunk was given back.
    #[inline]
    fn at(self, r: NodeRef) -> Option<&'v Node> {
        Some(&self.chunk(r.index())?[r.index() as usize % CHUNK])
    }

    /// Whether `r`'s dependent is gone or already invalid (a further invalidation could not lower it).
    pub(crate) fn is_dead(self, r: NodeRef) -> bool {
        self.live(r).is_none_or(|node| node.max() != OPEN)
    }

    /// Frees the node at `index` (a new generation, backedges dropped) and returns its `via`, a
    /// reference on the upstream node to give back. What the cold part held goes to `kept`.
    fn free(self, index: u32, kept: &mut Vec<Cold>) -> Option<NodeRef> {
        let node = self.node(index);
        node.backedges.clear_then(|| {
            node.generation.fetch_add(1, Ordering::Release);
        });
        let cold = self.cold(index);
        kept.push(Cold {
            owner: Mutex::new(cold.owner.lock().take()),
            label: Mutex::new(cold.label.lock().take()),
            root: Mutex::new(cold.root.lock().take()),
        });
        let via = node.via.swap(NodeRef::NONE, Ordering::Relaxed);
        (via != NodeRef::NONE).then_some(NodeRef(via))
    }

    /// The instance `r` names, or the label kept from it.
    fn owner(self, r: NodeRef) -> Option<Result<Arc<dyn Dependent>, String>> {
        self.live(r)?;
        let cold = self.cold(r.index());
        let owner = cold.owner.lock().clone().and_then(|o| o.upgrade());
        match owner {
            Some(owner) => Some(Ok(owner)),
            None => cold.label.lock().clone().map(Err),
        }
    }

    fn cause(self, r: NodeRef) -> Option<Result<NodeRef, Cause>> {
        let node = self.live(r)?;
        let via = node.via.load(Ordering::Acquire);
        if via != NodeRef::NONE {
            return Some(Ok(NodeRef(via)));
        }
        self.cold(r.index()).root.lock().clone().map(Err)
    }
}

impl Node {
    #[inline]
    pub(crate) fn compile_world(&self) -> u64 {
        self.compile_world.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn min(&self) -> u64 {
        self.min.load(Ordering::Relaxed)
    }

    /// `Acquire` pairs with the `Release` in [`Node::lower`], so a reader that sees a lowered
    /// bound also sees what the invalidator wrote before (its cause).
    #[inline]
    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn contains(&self, world: u64) -> bool {
        self.min() <= world && world < self.max()
    }

    /// Lowers `max` to `world` if it is higher; returns whether this call lowered it, so that of
    /// many invalidators exactly one goes on to propagate.
    #[inline]
    pub(crate) fn lower(&self, world: u64) -> bool {
        if self.max.load(Ordering::Acquire) <= world {
            return false;
        }
        // Sequentially consistent: a walk that then finds nothing registered on this node skips
        // it, relying on this lowering being ordered before that check (`crate::raw::edges`).
        self.max.fetch_min(world, Ordering::SeqCst) > world
    }

    /// Records that the invalidation reached this node from `upstream` (the node `up`), unless a
    /// cause is set, and keeps `upstream` for the why-chain. Under the writer lock.
    ///
    /// Every writer of `via` and `referrers` holds the writer lock (walks, and recycling), so
    /// plain loads and stores suffice: no read-modify-write on the walk's path.
    #[inline]
    pub(crate) fn set_via(&self, upstream: NodeRef, up: &Node) {
        if self.via.load(Ordering::Relaxed) == NodeRef::NONE {
            self.via.store(upstream.0, Ordering::Release);
            let referrers = up.referrers.load(Ordering::Relaxed);
            up.referrers.store(referrers + 1, Ordering::Relaxed);
        }
    }

    /// Registers `dependent` and returns this node's upper bound read under the same lock.
    ///
    /// A compaction on the way drops only the entries of dependents gone, not of those already
    /// invalid: a walk at an older world may still lower them (see [`Node::lower_dependents`]).
    /// They go once their instances are reclaimed.
    pub(crate) fn register(&self, dependent: NodeRef, graph: &Graph) -> u64 {
        let view = graph.view();
        self.backedges.register(
            dependent,
            || self.max(),
            |d| view.nodes().live(*d).is_none(),
        )
    }

    /// Lowers the dependents compiled before `world` (those an invalidation at `world` affects)
    /// that are not already invalid at `world`, records that their invalidation came from this
    /// node (`me`), and hands each to `lowered`, which asks the node whether to count it
    /// ([`Node::is_failed`]) and whether to visit it ([`Node::may_have_dependents`]). Under the
    /// writer lock.
    ///
    /// No entry is dropped: the lowered ones stay, for a walk at an older world through this
    /// node. That happens when a running compilation, closed by one mutation's walk already,
    /// records a read that an earlier mutation invalidated: it is closed again, at that earlier
    /// world, and so must be everything that depends on it (`crate::cache::compiler`,
    /// `close_at`). A node's entries are visited only by walks that lower the node itself, so a
    /// newer walk never reads them again, and they go when the node is freed. Leaving them is
    /// also cheaper than taking them out.
    #[inline]
    pub(crate) fn lower_dependents(
        &self,
        me: NodeRef,
        world: u64,
        view: Nodes<'_>,
        mut lowered: impl FnMut(NodeRef, &Node),
    ) {
        self.backedges.for_each(|&d| {
            let Some(node) = view.at(d) else {
                return;
            };
            // Checked before the generation: a walk at `world` cannot lower a node invalid at
            // `world` already (most entries of a DAG's walk, reached again through another
            // dependency). The entry of a node freed since stays until a compaction drops it.
            if node.max() > world
                && node.generation.load(Ordering::Acquire) == d.generation()
                && node.compile_world() < world
                && node.lower(world)
            {
                node.set_via(me, self);
                lowered(d, node);
            }
        });
    }

    /// Whether the node's own backedges need a visit, asked right after lowering it: `false`
    /// when nothing was ever registered on it, which the lowering just done makes safe to skip
    /// (see `crate::raw::edges`).
    #[inline]
    pub(crate) fn may_have_dependents(&self) -> bool {
        self.backedges.may_have_entries()
    }

    /// Whether the node is that of a compilation that failed after something had recorded a
    /// dependency on it while it ran ([`Node::mark_failed`]).
    #[inline]
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Marks the node of a compilation that failed while others depend on it: walks still go
    /// through it to those dependents, but it is no invalidated instance.
    fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
}

impl Graph {
    /// Ends the node `r` of a compilation that failed, under the engine's writer lock
    /// (`_writer`), so that no walk is halfway through it. The node is marked failed; if a
    /// dependent that could still be invalidated is registered on it, directly or through other
    /// failed compilations, it stays open for walks to pass through, and this returns `true`;
    /// otherwise it is closed at its own world. A compilation registered on itself (a recursive
    /// call told `InProgress`) does not keep itself, nor do failed compilations that depend only
    /// on each other.
    pub(crate) fn end_failed(&self, r: NodeRef, _writer: &MutexGuard<'_, ()>) -> bool {
        let view = self.view();
        let nodes = view.nodes();
        let Some(node) = nodes.live(r) else {
            return false;
        };
        let needed = nodes.feeds_a_valid_dependent(r);
        // Marked either way, for the why-chains of dependents that an invalidation reached
        // through it while it ran.
        node.mark_failed();
        if !needed {
            node.lower(node.compile_world());
        }
        needed
    }

    /// Whether the failed node `r` is still needed: it is open, and a dependent that could
    /// still be invalidated is registered on it, directly or through other failed nodes (see
    /// [`Graph::end_failed`]). Entries of dependents gone or already invalid are dropped on the
    /// way. Reclamation asks, under the writer lock.
    pub(crate) fn failed_is_needed(&self, r: NodeRef) -> bool {
        let view = self.view();
        let nodes = view.nodes();
        nodes.live(r).is_some_and(|node| node.max() == OPEN) && nodes.feeds_a_valid_dependent(r)
    }
}

impl Nodes<'_> {
    /// Whether a node that is open and not failed is registered on `r`, directly or through
    /// failed nodes, `r` itself counting as failed. Drops the entries of dependents gone or
    /// already invalid on the way.
    fn feeds_a_valid_dependent(self, r: NodeRef) -> bool {
        let mut seen = rustc_hash::FxHashSet::default();
        seen.insert(r);
        let mut stack = vec![r];
        while let Some(at) = stack.pop() {
            let Some(node) = self.live(at) else {
                continue;
            };
            let mut found = false;
            node.backedges.visit(|&d| match self.live(d) {
                Some(dn) if dn.max() == OPEN => {
                    if dn.is_failed() || d == r {
                        if seen.insert(d) {
                            stack.push(d);
                        }
                    } else {
                        found = true;
                    }
                    true
                }
                _ => false,
            });
            if found {
                return true;
            }
        }
        false
    }
}

/// A code instance's node. Keeps the node's chunk alive, so the node is read without looking it
/// up; dropping it queues the node to be freed.
pub(crate) struct NodeHandle {
    chunk: Chunk,
    index: u32,
    generation: u32,
}

impl NodeHandle {
    #[inline]
    pub(crate) fn node(&self) -> &Node {
        &self.chunk.nodes[self.index as usize % CHUNK]
    }

    fn cold(&self) -> &Cold {
        &self.chunk.rest.cold[self.index as usize % CHUNK]
    }

    /// The reference backedges and causes use.
    #[inline]
    pub(crate) fn get_ref(&self) -> NodeRef {
        NodeRef::new(self.index, self.generation)
    }

    /// Records the code instance owning the node, for descriptions.
    pub(crate) fn set_owner(&self, owner: Weak<dyn Dependent>) {
        *self.cold().owner.lock() = Some(owner);
    }

    /// Sets why the node was invalidated, if nothing has yet.
    pub(crate) fn set_root(&self, cause: Cause) {
        self.cold().root.lock().get_or_insert(cause);
    }

    /// Sets why the node was invalidated, in place of an earlier record: it was closed again at
    /// an older world.
    pub(crate) fn replace_root(&self, cause: Cause) {
        *self.cold().root.lock() = Some(cause);
    }

    /// Extends the range back to `min`.
    pub(crate) fn extend_min(&self, min: u64) {
        self.node().min.fetch_min(min, Ordering::Relaxed);
    }

    /// Keeps the instance's label with the node if others name it as their `via`: called as the
    /// instance is dropped, so that their why-chains can still describe it.
    pub(crate) fn keep_label(&self, label: impl FnOnce() -> String) {
        if self.node().referrers.load(Ordering::Relaxed) > 0 {
            let label = label();
            *self.cold().label.lock() = Some(label);
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        // Freed under the writer lock, by the next recycling (see the module docs).
        self.chunk.rest.dropped.lock().push(self.index);
    }
}
