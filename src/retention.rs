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
//! [`RECLAIM_MIN_GARBAGE`] entries and more than half of what survived the last reclamation), so
//! memory stays proportional to what is live under any rate of redefinition, and each
//! reclamation's cost is paid for by the garbage it removes. [`Engine::reclaim`](crate::Engine::reclaim)
//! runs one on demand.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::Error;
use crate::world::{World, WorldCounter};

/// Garbage entries below which automatic reclamation never runs.
pub const RECLAIM_MIN_GARBAGE: usize = 1024;

#[derive(Debug)]
struct PinState {
    counts: BTreeMap<u64, usize>,
    /// Worlds below this may have been reclaimed and cannot be pinned.
    floor: u64,
}

/// The registry of pinned worlds.
#[derive(Debug)]
pub(crate) struct Pins {
    state: Mutex<PinState>,
}

impl Pins {
    pub(crate) fn new() -> Self {
        Pins {
            state: Mutex::new(PinState {
                counts: BTreeMap::new(),
                floor: World::FIRST.get(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins the current world. Reading the world under the lock orders the pin against a
    /// concurrent horizon computation.
    pub(crate) fn pin_current(&self, counter: &WorldCounter) -> World {
        let mut state = self.lock();
        let world = counter.current();
        *state.counts.entry(world.get()).or_insert(0) += 1;
        world
    }

    /// Pins `world` if it is still retained and not in the future.
    pub(crate) fn pin(&self, world: World, counter: &WorldCounter) -> Result<(), Error> {
        let mut state = self.lock();
        let current = counter.current();
        if world > current {
            return Err(Error::FutureWorld { world, current });
        }
        if world.get() < state.floor {
            return Err(Error::WorldNotRetained {
                world,
                oldest: World::from_raw(state.floor),
            });
        }
        *state.counts.entry(world.get()).or_insert(0) += 1;
        Ok(())
    }

    pub(crate) fn unpin(&self, world: World) {
        let mut state = self.lock();
        if let Some(count) = state.counts.get_mut(&world.get()) {
            *count -= 1;
            if *count == 0 {
                state.counts.remove(&world.get());
            }
        }
    }

    /// The oldest world that must stay answerable; raises the floor to it.
    pub(crate) fn horizon(&self, counter: &WorldCounter) -> u64 {
        let mut state = self.lock();
        let current = counter.current().get();
        let oldest_pin = state.counts.keys().next().copied().unwrap_or(current);
        let horizon = oldest_pin.min(current).max(state.floor);
        state.floor = horizon;
        horizon
    }

    /// The oldest world that can still be pinned.
    pub(crate) fn floor(&self) -> World {
        World::from_raw(self.lock().floor)
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
