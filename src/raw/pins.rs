//! The registry of pinned worlds, and the horizon below which nothing can be asked about.
//!
//! A pin and a horizon computation are ordered by one lock: a pin either lands before the horizon
//! is computed (and holds it down) or after (and is refused if its world fell below the floor).
//! The current world is read under the same lock, so a pin of "the current world" can never be
//! of a world the horizon has already passed. The loom model `pin_vs_reclaim` checks this.

use std::collections::BTreeMap;

use crate::sync::Mutex;

/// Why a world cannot be pinned.
#[derive(Debug, PartialEq, Eq)]
pub enum PinError {
    /// The world has not happened yet.
    Future {
        /// The current world.
        current: u64,
    },
    /// The world is below the floor: it may have been reclaimed.
    Reclaimed {
        /// The oldest world that can still be pinned.
        oldest: u64,
    },
}

#[derive(Debug)]
struct State {
    counts: BTreeMap<u64, usize>,
    floor: u64,
}

/// Pinned worlds and the reclamation floor.
#[derive(Debug)]
pub struct Pins {
    state: Mutex<State>,
}

impl Default for Pins {
    fn default() -> Self {
        Pins::new()
    }
}

impl Pins {
    /// No pins; the floor is world 1.
    pub fn new() -> Self {
        Pins {
            state: Mutex::new(State {
                counts: BTreeMap::new(),
                floor: 1,
            }),
        }
    }

    /// Pins the world `current()` returns, read under the lock.
    pub fn pin_current(&self, current: impl FnOnce() -> u64) -> u64 {
        let mut state = self.state.lock();
        let world = current();
        *state.counts.entry(world).or_insert(0) += 1;
        world
    }

    /// Pins `world` if it is at or above the floor and not after `current()`.
    pub fn pin(&self, world: u64, current: impl FnOnce() -> u64) -> Result<(), PinError> {
        let mut state = self.state.lock();
        let current = current();
        if world > current {
            return Err(PinError::Future { current });
        }
        if world < state.floor {
            return Err(PinError::Reclaimed {
                oldest: state.floor,
            });
        }
        *state.counts.entry(world).or_insert(0) += 1;
        Ok(())
    }

    /// Releases one pin of `world`.
    pub fn unpin(&self, world: u64) {
        let mut state = self.state.lock();
        if let Some(count) = state.counts.get_mut(&world) {
            *count -= 1;
            if *count == 0 {
                state.counts.remove(&world);
            }
        }
    }

    /// The oldest world that must stay answerable (the oldest pin, or `current()` if none is
    /// older), and raises the floor to it: from now on no older world can be pinned.
    pub fn horizon(&self, current: impl FnOnce() -> u64) -> u64 {
        let mut state = self.state.lock();
        let current = current();
        let oldest_pin = state.counts.keys().next().copied().unwrap_or(current);
        let horizon = oldest_pin.min(current).max(state.floor);
        state.floor = horizon;
        horizon
    }

    /// The oldest world that can still be pinned.
    pub fn floor(&self) -> u64 {
        self.state.lock().floor
    }
}
