//! Each function's registry of current answers, and the recheck a mutation runs over it.
//!
//! A mutation of a function locks the function's [`Registry`] ([`Registry::edit`]) for as long as
//! it changes the function's methods. While it holds the lock, [`RegistryEdit::changed_by`] finds
//! the registered answers the mutation changes, without changing anything; once the mutation has
//! installed its methods, [`RegistryEdit::commit`] bumps the generation (so a miss that read the
//! old methods does not register its answer) and unregisters the changed answers, which the
//! engine then invalidates.
//!
//! `changed_by` runs user code (the lattice; clones nothing); `commit` runs none. Registered
//! answers are keyed by their argument types, whose `Hash` and `Eq` are user code, so `commit`
//! does not look them up by key: it picks the changed answers out by identity in one pass over
//! the registry (the pass `changed_by` made already), and hands back the entries it removed,
//! keys included, for the engine to drop once the mutation is published.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::node::{DispatchNode, NodeKey};
use super::select;
use crate::graph::Graph;
use crate::methods::{Method, MethodLists};
use crate::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::types::Lattice;

/// A registered answer and its key within its function.
pub(crate) type Registered<L> = (NodeKey<<L as Lattice>::Type>, Arc<DispatchNode<L>>);

/// The entries a mutation unregistered. Their keys are user values: dropped, like everything a
/// mutation lets go of, once the mutation is published.
pub(crate) type Unregistered<L> = Vec<Registered<L>>;

/// Answers a registry keeps in a list, compared one by one, before it hashes them.
const FEW: usize = 8;

/// Registered answers by `(stack, argument types)`. Most functions are called with one or two
/// tuples of argument types, so a registry starts as a short list (its first two entries inline):
/// a fresh function's first answer then neither allocates a table nor hashes its key, which was a
/// tenth of a cold miss. Past [`FEW`] entries it becomes a hash map.
enum Nodes<L: Lattice> {
    Few(SmallVec<[Registered<L>; 2]>),
    Many(FxHashMap<NodeKey<L::Type>, Arc<DispatchNode<L>>>),
}

impl<L: Lattice> Default for Nodes<L> {
    fn default() -> Self {
        Nodes::Few(SmallVec::new())
    }
}

impl<L: Lattice> Nodes<L> {
    fn get(&self, key: &NodeKey<L::Type>) -> Option<&Arc<DispatchNode<L>>> {
        match self {
            Nodes::Few(few) => few.iter().find(|(k, _)| k == key).map(|(_, node)| node),
            Nodes::Many(many) => many.get(key),
        }
    }

    /// Registers `node` under `key`, in place of an answer registered under an equal key.
    ///
    /// The key's `Hash` and `Eq` are user code: if one panics, the registry is as it was.
    fn insert(&mut self, key: NodeKey<L::Type>, node: Arc<DispatchNode<L>>) {
        match self {
            Nodes::Few(few) => {
                if let Some(entry) = few.iter_mut().find(|(k, _)| *k == key) {
                    entry.1 = node;
                } else if few.len() < FEW {
                    few.push((key, node));
                } else {
                    // Built from clones (reference counts only), so that a panicking `Hash`
                    // loses no registered answer, which a later mutation could then not find.
                    let mut many: FxHashMap<_, _> = few.iter().cloned().collect();
                    many.insert(key, node);
                    *self = Nodes::Many(many);
                }
            }
            Nodes::Many(many) => {
                many.insert(key, node);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<DispatchNode<L>>> {
        let (few, many) = match self {
            Nodes::Few(few) => (Some(few.iter().map(|(_, node)| node)), None),
            Nodes::Many(many) => (None, Some(many.values())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// Removes and returns the entries whose answers `remove` selects, running no user code.
    fn extract(&mut self, remove: impl Fn(&Arc<DispatchNode<L>>) -> bool) -> Vec<Registered<L>> {
        match self {
            Nodes::Few(few) => {
                let mut removed = Vec::new();
                let mut i = 0;
                while i < few.len() {
                    if remove(&few[i].1) {
                        removed.push(few.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                removed
            }
            Nodes::Many(many) => many.extract_if(|_, node| remove(node)).collect(),
        }
    }
}

/// One function's answers valid in the newest world.
pub(crate) struct Registry<L: Lattice> {
    nodes: Mutex<Nodes<L>>,
    /// Bumped, under the lock, by every mutation of the function's methods.
    generation: AtomicU64,
}

impl<L: Lattice> Default for Registry<L> {
    fn default() -> Self {
        Registry {
            nodes: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }
}

impl<L: Lattice> Registry<L> {
    /// The current generation. `Acquire` pairs with the bump in [`RegistryEdit::commit`], which
    /// follows the installation of the new methods: a reader that sees a generation sees the
    /// methods of that generation or later.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Registers `node` as the answer for `(stack, args)`, computed from the methods of
    /// `generation`, unless a mutation happened since (then `None`: compute again). If an open
    /// answer is registered already, it is the same answer (same methods, both open-ended): it is
    /// returned instead, valid from `min` on as well.
    pub(super) fn register(
        &self,
        generation: u64,
        stack: u32,
        node: Arc<DispatchNode<L>>,
        min: u64,
    ) -> Option<Arc<DispatchNode<L>>> {
        let mut nodes = self.nodes.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return None;
        }
        let key: NodeKey<L::Type> = (stack, Arc::clone(&node.args));
        Some(match nodes.get(&key) {
            Some(existing) if existing.validity.max() == crate::world::OPEN => {
                // It may have been computed in a later world with a later `min`, which must not
                // exclude the world asked in here.
                existing.validity.extend_min(min);
                Arc::clone(existing)
            }
            _ => {
                nodes.insert(key, Arc::clone(&node));
                node
            }
        })
    }

    /// Drops the dead backedges of registered answers with many of them.
    pub(super) fn prune_edges(&self, graph: &Graph) {
        for node in self.nodes.lock().iter() {
            node.edges.prune_large(|d| graph.is_dead_if_free(*d));
        }
    }

    /// Begins a mutation of the function: nothing registers until the edit is dropped.
    pub(crate) fn edit(&self) -> RegistryEdit<'_, L> {
        RegistryEdit {
            registry: self,
            nodes: self.nodes.lock(),
        }
    }
}

/// A mutation's hold on a function's registry.
pub(crate) struct RegistryEdit<'a, L: Lattice> {
    registry: &'a Registry<L>,
    nodes: MutexGuard<'a, Nodes<L>>,
}

impl<L: Lattice> RegistryEdit<'_, L> {
    /// The registered answers that adding `added` and removing `removed` in `table` changes: every
    /// answer whose stack includes `table` and to which one of them applies (see
    /// [`DispatchNode::depends_on`]), recomputed in the new `world` over `lists` as if `removed`
    /// were already deleted. Changes nothing; runs the lattice (user code), and neither hashes,
    /// compares, clones nor drops a key.
    pub(crate) fn changed_by(
        &self,
        lattice: &L,
        lists: &MethodLists<L>,
        table: u32,
        world: u64,
        added: Option<&Method<L>>,
        removed: Option<&Method<L>>,
    ) -> Vec<Arc<DispatchNode<L>>> {
        let touches = |node: &DispatchNode<L>, m: Option<&Method<L>>| {
            m.is_some_and(|m| node.depends_on(lattice, m))
        };
        let deleted = |m: &Method<L>| {
            if removed == Some(m) {
                world
            } else {
                m.0.deleted.load(Ordering::Acquire)
            }
        };
        self.nodes
            .iter()
            .filter(|node| {
                node.stack.tables.contains(&table)
                    && (touches(node, added) || touches(node, removed))
            })
            .filter(|node| {
                let (selection, _, _) =
                    select::compute_with(lattice, lists, &node.stack, &node.args, world, deleted);
                !selection.matches(&node.answer)
            })
            .map(Arc::clone)
            .collect()
    }

    /// Ends the mutation's changes to the registry, once its methods are installed: a miss that
    /// read the old methods will not register, and the `changed` answers (found by
    /// [`RegistryEdit::changed_by`] under this same lock) are unregistered, and returned with
    /// their keys for the caller to drop when it is done.
    ///
    /// Runs no user code: the entries are found by the identity of their answers, without hashing
    /// or comparing a key, and nothing is dropped here.
    pub(crate) fn commit(&mut self, changed: &[Arc<DispatchNode<L>>]) -> Unregistered<L> {
        self.registry.generation.fetch_add(1, Ordering::Release);
        if changed.is_empty() {
            return Vec::new();
        }
        let mut addresses: Vec<*const DispatchNode<L>> = changed.iter().map(Arc::as_ptr).collect();
        addresses.sort_unstable();
        self.nodes
            .extract(|node| addresses.binary_search(&Arc::as_ptr(node)).is_ok())
    }
}
