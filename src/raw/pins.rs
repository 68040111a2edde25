//! The registry of pinned worlds, and the horizon below which nothing can be asked about.
//!
//! A pin and a horizon computation are ordered by a lock: a pin takes its shard's, the horizon
//! takes all of them. A pin either lands before the horizon is computed (and holds it down) or
//! after (and is refused if its world fell below the floor). The current world is read under the
//! lock, so a pin of "the current world" can never be of a world the horizon has already passed.
//! The loom model `pin_vs_reclaim` checks this.

use crate::sync::{thread_shard, Mutex};

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

/// Pins registered by one shard of threads: `(world, count)` pairs, usually one or two.
type Shard = crossbeam_utils::CachePadded<Mutex<Vec<(u64, usize)>>>;

#[cfg(not(loom))]
const SHARDS: usize = 16;
#[cfg(loom)]
const SHARDS: usize = 2;

/// Pinned worlds and the reclamation floor.
///
/// Pins are spread over cache-padded shards chosen by thread, so threads pinning the current
/// world at once do not contend on one lock (one shared mutex serialized every pin in
/// `perf hits`).
///
/// - Pinning the *current* world takes only the shard's lock and reads the world under it. The
///   horizon is computed under the floor lock by reading the current world first and then
///   visiting the shards one by one: a pin the visit misses read the world later, so it pinned a
///   world at or above the horizon anyway.
/// - Pinning an *older* world (rare) also takes the floor lock, so it is ordered against the whole
///   horizon computation and is refused if its world fell below the floor.
#[derive(Debug)]
pub struct Pins {
    shards: Box<[Shard]>,
    floor: Mutex<u64>,
}

impl Default for Pins {
    fn default() -> Self {
        Pins::new()
    }
}

/// Which shard a pin was registered in; needed to release it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinSlot(usize);

impl Pins {
    /// No pins; the floor is world 1.
    pub fn new() -> Self {
        Pins {
            shards: (0..SHARDS)
                .map(|_| crossbeam_utils::CachePadded::new(Mutex::new(Vec::new())))
                .collect(),
            floor: Mutex::new(1),
        }
    }

    fn add(shard: &mut Vec<(u64, usize)>, world: u64) {
        match shard.iter_mut().find(|(w, _)| *w == world) {
            Some((_, count)) => *count += 1,
            None => shard.push((world, 1)),
        }
    }

    /// Pins the world `current()` returns, read under the shard's lock.
    pub fn pin_current(&self, current: impl FnOnce() -> u64) -> (u64, PinSlot) {
        let slot = PinSlot(thread_shard() % SHARDS);
        let mut shard = self.shards[slot.0].lock();
        let world = current();
        Self::add(&mut shard, world);
        (world, slot)
    }

    /// Pins `world` if it is at or above the floor and not after `current()`.
    pub fn pin(&self, world: u64, current: impl FnOnce() -> u64) -> Result<PinSlot, PinError> {
        let floor = self.floor.lock();
        let current = current();
        if world > current {
            return Err(PinError::Future { current });
        }
        if world < *floor {
            return Err(PinError::Reclaimed { oldest: *floor });
        }
        let slot = PinSlot(thread_shard() % SHARDS);
        Self::add(&mut self.shards[slot.0].lock(), world);
        drop(floor);
        Ok(slot)
    }

    /// Releases one pin of `world` registered in `slot`.
    pub fn unpin(&self, world: u64, slot: PinSlot) {
        let mut shard = self.shards[slot.0].lock();
        if let Some(i) = shard.iter().position(|(w, _)| *w == world) {
            shard[i].1 -= 1;
            if shard[i].1 == 0 {
                shard.swap_remove(i);
            }
        }
    }

    /// The oldest world that must stay answerable (the oldest pin, or `current()` if none is
    /// older), and raises the floor to it: from now on no older world can be pinned.
    pub fn horizon(&self, current: impl FnOnce() -> u64) -> u64 {
        let mut floor = self.floor.lock();
        let mut horizon = current();
        for shard in self.shards.iter() {
            if let Some(oldest) = shard.lock().iter().map(|(w, _)| *w).min() {
                horizon = horizon.min(oldest);
            }
        }
        let horizon = horizon.max(*floor);
        *floor = horizon;
        horizon
    }

    /// The oldest world that can still be pinned.
    pub fn floor(&self) -> u64 {
        *self.floor.lock()
    }
}
