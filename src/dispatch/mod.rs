//! Multiple dispatch and the dispatch caches: where a call is answered.
//!
//! [`Dispatcher`] owns all dispatch state of one engine:
//!
//! - the **current cache**: one answer per `(function, stack, argument types)`, valid in the
//!   newest world; a repeated dispatch is one hash-map probe and an atomic load, without a lock
//!   ([`Dispatcher::dispatch`]);
//! - the **history**: answers asked for older worlds that a later mutation changed, kept with the
//!   world they were asked in;
//! - each function's **registry** of current answers, which a mutation of the function rechecks
//!   ([`recheck`]) and which serializes the mutation against the registration of a new answer
//!   ([`miss`]).
//!
//! [`select`] is the algorithm itself; [`node`] the cached answer and its keys.

mod miss;
mod node;
pub(crate) mod recheck;
mod select;

pub(crate) use node::DispatchNode;
pub(crate) use recheck::Registry;

use node::{DispatchKey, DispatchQuery};

use crate::error::Error;
use crate::graph::Graph;
use crate::methods::{Function, TableStack, Tables};
use crate::sync::{shared_map, Arc, Map};
use crate::types::Lattice;

/// A call to dispatch: `f` with `args` through `stack`, in `world`.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a, T> {
    pub(crate) world: u64,
    pub(crate) stack: TableStack,
    pub(crate) f: Function,
    pub(crate) args: &'a [T],
}

/// How a dispatch was answered: from the current cache, or computed.
pub(crate) enum Lookup<'g, L: Lattice> {
    Hit(&'g Arc<DispatchNode<L>>),
    Miss(&'g Arc<DispatchNode<L>>),
}

impl<'g, L: Lattice> Lookup<'g, L> {
    #[inline]
    pub(crate) fn node(self) -> &'g Arc<DispatchNode<L>> {
        match self {
            Lookup::Hit(node) | Lookup::Miss(node) => node,
        }
    }
}

/// Every dispatch answer an engine has cached, and the per-function registries.
pub(crate) struct Dispatcher<L: Lattice> {
    current: Map<DispatchKey<L::Type>, Arc<DispatchNode<L>>>,
    history: Map<DispatchKey<L::Type>, Arc<DispatchNode<L>>>,
    registries: Map<u32, Arc<Registry<L>>>,
}

impl<L: Lattice> Dispatcher<L> {
    pub(crate) fn new(collector: &Arc<seize::Collector>) -> Self {
        Dispatcher {
            current: shared_map(collector),
            history: shared_map(collector),
            registries: shared_map(collector),
        }
    }

    /// The answer to `call`: from the current cache if it holds one valid in the call's world,
    /// or computed (and cached) otherwise.
    #[inline]
    pub(crate) fn dispatch<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        tables: &Tables<L>,
        lattice: &L,
        call: Call<'_, L::Type>,
    ) -> Result<Lookup<'g, L>, Error> {
        let Call {
            world,
            stack,
            f,
            args,
        } = call;
        // A handle of another engine could name ids that exist here too.
        if f.engine != tables.engine() || stack.engine != tables.engine() {
            return Err(foreign(tables, f, stack));
        }
        let query = DispatchQuery {
            func: f.id,
            stack: stack.id,
            world: 0,
            args,
        };
        if let Some(node) = self.current.get(&query, seize) {
            if node.validity.contains(world) {
                return Ok(Lookup::Hit(node));
            }
        }
        self.miss(seize, tables, lattice, call).map(Lookup::Miss)
    }

    /// Gives a newly declared function its registry.
    pub(crate) fn add_function(&self, f: u32) {
        self.registries.pin().insert(f, Arc::default());
    }

    /// The registry of `f`'s current answers.
    pub(crate) fn registry(&self, f: u32) -> Arc<Registry<L>> {
        let registries = self.registries.pin();
        match registries.get(&f) {
            Some(registry) => Arc::clone(registry),
            None => Arc::clone(registries.get_or_insert_with(f, Default::default)),
        }
    }

    /// [`Dispatcher::registry`], borrowed under a guard.
    fn registry_in<'g>(&'g self, f: u32, guard: &'g seize::LocalGuard<'_>) -> &'g Registry<L> {
        match self.registries.get(&f, guard) {
            Some(registry) => registry,
            None => self
                .registries
                .get_or_insert_with(f, Default::default, guard),
        }
    }

    /// Drops every cached answer no world at or after `horizon` can be given, and the dead
    /// backedges of large registered answers. Returns `(dropped, kept)`.
    pub(crate) fn reclaim(&self, horizon: u64, graph: &Graph) -> (usize, usize) {
        let registries = self.registries.pin();
        for registry in registries.values() {
            registry.prune_edges(graph);
        }
        let stale = |node: &Arc<DispatchNode<L>>| node.validity.max() <= horizon;
        let (mut dropped, mut kept) = (0, 0);
        for map in [&self.current, &self.history] {
            let map = map.pin();
            let before = map.len();
            map.retain(|_, node| !stale(node));
            let after = map.len();
            dropped += before.saturating_sub(after);
            kept += after;
        }
        (dropped, kept)
    }

    /// The number of cached answers.
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.history.len()
    }
}

#[cold]
fn foreign<L: Lattice>(tables: &Tables<L>, f: Function, stack: TableStack) -> Error {
    if f.engine != tables.engine() {
        Error::UnknownFunction {
            function: format!("#{}", f.id),
        }
    } else {
        Error::UnknownTable {
            table: format!("stack #{}", stack.id),
        }
    }
}
