//! World ages: the engine's logical clock.
//!
//! Every method-table mutation advances the world by exactly one. A mutation is prepared while the
//! old world is still current (new methods carry the new world as their `defined` age, so readers in
//! the old world ignore them), its invalidations are applied, and only then is the new world
//! published with a `Release` store. A reader that `Acquire`-loads world `w` therefore sees every
//! effect of every mutation up to `w`, and none of a later one: mutations are atomic to readers.

use std::fmt;

use crate::sync::{AtomicU64, Ordering};

/// A world age. The first world of every engine is [`World::FIRST`].
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct World(u64);

impl World {
    /// The world every engine starts in.
    pub const FIRST: World = World(1);

    /// The raw counter value.
    pub const fn get(self) -> u64 {
        self.0
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) const fn from_raw(raw: u64) -> World {
        World(raw)
    }

    /// The world after this one (public only to the loom models).
    #[cfg(loom)]
    pub const fn next(self) -> World {
        World(self.0 + 1)
    }

    /// The world after this one.
    #[cfg(not(loom))]
    pub(crate) const fn next(self) -> World {
        World(self.0 + 1)
    }
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "World({})", self.0)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The raw value of "no upper bound yet" in the atomics that hold a validity's upper end.
pub(crate) const OPEN: u64 = u64::MAX;

/// A half-open range of worlds `[min, max)`; `max == None` means "still valid in the newest world".
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct WorldRange {
    /// The first world in the range.
    pub min: World,
    /// The first world after the range, if the range has been closed by an invalidation.
    pub max: Option<World>,
}

impl WorldRange {
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn from_raw(min: u64, max: u64) -> WorldRange {
        WorldRange {
            min: World(min),
            max: (max != OPEN).then_some(World(max)),
        }
    }

    /// Whether `world` lies in the range.
    pub fn contains(&self, world: World) -> bool {
        self.min <= world && self.max.is_none_or(|max| world < max)
    }
}

impl fmt::Display for WorldRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(max) => write!(f, "[{}, {})", self.min, max),
            None => write!(f, "[{}, ∞)", self.min),
        }
    }
}

/// The engine's world counter. Only the (serialized) mutation path advances it. Public only to the
/// loom models, which see it under `cfg(loom)`.
#[derive(Debug)]
#[cfg_attr(not(loom), allow(unreachable_pub))]
pub struct WorldCounter {
    current: crossbeam_utils::CachePadded<AtomicU64>,
}

impl Default for WorldCounter {
    fn default() -> Self {
        WorldCounter::new()
    }
}

#[cfg_attr(not(loom), allow(unreachable_pub))]
impl WorldCounter {
    /// A counter at [`World::FIRST`].
    pub fn new() -> Self {
        WorldCounter {
            current: crossbeam_utils::CachePadded::new(AtomicU64::new(World::FIRST.0)),
        }
    }

    /// The newest published world. `Acquire` pairs with [`WorldCounter::publish`], so everything a
    /// mutation did before publishing is visible to whoever observes its world.
    #[inline]
    pub fn current(&self) -> World {
        World(self.current.load(Ordering::Acquire))
    }

    /// Publishes `world`, which must be the successor of the current one. Callers hold the
    /// engine's writer lock, so there is a single writer and the counter is monotonic.
    pub fn publish(&self, world: World) {
        debug_assert_eq!(world.0, self.current.load(Ordering::Relaxed) + 1);
        self.current.store(world.0, Ordering::Release);
    }
}
