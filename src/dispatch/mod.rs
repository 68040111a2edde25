//! Multiple dispatch and the dispatch caches: where a call is answered.
//!
//! [`Dispatcher`] owns all dispatch state of one engine:
//!
//! - the **answers** ([`answers`]): every cached answer per `(function, stack, argument types)`,
//!   each valid over a range of worlds: the answer valid in the newest world, and answers asked
//!   for older worlds that a later mutation changed. A repeated dispatch, in the newest world or
//!   in an older one, is one hash-map probe, a comparison and an atomic load, without a lock
//!   ([`Dispatcher::dispatch`]);
//! - each function's **registry** of the answers valid in the newest world, which a mutation of
//!   the function rechecks ([`recheck`]) and which serializes the mutation against the
//!   registration of a new answer ([`miss`]).
//!
//! [`select`] is the algorithm itself; [`node`] the cached answer.

mod answers;
mod miss;
mod node;
mod range;
pub(crate) mod recheck;
mod select;
mod signature;

use node::Answer;
pub(crate) use node::DispatchNode;
pub(crate) use recheck::Registry;
pub(crate) use signature::Interner;
pub use signature::Signature;

use answers::{Answers, Query};

use crate::error::Error;
use crate::graph::Graph;
use crate::methods::{Function, MethodInstance, TableStack, Tables};
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

/// How a dispatch was answered: from the cache, or computed.
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
    answers: Answers<L>,
    registries: Map<u32, Arc<Registry<L>>>,
}

impl<L: Lattice> Dispatcher<L> {
    pub(crate) fn new(collector: &Arc<seize::Collector>) -> Self {
        Dispatcher {
            answers: Answers::new(collector),
            registries: shared_map(collector),
        }
    }

    /// The answer to `call`: from the cache if it holds one valid in the call's world, or
    /// computed (and cached) otherwise. With `interned`, the signature `call.args` came from.
    #[inline]
    pub(crate) fn dispatch<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        tables: &Tables<L>,
        lattice: &L,
        call: Call<'_, L::Type>,
        interned: Option<&Signature<L>>,
    ) -> Result<Lookup<'g, L>, Error> {
        let Call {
            world, stack, f, ..
        } = call;
        // A handle of another engine could name ids that exist here too.
        if f.engine != tables.engine() || stack.engine != tables.engine() {
            return Err(foreign(tables, f, stack));
        }
        let query = match interned {
            Some(signature) => Query::interned(f.id, stack.id, signature),
            None => Query::new(f.id, stack.id, call.args),
        };
        if let Some(node) = self.answers.find(seize, &query, world) {
            return Ok(Lookup::Hit(node));
        }
        self.miss(seize, tables, lattice, call, &query)
            .map(Lookup::Miss)
    }

    /// The method instance a cached answer gives `call` in its world, if the cache holds a found
    /// answer for it. No miss, no error: anything else is left to [`Dispatcher::dispatch`], so
    /// that this path inlines into the caller as a hash, a probe and a few compares.
    #[inline(always)]
    pub(crate) fn hit<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        engine: u32,
        call: Call<'_, L::Type>,
        interned: Option<&Signature<L>>,
    ) -> Option<&'g MethodInstance<L>> {
        let Call {
            world, stack, f, ..
        } = call;
        if f.engine != engine || stack.engine != engine {
            return None;
        }
        let query = match interned {
            Some(signature) => Query::interned(f.id, stack.id, signature),
            None => Query::new(f.id, stack.id, call.args),
        };
        match &self.answers.find(seize, &query, world)?.answer {
            Answer::Found(mi) => Some(mi),
            _ => None,
        }
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
        self.answers.retain(|node| node.validity.max() <= horizon)
    }

    /// The number of cached answers.
    pub(crate) fn len(&self) -> usize {
        self.answers.len()
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
