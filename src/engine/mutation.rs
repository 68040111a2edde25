//! Method definitions, replacements and deletions: the one path every mutation takes.
//!
//! A mutation holds the engine's writer lock and the mutated function's dispatch registry from
//! start to end. It first works out everything it will do, running all the user code it needs
//! (the lattice's answers, types' `Eq` and `Display`): the method added and the one removed, the
//! new method lists, and every cached answer the change affects, recomputed against them. Only
//! then does it change anything, with no user code left to run: mark the removed method deleted,
//! install the lists, unregister the changed answers, invalidate what depended on them and on the
//! removed method, and publish the new world. A panic in the first part leaves the engine as it
//! was; the second part cannot panic on behalf of user code. It hashes, compares, clones and drops
//! no user value (types, sources, keys): the changed answers are unregistered by identity, not
//! looked up by their argument types, and everything it lets go of is dropped after the world is
//! published, where a panicking destructor is caught and counted. See [`crate::semantics`] §1.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::{Engine, EngineInner};
use crate::dispatch::DispatchNode;
use crate::error::Error;
use crate::graph::{walk, Cause, Describe, Mutation, NodeRef, Released};
use crate::methods::{Function, FunctionData, Method, MethodData, MethodLists, MethodTable};
use crate::stats::Counter;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};
use crate::types::Lattice;
use crate::world::{World, OPEN};

/// Process-unique method ids.
static NEXT_METHOD: AtomicU64 = AtomicU64::new(1);

/// What one mutation does to one function's methods in one table.
struct Edit<L: Lattice> {
    /// The method defined, if any.
    added: Option<Method<L>>,
    /// The lineage (see [`crate::methods::Lineage`]) the defined method joins, if it joins one.
    lineage: Option<usize>,
    /// The live method that stops being live: replaced by `added`, or deleted.
    removed: Option<Method<L>>,
}

impl<L: Lattice> Engine<L> {
    /// Adds a method to the global table. See [`Engine::add_method_to`].
    pub fn add_method<S: std::any::Any + Send + Sync>(
        &self,
        f: Function,
        signature: &[L::Type],
        source: S,
    ) -> Result<Method<L>, Error> {
        self.add_method_to(self.global_table(), f, signature, source)
    }

    /// Adds a method of `f` for `signature` to `table`, with an opaque `source`, and advances the
    /// world by one. A live method of `f` in `table` whose signature is type-equal is replaced: it
    /// stays visible in older worlds and is deleted from the new one. Code compiled against
    /// whatever this changes is invalidated before the new world is published.
    ///
    /// A mutation is atomic: readers see all of it or none of it, and if user code it runs (the
    /// lattice's queries, types' `Eq` and `Display`) panics, the panic reaches the caller and the
    /// mutation does not happen at all: the world, the method tables and every cached answer stay
    /// as they were. Once it has taken effect it runs no user code but destructors, after the new
    /// world is published; a panic there is caught and counted in
    /// [`StatsSnapshot::user_code_panics`](crate::StatsSnapshot::user_code_panics).
    pub fn add_method_to<S: std::any::Any + Send + Sync>(
        &self,
        table: MethodTable,
        f: Function,
        signature: &[L::Type],
        source: S,
    ) -> Result<Method<L>, Error> {
        let inner = &*self.inner;
        let func = inner.tables.function(f)?;
        inner.check_table(table)?;
        func.check_signature(&inner.lattice, signature)?;
        self.mutate(f, &func, table, |lists, world| {
            let lineage = func.find_lineage(&inner.lattice, lists, table.id, signature);
            let replaced = lineage
                .and_then(|i| lists.lineage(table.id, i))
                .map(|l| l.last())
                .filter(|m| m.0.deleted.load(Ordering::Acquire) == OPEN)
                .cloned();
            let method = Method(Arc::new(MethodData {
                id: NEXT_METHOD.fetch_add(1, Ordering::Relaxed),
                function: f,
                function_name: Arc::clone(&func.name),
                table,
                sig: signature.into(),
                signature_key: inner.lattice.signature_key(signature),
                source: Arc::new(source),
                defined: world,
                deleted: AtomicU64::new(OPEN),
                instances: Mutex::default(),
            }));
            let edit = Edit {
                added: Some(method.clone()),
                lineage,
                removed: replaced,
            };
            Ok((edit, method))
        })
    }

    /// Deletes a live method and advances the world by one. From the new world on, dispatch no
    /// longer sees it, and code compiled against it is invalidated; older worlds still see it.
    /// Atomic like [`Engine::add_method_to`].
    pub fn delete_method(&self, method: &Method<L>) -> Result<(), Error> {
        let inner = &*self.inner;
        let not_live = || Error::MethodNotLive {
            method: method.to_string(),
        };
        let func = inner
            .tables
            .function(method.0.function)
            .map_err(|_| not_live())?;
        self.mutate(method.0.function, &func, method.0.table, |_, _| {
            // A method of this engine's function (checked above) that is not deleted is live.
            if method.0.deleted.load(Ordering::Acquire) != OPEN {
                return Err(not_live());
            }
            let edit = Edit {
                added: None,
                lineage: None,
                removed: Some(method.clone()),
            };
            Ok((edit, ()))
        })
    }

    /// Runs one mutation of `func` in `table` (see the module docs). `plan` decides, from the
    /// function's current methods and the new world, what is added and removed; what else it
    /// returns is handed back once the mutation is done.
    fn mutate<R>(
        &self,
        f: Function,
        func: &FunctionData<L>,
        table: MethodTable,
        plan: impl FnOnce(&MethodLists<L>, u64) -> Result<(Edit<L>, R), Error>,
    ) -> Result<R, Error> {
        let inner = &*self.inner;
        let table_name = inner.check_table(table)?;
        let writer = inner.writer.lock();
        let world = inner.world.current().next().get();
        let registry = inner.dispatcher.registry(f.id);
        let mut registry = registry.edit();
        let lists = func.lists.load_full();

        // Everything that runs user code, before anything changes.
        let prepared = catch_unwind(AssertUnwindSafe(|| {
            let (edit, result) = plan(&lists, world)?;
            let new_lists = inner.edited_lists(&lists, table.id, &edit);
            let changed = registry.changed_by(
                &inner.lattice,
                &new_lists,
                table.id,
                world,
                edit.added.as_ref(),
                edit.removed.as_ref(),
            );
            Ok((edit, result, new_lists, changed))
        }));
        let (edit, result, new_lists, changed) = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => return Err(error),
            Err(panic) => {
                drop(registry);
                drop(writer);
                resume_unwind(panic);
            }
        };

        // The point of no return: nothing below runs user code. No user value is hashed,
        // compared, cloned or dropped until the world is published (`inner.release`).
        if let Some(old) = &edit.removed {
            old.0.deleted.store(world, Ordering::Release);
        }
        if let (Some(added), None) = (&edit.added, edit.lineage) {
            // A new lineage, appended last.
            let index = new_lists.lineage_count(table.id) - 1;
            func.index_lineage(table.id, added.0.signature_key, index);
        }
        func.lists.store(new_lists);
        let unregistered = registry.commit(&changed);
        drop(registry);
        let (method, verb) = match (&edit.added, &edit.removed) {
            (Some(new), Some(_)) => (new, "replaced in"),
            (Some(new), None) => (new, "added to"),
            (None, Some(old)) => (old, "deleted from"),
            (None, None) => unreachable!("a mutation adds or removes a method"),
        };
        let mutation = Arc::new(Mutation {
            world,
            method: Arc::new(method.clone()),
            verb,
            table: table_name,
        });
        let mut released = inner.invalidate(world, &mutation, changed, edit.removed.as_ref());
        released.other.push(Box::new(unregistered));
        inner.world.publish(World::from_raw(world));
        // Under the writer lock, after the walk: nodes of dropped instances can be freed.
        inner.graph.recycle();
        drop(writer);
        #[cfg(feature = "tracing")]
        inner.trace(&mutation, &released);
        inner.release(released);
        self.after_mutation(usize::from(edit.removed.is_some()));
        Ok(result)
    }
}

impl<L: Lattice> EngineInner<L> {
    /// Reports a mutation, and every code instance it invalidated with its why-chain, to
    /// `tracing` (targets `compiler_caching::mutation` and `compiler_caching::invalidation`).
    /// Describing runs user code (types' `Display`); the mutation is complete, so a panic there
    /// is only counted.
    #[cfg(feature = "tracing")]
    fn trace(&self, mutation: &Mutation, released: &Released) {
        let traced = catch_unwind(AssertUnwindSafe(|| {
            tracing::info!(
                target: "compiler_caching::mutation",
                world = mutation.world,
                invalidated = released.lowered.count,
                "{mutation}"
            );
            if tracing::enabled!(target: "compiler_caching::invalidation", tracing::Level::DEBUG) {
                for &node in &released.lowered.nodes {
                    let Some(label) = self.graph.label(node) else {
                        continue;
                    };
                    if let Some(why) = crate::graph::explain(&self.graph, node) {
                        tracing::debug!(
                            target: "compiler_caching::invalidation",
                            code_instance = %label,
                            world = why.world.get(),
                            "invalidated: {why}"
                        );
                    }
                }
            }
        }));
        if traced.is_err() {
            self.stats.add(Counter::UserCodePanic, 1);
        }
    }

    /// The function's method lists once `edit` is applied to `table`: the added method appended
    /// (a deletion only marks the method; it stays listed for older worlds until reclamation
    /// drops it). Persistent lists make this cost the same however long the function's history.
    fn edited_lists(
        &self,
        lists: &Arc<MethodLists<L>>,
        table: u32,
        edit: &Edit<L>,
    ) -> Arc<MethodLists<L>> {
        match &edit.added {
            Some(added) => Arc::new(lists.with_added(
                table,
                edit.lineage,
                added.clone(),
                edit.removed.is_some(),
            )),
            None => Arc::clone(lists),
        }
    }

    /// Closes the validity of the changed dispatch answers and of everything compiled for the
    /// replaced or deleted method, and propagates through every dependent. Runs no user code:
    /// what the walk lets go of is returned, to be dropped once the mutation is over.
    fn invalidate(
        &self,
        world: u64,
        mutation: &Arc<Mutation>,
        changed: Vec<Arc<DispatchNode<L>>>,
        removed: Option<&Method<L>>,
    ) -> Released {
        let graph = &self.graph;
        let mut released = Released::default();
        let mut seeds: Vec<NodeRef> = Vec::new();
        for node in &changed {
            node.validity.lower(world);
            let call: Describe = Arc::clone(node) as Describe;
            let cause = || Cause::Dispatch {
                mutation: Arc::clone(mutation),
                call: Arc::clone(&call),
            };
            seeds.extend(walk::seed_from_edges(
                graph,
                &node.edges,
                world,
                cause,
                &mut released.lowered,
            ));
        }
        self.stats
            .add(Counter::DispatchInvalidated, changed.len() as u64);
        walk::propagate(graph, seeds, world, &mut released.lowered);
        let changed_count = changed.len();
        released.other.push(Box::new(changed));
        if let Some(method) = removed {
            // Read after the method was marked deleted: an instance made since is compiled
            // against the mark (see `crate::cache`).
            for mi in method.live_instances() {
                let instance: Describe = Arc::new(mi.clone());
                let cause = || Cause::Method {
                    mutation: Arc::clone(mutation),
                    instance: Arc::clone(&instance),
                };
                for slot in mi.live_slots() {
                    let mut seeds = slot.invalidate_versions(world, &cause);
                    released.lowered.extend(&seeds);
                    seeds.extend(walk::seed_from_edges(
                        graph,
                        slot.edges(),
                        world,
                        cause,
                        &mut released.lowered,
                    ));
                    walk::propagate(graph, seeds, world, &mut released.lowered);
                    released.other.push(Box::new(slot));
                }
                released.other.push(Box::new(mi));
            }
        }
        let touched = released.lowered.count;
        self.stats.add(Counter::Invalidated, touched as u64);
        self.note_garbage(touched + changed_count);
        released
    }
}
