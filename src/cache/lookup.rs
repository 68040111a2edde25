//! The hit path, and the slot lookups every path starts from.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::code_instance::CodeInstance;
use super::miss::{reentered, Compiled, Held};
use super::slot::{Slot, SlotEntry, SlotQuery, SlotState, Version};
use super::{CacheInner, Compiler, CompilerCache};
use crate::engine::Guard;
use crate::error::{describe, describe_debug, CompileError, Error, Phase};
use crate::graph::SlotNode;
use crate::methods::MethodInstance;
use crate::stats::Counter;
use crate::sync::Arc;
use crate::types::Lattice;

impl<C: Compiler<L>, L: Lattice> CompilerCache<C, L> {
    /// The seed API's `cached_compilation(cache, mi, world, key)`: the linked result of `mi` for
    /// `key` in the guard's world, compiling what is missing.
    ///
    /// A hit (a code instance valid in the world with a linked result) runs no phase, takes no
    /// lock and allocates nothing. The result borrows from the guard.
    #[inline(always)]
    pub fn compile<'g>(
        &'g self,
        guard: &'g Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<&'g C::Linked, CompileError<C::Error>> {
        let inner = &*self.inner;
        if !guard.belongs_to(&inner.engine) {
            return Err(foreign_guard());
        }
        // No unwinding guard here: it would cost the hit a third of its instructions. A panic of
        // the key's `Hash` or `Eq` in this probe reaches the caller, with the cache intact (the
        // hash is computed outside the map, and the map runs `Eq` only while probing).
        let query = SlotQuery::new(mi.address(), key);
        if let Some(linked) = inner.hit(guard.seize(), guard.world().get(), &query) {
            guard.count_code_hit();
            return Ok(linked);
        }
        self.compile_miss(guard, mi, key)
    }

    // Kept out of line so that the hit above inlines into the caller as a probe and a few loads.
    #[cold]
    #[inline(never)]
    fn compile_miss<'g>(
        &'g self,
        guard: &'g Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<&'g C::Linked, CompileError<C::Error>> {
        // Phases catch their own panics; what reaches here is the key's `Hash` or `Eq` (user
        // code) in a lookup outside any job, which leaves nothing half done.
        catch_unwind(AssertUnwindSafe(|| {
            self.compile_miss_unguarded(guard, mi, key)
        }))
        .unwrap_or_else(|payload| Err(key_panicked(mi, &*payload)))
    }

    fn compile_miss_unguarded<'g>(
        &'g self,
        guard: &'g Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<&'g C::Linked, CompileError<C::Error>> {
        let inner = &*self.inner;
        inner.engine.counters().add(Counter::CodeMiss, 1);
        match inner.compile_slow(guard.seize(), guard.world(), mi, key)? {
            // The result must borrow from the guard, so it is read back from the slot's entry,
            // which lists every version valid in a pinned world.
            Compiled::Ready(ci) => inner
                .slots
                .get(&SlotQuery::new(mi.address(), key), guard.seize())
                .and_then(|entry| entry.versions().find(|v| Arc::ptr_eq(v, &ci)))
                .and_then(|v| v.linked.get())
                .ok_or_else(|| {
                    CompileError::Engine(Error::KeyNotReflexive {
                        key: describe_debug(key),
                    })
                }),
            Compiled::Cycle => Err(reentered(mi)),
        }
    }

    /// Like [`CompilerCache::compile`], returning an owned handle to the code instance.
    pub fn compile_instance(
        &self,
        guard: &Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<CodeInstance<C, L>, CompileError<C::Error>> {
        let inner = &*self.inner;
        if let Some(ci) = self.lookup(guard, mi, key)? {
            if ci.linked().is_some() {
                guard.count_code_hit();
                return Ok(ci);
            }
        }
        inner.engine.counters().add(Counter::CodeMiss, 1);
        match inner.compile_slow(guard.seize(), guard.world(), mi, key)? {
            Compiled::Ready(ci) => Ok(CodeInstance(ci)),
            Compiled::Cycle => Err(reentered(mi)),
        }
    }

    /// The code instance valid in the guard's world for `(mi, key)`, whatever its phases, without
    /// compiling anything. Fails only for a guard of another engine ([`Error::ForeignGuard`]).
    pub fn lookup(
        &self,
        guard: &Guard<'_, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<Option<CodeInstance<C, L>>, Error> {
        if !guard.belongs_to(&self.inner.engine) {
            return Err(Error::ForeignGuard);
        }
        let entry = self
            .inner
            .slots
            .get(&SlotQuery::new(mi.address(), key), guard.seize());
        Ok(entry
            .and_then(|entry| entry.valid_in(guard.world().get()))
            .map(|v| CodeInstance(Arc::clone(v))))
    }
}

/// The error for a panic of the owner key's `Hash` or `Eq` while `mi` was looked up.
#[cold]
fn key_panicked<E, L: Lattice>(
    mi: &MethodInstance<L>,
    payload: &(dyn std::any::Any + Send),
) -> CompileError<E> {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    CompileError::Panicked {
        phase: Phase::Infer,
        instance: describe(mi),
        message: format!("the owner key's Hash, Eq or Clone panicked: {message}").into(),
    }
}

/// The error for a guard of another engine.
#[cold]
fn foreign_guard<E>() -> CompileError<E> {
    CompileError::Engine(Error::ForeignGuard)
}

impl<C: Compiler<L>, L: Lattice> CacheInner<C, L> {
    #[inline(always)]
    fn hit<'g>(
        &'g self,
        seize: &'g seize::LocalGuard<'_>,
        world: u64,
        query: &SlotQuery<'_, C::Key>,
    ) -> Option<&'g C::Linked> {
        self.slots.get(query, seize)?.valid_in(world)?.linked.get()
    }

    /// The slot for `(mi, key)`, created (and registered with `mi`) if missing.
    pub(crate) fn slot(
        &self,
        mi: &MethodInstance<L>,
        key: &C::Key,
        seize: &seize::LocalGuard<'_>,
    ) -> Arc<Slot<C, L>> {
        let query = SlotQuery::new(mi.address(), key);
        if let Some(entry) = self.slots.get(&query, seize) {
            return Arc::clone(&entry.slot);
        }
        let slot = Arc::new(Slot::new(
            mi.clone(),
            key.clone(),
            query.hash(),
            Arc::clone(&self.tag),
        ));
        // Registered before the slot can be found, so a replacement of the method always reaches
        // it (a slot that loses the insertion race leaves a dead weak behind). Inserted rather
        // than computed: papaya's insertion is the cheaper of the two, and a miss pays for it.
        let weak = Arc::downgrade(&(Arc::clone(&slot) as Arc<dyn SlotNode>));
        mi.register_slot(weak);
        match self
            .slots
            .try_insert(query.to_key(), SlotEntry::empty(slot), seize)
        {
            Ok(entry) => Arc::clone(&entry.slot),
            Err(occupied) => Arc::clone(&occupied.current.slot),
        }
    }

    /// Takes a hold (see [`crate::raw::slot`]) on the live slot for `(mi, key)`, so that it stays
    /// in the cache until the dependency being recorded registers its backedge, and returns it
    /// with the version `find` picks.
    pub(crate) fn hold(
        &self,
        mi: &MethodInstance<L>,
        key: &C::Key,
        seize: &seize::LocalGuard<'_>,
        find: impl Fn(&SlotState<C, L>) -> Option<Version<C, L>>,
    ) -> Held<C, L> {
        loop {
            let slot = self.slot(mi, key, seize);
            if let Some(version) = slot.cell.hold(&find) {
                return (slot, version);
            }
            // Retired after we found it: the next lookup makes a new one.
        }
    }
}
