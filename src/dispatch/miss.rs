//! The miss and registration protocol: computing an answer and publishing it.
//!
//! A result valid in the newest world becomes a dispatch node, registered with its function's
//! [`Registry`](super::Registry) (so a mutation of that function can find it and recheck it) and
//! published in the lock-free cache of answers. Registration checks, under the registry's lock, that
//! no mutation of the function happened since its methods were read; a mutation holds the same
//! lock while it installs its methods and rechecks the registered nodes, so a node can never be
//! registered stale. An answer for an older world that a later mutation changed is never
//! invalidated again: it is cached beside the current answer with its closed range of worlds,
//! and serves every dispatch in one of them.

use super::answers::Query;
use super::node::DispatchNode;
use super::{range, select, Call, Dispatcher};
use crate::error::Error;
use crate::graph::Edges;
use crate::methods::Tables;
use crate::raw::validity::Validity;
use crate::sync::Arc;
use crate::types::Lattice;
use crate::world::OPEN;

impl<L: Lattice> Dispatcher<L> {
    /// Computes the answer to `query` in `world` and caches it (see the module docs).
    #[cold]
    pub(super) fn miss<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        tables: &Tables<L>,
        lattice: &L,
        call: Call<'_, L::Type>,
        query: &Query<'_, L::Type>,
    ) -> Result<&'g Arc<DispatchNode<L>>, Error> {
        let Call {
            world,
            stack,
            f,
            args,
        } = call;
        let func = tables.function_in(f, seize)?;
        func.check_signature(lattice, args)?;
        let stack_data = tables.stack_in(stack, seize)?;
        let registry = self.registry_in(f.id, seize);
        // One copy of the tuple for everything the answer keeps: the node, its keys, the instance.
        let shared = query.shared_args();
        loop {
            let generation = registry.generation();
            let lists = func.lists.load();
            let (selection, mut min, mut max) =
                select::compute(lattice, &lists, stack_data, args, world);
            min = range::exact_min(lattice, &lists, stack_data, args, world, &selection, min);
            if max != OPEN {
                max = range::exact_max(lattice, &lists, stack_data, args, world, &selection);
            }
            let node = Arc::new(DispatchNode {
                function_name: Arc::clone(&func.name),
                stack: Arc::clone(stack_data),
                args: Arc::clone(&shared),
                answer: select::answer(selection, &shared),
                validity: Validity::new(world, min),
                edges: Edges::new(),
            });
            if max != OPEN {
                node.validity.lower(max);
                return Ok(self.answers.insert_older(seize, query, world, node));
            }
            let Some(node) = registry.register(generation, stack.id, node, min) else {
                continue; // a mutation of `f` slipped in since the methods were read
            };
            return Ok(self.answers.insert_current(seize, query, node));
        }
    }
}
