//! A world range `[min, max)` whose `max` starts open and only ever decreases.

use crate::sync::{AtomicU64, Ordering};
use crate::world::OPEN;

/// The validity of one cached result: `min` only ever decreases (when the same answer is proven
/// for earlier worlds), `max` only ever decreases (when an invalidation closes it).
#[derive(Debug)]
pub struct Validity {
    compile_world: u64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Validity {
    /// A validity for a result computed in `compile_world`, valid from `min`, with an open end.
    pub fn new(compile_world: u64, min: u64) -> Self {
        Validity {
            compile_world,
            min: AtomicU64::new(min),
            max: AtomicU64::new(OPEN),
        }
    }

    /// The world the result was computed in.
    #[inline]
    #[cfg_attr(not(loom), allow(dead_code))] // the loom models select edges by it
    pub fn compile_world(&self) -> u64 {
        self.compile_world
    }

    /// The first world the result is valid in.
    #[inline]
    pub fn min(&self) -> u64 {
        self.min.load(Ordering::Relaxed)
    }

    /// Extends the range back to `min` if it starts later. Only for results proven identical
    /// over the added worlds; a reader that misses the extension merely recomputes.
    pub fn extend_min(&self, min: u64) {
        self.min.fetch_min(min, Ordering::Relaxed);
    }

    /// The first world the result is no longer valid in ([`OPEN`] while unbounded).
    ///
    /// `Acquire` pairs with the `Release` in [`Validity::lower`] so a reader that sees a lowered
    /// bound also sees what the invalidator wrote before lowering it (for example its cause).
    #[inline]
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    /// Whether `world` is in `[min, max)`.
    #[inline]
    pub fn contains(&self, world: u64) -> bool {
        self.min() <= world && world < self.max()
    }

    /// Lowers `max` to `world` if it is higher. Returns whether this call lowered it, so that of
    /// many concurrent invalidators exactly one goes on to propagate.
    pub fn lower(&self, world: u64) -> bool {
        // Most edges an invalidation walks lead to an instance it has already lowered (a DAG
        // reaches it along several paths); a load settles those without a locked instruction.
        if self.max.load(Ordering::Acquire) <= world {
            return false;
        }
        // Sequentially consistent: a walk that then finds nothing registered on this node skips
        // it, relying on this lowering being ordered before that check (`crate::raw::edges`).
        self.max.fetch_min(world, Ordering::SeqCst) > world
    }
}
