//! Pinned worlds, and the horizon below which nothing can be asked about.
//!
//! Every thread that pins a world has a *slot* of its own: a cache-padded word where it announces
//! the oldest world it has pinned (or nothing). Pinning the current world writes only that word:
//!
//! 1. read the current world `w`;
//! 2. announce `w` in the slot, then issue a *light* barrier;
//! 3. read the current world again; if it is still `w`, `w` is pinned, otherwise start over.
//!
//! No lock, no read-modify-write, no shared line written. A nested pin on a thread that already
//! announced a world (its announcement is at most the current world) only records itself in the
//! thread's own list; as guards drop, the announcement rises to the oldest world still pinned.
//!
//! Reclamation computes the horizon under the floor lock, with the world held still by the
//! engine's writer lock: it reads the current world, issues a *heavy* barrier, then reads every
//! slot. The heavy barrier pairs with the light ones (both are ordered in one total order, like
//! sequentially consistent fences): either a pinning thread's barrier comes first, and the scan
//! sees its announcement, or the heavy one does, and the thread's second read sees the world the
//! horizon was computed from, so it pins a world at or above the horizon. Light barriers are
//! compiler fences on the fast path; the heavy one is a process-wide barrier (the `membarrier`
//! system call where the kernel has it, otherwise a sequentially consistent fence on both
//! sides), paid once per reclamation.
//!
//! Pinning an *older* world (rare) announces it under the floor lock, ordered against every
//! horizon computation, and is refused if the world fell below the floor.
//!
//! A slot belongs to one thread: guards are not `Send`, so a guard is dropped on the thread that
//! pinned. When a thread exits, its idle slots are given back for reuse; a slot still pinned then
//! (a guard leaked, or dropped later from another thread-local's destructor) stays announced until
//! that guard is dropped. The loom models `pin_vs_reclaim`, `old_world_pin_vs_reclaim` and
//! `pin_without_the_light_barrier_is_caught` check the protocol.

use std::cell::RefCell;

use crate::sync::{heavy_barrier, light_barrier, Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// How a thread's list of slots refers to their registry: weakly, so that a thread that outlives
/// an engine does not keep its registry (loom has no weak pointers; models are short-lived).
#[cfg(not(loom))]
type RegistryRef = std::sync::Weak<Registry>;
#[cfg(loom)]
type RegistryRef = Arc<Registry>;

#[cfg(not(loom))]
fn registry_ref(registry: &Arc<Registry>) -> RegistryRef {
    Arc::downgrade(registry)
}
#[cfg(loom)]
fn registry_ref(registry: &Arc<Registry>) -> RegistryRef {
    Arc::clone(registry)
}

#[cfg(not(loom))]
fn registry_alive(registry: &RegistryRef) -> Option<Arc<Registry>> {
    registry.upgrade()
}
#[cfg(loom)]
fn registry_alive(registry: &RegistryRef) -> Option<Arc<Registry>> {
    Some(Arc::clone(registry))
}

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

/// What a slot announces when its thread has nothing pinned.
const UNPINNED: u64 = u64::MAX;

/// One thread's announcement.
#[derive(Debug)]
struct Slot {
    /// The oldest world the thread has pinned, or [`UNPINNED`].
    announced: crossbeam_utils::CachePadded<AtomicU64>,
    /// Set when the owning thread exited with pins still live; they are then in `leftover`.
    orphaned: AtomicBool,
    /// The pins of an orphaned slot (its thread's list is gone).
    leftover: Mutex<Worlds>,
    index: u32,
    /// What guards of this slot counted (see [`Pins::unpin`]). Written only by the thread that
    /// owns the slot, so a plain load and store add exactly, without a locked instruction.
    counts: [AtomicU64; COUNTS],
}

/// How many counts a guard hands to [`Pins::unpin`].
pub const COUNTS: usize = 2;

/// A thread's pinned worlds, each with how many guards pin it.
#[derive(Debug, Default)]
struct Worlds(Vec<(u64, u32)>);

// Inlined: a pin and an unpin each run one or two of these on a list of one or two entries.
impl Worlds {
    #[inline]
    fn oldest(&self) -> u64 {
        self.0.iter().map(|&(w, _)| w).min().unwrap_or(UNPINNED)
    }

    #[inline]
    fn add(&mut self, world: u64) {
        match self.0.iter_mut().find(|(w, _)| *w == world) {
            Some((_, n)) => *n += 1,
            None => self.0.push((world, 1)),
        }
    }

    #[inline]
    fn remove(&mut self, world: u64) {
        if let Some(i) = self.0.iter().position(|(w, _)| *w == world) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.swap_remove(i);
            }
        }
    }
}

impl Slot {
    /// Adds `counts` to the slot's. Only the owning thread calls it: a slot belongs to one thread
    /// at a time (guards are not `Send`), and passes to another only through the registry's lock
    /// once every pin of it is gone.
    #[inline]
    fn add(&self, counts: [u64; COUNTS]) {
        for (total, n) in self.counts.iter().zip(counts) {
            if n > 0 {
                total.store(total.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            }
        }
    }

    /// Releases one pin of `world` from `worlds` (the slot's own pins) and announces what is left.
    /// Raising the announcement only lets reclamation go further, so it needs no barrier;
    /// `Release` orders what the thread read under the pin before it.
    #[inline]
    fn unpin(&self, worlds: &mut Worlds, world: u64) {
        // The usual case, a thread's only guard, without the general bookkeeping below.
        if let [(only, 1)] = worlds.0[..] {
            if only == world {
                worlds.0.clear();
                self.announced.store(UNPINNED, Ordering::Release);
                return;
            }
        }
        let before = worlds.oldest();
        worlds.remove(world);
        let after = worlds.oldest();
        if after != before {
            self.announced.store(after, Ordering::Release);
        }
    }
}

/// Every slot of one registry, and those free for reuse.
#[derive(Debug, Default)]
struct Slots {
    all: Vec<Arc<Slot>>,
    free: Vec<u32>,
}

/// The slots of one [`Pins`].
#[derive(Debug, Default)]
struct Registry {
    slots: Mutex<Slots>,
}

impl Registry {
    fn slot(&self, index: u32) -> Arc<Slot> {
        Arc::clone(&self.slots.lock().all[index as usize])
    }

    fn release(&self, slot: &Slot) {
        self.slots.lock().free.push(slot.index);
    }
}

/// One entry of a thread's list: a registry's id, the thread's slot in it, and the worlds the
/// thread has pinned there.
struct Entry {
    id: u64,
    slot: Arc<Slot>,
    registry: RegistryRef,
    worlds: Worlds,
}

/// This thread's slots, one per registry it pinned in.
struct Mine(RefCell<Vec<Entry>>);

impl Drop for Mine {
    fn drop(&mut self) {
        for entry in self.0.get_mut().drain(..) {
            if entry.worlds.0.is_empty() {
                if let Some(registry) = registry_alive(&entry.registry) {
                    registry.release(&entry.slot);
                }
            } else {
                // Guards still live (leaked, or in another thread-local not dropped yet): their
                // pins stay announced and are released through the slot itself.
                *entry.slot.leftover.lock() = entry.worlds;
                entry.slot.orphaned.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(loom)]
loom::thread_local! {
    static MINE: Mine = Mine(RefCell::new(Vec::new()));
}
#[cfg(not(loom))]
thread_local! {
    static MINE: Mine = const { Mine(RefCell::new(Vec::new())) };
}

/// Which slot a pin was announced in; needed to release it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinSlot(u32);

/// Pinned worlds and the reclamation floor (see the module docs).
#[derive(Debug)]
pub struct Pins {
    id: u64,
    registry: Arc<Registry>,
    floor: Mutex<u64>,
}

impl Default for Pins {
    fn default() -> Self {
        Pins::new()
    }
}

/// Distinguishes registries in a thread's list of slots. Not a loom atomic: the value only ever
/// compares equal to itself, whatever it is, so it cannot make loom's replays differ.
static NEXT_PINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Pins {
    /// No pins; the floor is world 1.
    pub fn new() -> Self {
        Pins {
            id: NEXT_PINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            registry: Arc::new(Registry::default()),
            floor: Mutex::new(1),
        }
    }

    /// Runs `f` with the calling thread's slot and its pinned worlds, making the slot if the
    /// thread has none yet.
    #[inline]
    fn with_slot<R>(&self, f: impl FnOnce(&Slot, &mut Worlds) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        let listed = MINE.try_with(|mine| {
            let mut mine = mine.0.borrow_mut();
            if let Some(entry) = mine.iter_mut().find(|e| e.id == self.id) {
                out = Some((f.take().expect("called once"))(
                    &entry.slot,
                    &mut entry.worlds,
                ));
            }
        });
        if let Some(out) = out {
            return out;
        }
        let slot = self.new_slot();
        if listed.is_ok() {
            let mut worlds = Worlds::default();
            let out = (f.take().expect("called once"))(&slot, &mut worlds);
            // Listed for this thread; given back when it exits.
            let _ = MINE.try_with(|mine| {
                let mut mine = mine.0.borrow_mut();
                // Forget the slots of registries (engines) gone since.
                mine.retain(|e| registry_alive(&e.registry).is_some());
                mine.push(Entry {
                    id: self.id,
                    slot: Arc::clone(&slot),
                    registry: registry_ref(&self.registry),
                    worlds,
                });
            });
            out
        } else {
            // The thread is exiting and its list is gone: the slot keeps its own pins and is
            // given back when the last goes.
            slot.orphaned.store(true, Ordering::Relaxed);
            let mut worlds = slot.leftover.lock();
            (f.take().expect("called once"))(&slot, &mut worlds)
        }
    }

    #[cold]
    fn new_slot(&self) -> Arc<Slot> {
        let mut slots = self.registry.slots.lock();
        if let Some(index) = slots.free.pop() {
            let slot = Arc::clone(&slots.all[index as usize]);
            slot.orphaned.store(false, Ordering::Relaxed);
            return slot;
        }
        let index = u32::try_from(slots.all.len()).expect("fewer than 2^32 threads");
        let slot = Arc::new(Slot {
            announced: crossbeam_utils::CachePadded::new(AtomicU64::new(UNPINNED)),
            orphaned: AtomicBool::new(false),
            leftover: Mutex::new(Worlds::default()),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            index,
        });
        slots.all.push(Arc::clone(&slot));
        slot
    }

    /// Pins the world `current()` returns (see the module docs for the protocol). Writes only the
    /// calling thread's slot.
    #[inline]
    pub fn pin_current(&self, current: impl Fn() -> u64) -> (u64, PinSlot) {
        self.with_slot(|slot, worlds| {
            if worlds.0.is_empty() {
                let world = loop {
                    let world = current();
                    slot.announced.store(world, Ordering::Relaxed);
                    light_barrier();
                    if current() == world {
                        break world;
                    }
                };
                worlds.0.push((world, 1));
                return (world, PinSlot(slot.index));
            }
            // The slot already announces a world no newer than any this thread reads now.
            let world = current();
            worlds.add(world);
            (world, PinSlot(slot.index))
        })
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
        let slot = self.with_slot(|slot, worlds| {
            if world < worlds.oldest() {
                slot.announced.store(world, Ordering::Relaxed);
            }
            worlds.add(world);
            PinSlot(slot.index)
        });
        drop(floor);
        Ok(slot)
    }

    /// Releases one pin of `world` announced in `slot` (on the thread that pinned), and adds
    /// `counts` (what the guard tallied) to the slot's, which [`Pins::counted`] sums.
    #[inline]
    pub fn unpin(&self, world: u64, slot: PinSlot, counts: [u64; COUNTS]) {
        let done = MINE.try_with(|mine| {
            let mut mine = mine.0.borrow_mut();
            match mine
                .iter_mut()
                .find(|e| e.id == self.id && e.slot.index == slot.0)
            {
                Some(entry) => {
                    entry.slot.add(counts);
                    entry.slot.unpin(&mut entry.worlds, world);
                    true
                }
                None => false,
            }
        });
        if !matches!(done, Ok(true)) {
            let s = self.registry.slot(slot.0);
            let mut worlds = s.leftover.lock();
            s.add(counts);
            s.unpin(&mut worlds, world);
            if worlds.0.is_empty() && s.orphaned.load(Ordering::Relaxed) {
                drop(worlds);
                s.orphaned.store(false, Ordering::Relaxed);
                self.registry.release(&s);
            }
        }
    }

    /// The oldest world that must stay answerable (the oldest pinned, or `current()` if none is
    /// older), and raises the floor to it: from now on no older world can be pinned. The caller
    /// keeps the world from advancing meanwhile (the engine holds its writer lock).
    pub fn horizon(&self, current: impl FnOnce() -> u64) -> u64 {
        let mut floor = self.floor.lock();
        let current = current();
        heavy_barrier();
        let oldest_pinned = self
            .registry
            .slots
            .lock()
            .all
            .iter()
            .map(|s| s.announced.load(Ordering::Acquire))
            .min()
            .unwrap_or(UNPINNED);
        let horizon = current.min(oldest_pinned).max(*floor);
        *floor = horizon;
        horizon
    }

    /// The sums of the counts guards handed to [`Pins::unpin`], over every slot. Exact once the
    /// guards are dropped (each slot's counts are added by one thread only).
    pub fn counted(&self) -> [u64; COUNTS] {
        let mut sums = [0; COUNTS];
        for slot in &self.registry.slots.lock().all {
            for (sum, count) in sums.iter_mut().zip(&slot.counts) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        sums
    }

    /// The oldest world that can still be pinned.
    pub fn floor(&self) -> u64 {
        *self.floor.lock()
    }
}
