//! Pinning a world, and the [`Guard`] through which lookups are answered in it.

use std::cell::Cell;
use std::fmt;

use super::{Engine, EngineInner};
use crate::dispatch::{Call, DispatchNode, Lookup, Signature};
use crate::error::Error;
use crate::methods::{Function, MethodInstance, TableStack};
use crate::raw::pins::{PinError, PinSlot};
use crate::sync::Arc;
use crate::types::{DefaultLattice, Lattice};
use crate::world::World;

impl<L: Lattice> Engine<L> {
    /// Pins the current world and returns a guard through which lookups are answered in it.
    ///
    /// Pinning takes no lock and writes only the calling thread's own announcement (see the
    /// `raw::pins` protocol); lookups through the guard take no lock either. Guards nest on a
    /// thread, and are not `Send`: a guard is dropped on the thread that pinned. A long-lived
    /// guard keeps its world, and what it sees, from being reclaimed, so re-pin between batches
    /// of work.
    pub fn pin(&self) -> Guard<'_, L> {
        let inner = &*self.inner;
        let (world, slot) = inner.pins.pin_current(|| inner.world.current().get());
        Guard::new(inner, World::from_raw(world), slot)
    }

    /// Pins an older (or the current) world. Fails with [`Error::WorldNotRetained`] if it has been
    /// reclaimed, or [`Error::FutureWorld`] if it has not happened yet.
    pub fn pin_world(&self, world: World) -> Result<Guard<'_, L>, Error> {
        let inner = &*self.inner;
        let slot = inner
            .pins
            .pin(world.get(), || inner.world.current().get())
            .map_err(|e| match e {
                PinError::Future { current } => Error::FutureWorld {
                    world,
                    current: World::from_raw(current),
                },
                PinError::Reclaimed { oldest } => Error::WorldNotRetained {
                    world,
                    oldest: World::from_raw(oldest),
                },
            })?;
        Ok(Guard::new(inner, world, slot))
    }
}

/// A pinned world: lookups through a guard are answered in its world, without locks.
///
/// The guard also protects what lookups return from reclamation, so references it hands out stay
/// valid for as long as it lives. It is not `Send`: pin on the thread that does the work.
pub struct Guard<'e, L: Lattice = DefaultLattice> {
    engine: &'e EngineInner<L>,
    world: World,
    slot: PinSlot,
    seize: seize::LocalGuard<'e>,
    // Hits are tallied here and added to the engine's counters when the guard is dropped: even a
    // thread-sharded counter costs a thread-local lookup per hit, a large share of a code-cache
    // hit (`bash perf/callgrind.sh`).
    dispatch_hits: Cell<u64>,
    code_hits: Cell<u64>,
}

impl<'e, L: Lattice> Guard<'e, L> {
    fn new(engine: &'e EngineInner<L>, world: World, slot: PinSlot) -> Self {
        Guard {
            engine,
            world,
            slot,
            seize: engine.collector.enter(),
            dispatch_hits: Cell::new(0),
            code_hits: Cell::new(0),
        }
    }

    /// The pinned world.
    pub fn world(&self) -> World {
        self.world
    }

    /// Dispatches a call of `f` with `argtypes` through the global table.
    #[inline(always)]
    pub fn dispatch(&self, f: Function, argtypes: &[L::Type]) -> Result<&MethodInstance<L>, Error> {
        self.dispatch_in(
            TableStack {
                engine: self.engine.id,
                id: 0,
            },
            f,
            argtypes,
        )
    }

    /// Dispatches a call of `f` with `argtypes` through `stack`, in the pinned world. A repeated
    /// call is answered from the dispatch cache: one hash-map probe, no lock, no allocation.
    #[inline(always)]
    pub fn dispatch_in(
        &self,
        stack: TableStack,
        f: Function,
        argtypes: &[L::Type],
    ) -> Result<&MethodInstance<L>, Error> {
        self.answer(stack, f, argtypes, None)
    }

    /// Like [`Guard::dispatch`], with the argument types interned once
    /// ([`Engine::signature`](crate::Engine::signature)): a cached answer is found without running
    /// the types' `Hash` or `Eq`. The answer is the same as for the slice of the same types.
    #[inline(always)]
    pub fn dispatch_signature(
        &self,
        f: Function,
        signature: &Signature<L>,
    ) -> Result<&MethodInstance<L>, Error> {
        self.dispatch_signature_in(
            TableStack {
                engine: self.engine.id,
                id: 0,
            },
            f,
            signature,
        )
    }

    /// Like [`Guard::dispatch_in`], with an interned signature (see
    /// [`Guard::dispatch_signature`]).
    #[inline(always)]
    pub fn dispatch_signature_in(
        &self,
        stack: TableStack,
        f: Function,
        signature: &Signature<L>,
    ) -> Result<&MethodInstance<L>, Error> {
        self.answer(stack, f, signature.types(), Some(signature))
    }

    /// The answer to a call: a cached found method inline ([`Guard::hit`]), anything else out of
    /// line ([`Guard::dispatch_slow`]).
    #[inline(always)]
    fn answer(
        &self,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
        interned: Option<&Signature<L>>,
    ) -> Result<&MethodInstance<L>, Error> {
        match self.hit(stack, f, args, interned) {
            Some(mi) => Ok(mi),
            None => self.dispatch_slow(stack, f, args, interned),
        }
    }

    /// A cached answer that found a method: what most dispatches are. Everything else (a miss, a
    /// cached error, a foreign handle) takes [`Guard::dispatch_slow`], which keeps the error
    /// values and the miss out of the caller's code.
    #[inline(always)]
    fn hit(
        &self,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
        interned: Option<&Signature<L>>,
    ) -> Option<&MethodInstance<L>> {
        let engine = self.engine;
        let call = Call {
            world: self.world.get(),
            stack,
            f,
            args,
        };
        let mi = engine
            .dispatcher
            .hit(&self.seize, engine.tables.engine(), call, interned)?;
        self.dispatch_hits.set(self.dispatch_hits.get() + 1);
        Some(mi)
    }

    #[cold]
    #[inline(never)]
    fn dispatch_slow(
        &self,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
        interned: Option<&Signature<L>>,
    ) -> Result<&MethodInstance<L>, Error> {
        self.lookup(stack, f, args, interned)?.result()
    }

    #[inline]
    fn lookup(
        &self,
        stack: TableStack,
        f: Function,
        args: &[L::Type],
        interned: Option<&Signature<L>>,
    ) -> Result<&Arc<DispatchNode<L>>, Error> {
        let engine = self.engine;
        let call = Call {
            world: self.world.get(),
            stack,
            f,
            args,
        };
        let lookup = engine.dispatcher.dispatch(
            &self.seize,
            &engine.tables,
            &engine.lattice,
            call,
            interned,
        )?;
        Ok(match lookup {
            Lookup::Hit(node) => {
                self.dispatch_hits.set(self.dispatch_hits.get() + 1);
                node
            }
            Lookup::Miss(node) => {
                engine.count_dispatch_miss(node);
                node
            }
        })
    }
}

/// What the code caches use of a guard.
impl<L: Lattice> Guard<'_, L> {
    /// The guard's reclamation guard: what the caches' lookups borrow their results from.
    #[inline]
    pub(crate) fn seize(&self) -> &seize::LocalGuard<'_> {
        &self.seize
    }

    /// Whether the guard pins a world of `engine` (what a cache checks before it uses the guard's
    /// reclamation guard on its maps).
    #[inline]
    pub(crate) fn belongs_to(&self, engine: &Engine<L>) -> bool {
        std::ptr::eq(self.engine, &*engine.inner)
    }

    /// Tallies a code-cache hit, added to the engine's counters when the guard drops.
    #[inline]
    pub(crate) fn count_code_hit(&self) {
        self.code_hits.set(self.code_hits.get() + 1);
    }
}

impl<L: Lattice> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        self.engine.pins.unpin(
            self.world.get(),
            self.slot,
            [self.dispatch_hits.get(), self.code_hits.get()],
        );
    }
}

impl<L: Lattice> fmt::Debug for Guard<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("world", &self.world).finish()
    }
}
