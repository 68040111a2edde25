//! Retention: which worlds can still be asked about, and reclaiming what none of them can see.
//!
//! A reader that works in a world pins it with a [`Guard`](crate::Guard). Reclamation computes the
//! *horizon*: the oldest world that is pinned, or the current world if none older is. Everything
//! whose validity ends at or before the horizon — replaced and deleted methods, dispatch results,
//! code instances — can never be returned again and is dropped from the engine's structures.
//!
//! Dropping an entry from a structure is not the same as freeing it: a reader may hold a reference
//! obtained under its guard. Memory safety rests on the guard's epoch-based protection (seize,
//! through papaya) and on reference counts, never on timing: an entry removed from a map is freed
//! only once every guard that could have seen it has been dropped.
//!
//! Reclamation runs by itself after a mutation once enough garbage has accumulated (more than
//! [`RECLAIM_MIN_GARBAGE`] entries and more than what survived the last reclamation), so memory
//! stays within about twice what is live under any rate of redefinition, and each reclamation's
//! cost — a pass over the survivors — is spread over at least as many units of garbage: a
//! definition's amortized share stays the same however many entries are cached. [`Engine::reclaim`](crate::Engine::reclaim)
//! runs one on demand.

use crate::error::Error;
use crate::raw::pins::{PinError, PinSlot};
use crate::world::{World, WorldCounter};

/// Garbage entries below which automatic reclamation never runs.
pub const RECLAIM_MIN_GARBAGE: usize = 1024;

/// The engine's pins: [`crate::raw::pins::Pins`] read against the world counter, with typed
/// errors.
#[derive(Debug, Default)]
pub(crate) struct Pins(crate::raw::pins::Pins);

impl Pins {
    pub(crate) fn new() -> Self {
        Pins::default()
    }

    pub(crate) fn pin_current(&self, counter: &WorldCounter) -> (World, PinSlot) {
        let (world, slot) = self.0.pin_current(|| counter.current().get());
        (World::from_raw(world), slot)
    }

    pub(crate) fn pin(&self, world: World, counter: &WorldCounter) -> Result<PinSlot, Error> {
        self.0
            .pin(world.get(), || counter.current().get())
            .map_err(|e| match e {
                PinError::Future { current } => Error::FutureWorld {
                    world,
                    current: World::from_raw(current),
                },
                PinError::Reclaimed { oldest } => Error::WorldNotRetained {
                    world,
                    oldest: World::from_raw(oldest),
                },
            })
    }

    pub(crate) fn unpin(&self, world: World, slot: PinSlot) {
        self.0.unpin(world.get(), slot);
    }

    pub(crate) fn horizon(&self, counter: &WorldCounter) -> u64 {
        self.0.horizon(|| counter.current().get())
    }

    pub(crate) fn floor(&self) -> World {
        World::from_raw(self.0.floor())
    }
}

/// What a reclamation dropped, and what is live afterwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Census {
    /// Methods kept in the method tables (live ones and those a pinned world can see).
    pub methods: usize,
    /// Entries in the dispatch caches.
    pub dispatch_entries: usize,
    /// Code-cache slots `(method instance, owner)` across all caches.
    pub slots: usize,
    /// Code instances across all caches.
    pub code_instances: usize,
}

impl Census {
    /// All entries counted.
    pub fn total(&self) -> usize {
        self.methods + self.dispatch_entries + self.slots + self.code_instances
    }
}
