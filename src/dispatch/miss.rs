//! The miss and registration protocol: computing an answer and publishing it.
//!
//! A result valid in the newest world becomes a dispatch node, registered with its function's
//! [`Registry`](super::Registry) (so a mutation of that function can find it and recheck it) and
//! published in the lock-free current cache. Registration checks, under the registry's lock, that
//! no mutation of the function happened since its methods were read; a mutation holds the same
//! lock while it installs its methods and rechecks the registered nodes, so a node can never be
//! registered stale. An answer for an older world that a later mutation changed is never
//! invalidated again: it goes to the history, keyed with the world it was asked in.

use super::node::{DispatchKey, DispatchNode, DispatchQuery};
use super::{select, Call, Dispatcher};
use crate::error::Error;
use crate::graph::Edges;
use crate::methods::Tables;
use crate::raw::validity::Validity;
use crate::sync::Arc;
use crate::types::Lattice;
use crate::world::OPEN;

impl<L: Lattice> Dispatcher<L> {
    #[cold]
    pub(super) fn miss<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        tables: &Tables<L>,
        lattice: &L,
        call: Call<'_, L::Type>,
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
        let query = DispatchQuery {
            func: f.id,
            stack: stack.id,
            world: 0,
            args,
        };
        loop {
            let generation = registry.generation();
            let lists = func.lists.load();
            let (selection, min, mut max) =
                select::compute(lattice, &lists, stack_data, args, world);
            if max != OPEN {
                max = select::exact_max(lattice, &lists, stack_data, args, world, &selection);
            }
            let node = Arc::new(DispatchNode {
                function_name: Arc::clone(&func.name),
                stack: Arc::clone(stack_data),
                args: args.into(),
                answer: select::answer(selection, args),
                validity: Validity::new(world, min),
                edges: Edges::new(),
            });
            if max != OPEN {
                node.validity.lower(max);
                return Ok(self.remember_historical(seize, world, query, node));
            }
            let Some(node) = registry.register(generation, stack.id, args, node, min) else {
                continue; // a mutation of `f` slipped in since the methods were read
            };
            self.current.insert(
                DispatchKey {
                    func: f.id,
                    stack: stack.id,
                    world: 0,
                    args: args.into(),
                },
                Arc::clone(&node),
                seize,
            );
            if let Some(cached) = self.current.get(&query, seize) {
                if Arc::ptr_eq(cached, &node) {
                    return Ok(cached);
                }
            }
            // Another thread replaced the entry meanwhile; keep ours reachable for this guard.
            return Ok(self.remember_historical(seize, world, query, node));
        }
    }

    fn remember_historical<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        query: DispatchQuery<'_, L::Type>,
        node: Arc<DispatchNode<L>>,
    ) -> &'g Arc<DispatchNode<L>> {
        let key = DispatchKey {
            func: query.func,
            stack: query.stack,
            world,
            args: query.args.into(),
        };
        self.history.get_or_insert(key, node, seize)
    }
}
