//! The one place the crate takes its synchronization primitives from: atomics, `Arc`, the mutex
//! and condition variable, thread identities, and the lock-free maps.
//!
//! Under `--cfg loom` every atomic, `Arc`, mutex and condition variable used by the protocols in
//! `crate::raw` comes from loom, so the model tests in `loom-tests/` check the shipped code rather
//! than a copy of it. Only `raw` and the world counter are compiled under loom; everything else
//! (papaya, arc-swap, rayon) is outside the models.
//!
//! The mutex never poisons: a panic in a user callback is caught and reported as an error by the
//! compile path, and must not turn every later lock into a second panic.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU64, Ordering},
    Arc,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc, OnceLock, Weak,
};

/// The fast side of an asymmetric barrier pair: issued by a thread after a store that another
/// thread must see before its [`heavy_barrier`] completes. Every light barrier and heavy barrier
/// fall in one total order, as sequentially consistent fences do: if a light barrier comes first,
/// the store before it is visible after the heavy one; if the heavy one comes first, what was
/// visible to its thread before it is visible after the light one.
///
/// On Linux with the `membarrier` system call (the usual case) the light barrier is a compiler
/// fence and the heavy barrier makes every running thread of the process execute a full barrier;
/// elsewhere both are sequentially consistent fences. Under loom, sequentially consistent fences.
#[inline]
pub(crate) fn light_barrier() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    if barriers::process_wide() {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    } else {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// The slow side of the pair (see [`light_barrier`]).
pub(crate) fn heavy_barrier() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    if !barriers::process_wide() || !barriers::heavy() {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether the process-wide barrier is available, found out once.
#[cfg(not(loom))]
mod barriers {
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const PROCESS_WIDE: u8 = 1;
    const FENCES: u8 = 2;

    static STRATEGY: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// Whether light barriers may be compiler fences because heavy ones are process-wide.
    #[inline]
    pub(super) fn process_wide() -> bool {
        match STRATEGY.load(Ordering::Relaxed) {
            UNKNOWN => detect(),
            strategy => strategy == PROCESS_WIDE,
        }
    }

    /// Decides once: every caller that sees a decision sees the same one, and the process is
    /// registered for the expedited barrier before anyone relies on it.
    #[cold]
    fn detect() -> bool {
        let strategy = if register() { PROCESS_WIDE } else { FENCES };
        // A racing detection decides the same; the first stored stands.
        let _ = STRATEGY.compare_exchange(UNKNOWN, strategy, Ordering::SeqCst, Ordering::SeqCst);
        STRATEGY.load(Ordering::SeqCst) == PROCESS_WIDE
    }

    #[cfg(target_os = "linux")]
    fn register() -> bool {
        use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};
        membarrier_query().contains(
            MembarrierQuery::PRIVATE_EXPEDITED | MembarrierQuery::REGISTER_PRIVATE_EXPEDITED,
        ) && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    fn register() -> bool {
        false
    }

    /// Issues the process-wide barrier; `false` if it failed (the caller falls back to a fence,
    /// which is only sound if no light barrier relied on it, so a failure after registration is
    /// not expected).
    #[cfg(target_os = "linux")]
    pub(super) fn heavy() -> bool {
        use rustix::thread::{membarrier, MembarrierCommand};
        membarrier(MembarrierCommand::PrivateExpedited).is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn heavy() -> bool {
        false
    }
}

/// A lock-free map with the crate's fast hasher.
#[cfg(not(loom))]
pub(crate) type Map<K, V> = papaya::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A [`Map`] reclaimed through `collector`: every map of one engine shares its collector, so one
/// reclamation guard (pinned once per lookup) protects reads from all of them.
#[cfg(not(loom))]
pub(crate) fn shared_map<K, V>(collector: &Arc<seize::Collector>) -> Map<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    papaya::HashMap::builder()
        .hasher(rustc_hash::FxBuildHasher)
        .shared_collector(Arc::clone(collector))
        .build()
}

/// A lock-free map whose keys hash themselves to a hash computed beforehand (their `Hash` writes
/// one `u64`, see [`Prehashed`]): the map runs no hashing of its own, and so no user code.
#[cfg(not(loom))]
pub(crate) type PrehashedMap<K, V> = papaya::HashMap<K, V, Prehashed>;

/// A [`PrehashedMap`] reclaimed through `collector`, like [`shared_map`].
#[cfg(not(loom))]
pub(crate) fn shared_prehashed_map<K, V>(collector: &Arc<seize::Collector>) -> PrehashedMap<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    papaya::HashMap::builder()
        .hasher(Prehashed)
        .shared_collector(Arc::clone(collector))
        .build()
}

/// Hashes a key that is a hash already to itself: the table uses it as it is. The keys are Fx
/// hashes, whose last step rotates the best-mixed bits of a product into the low bits a table
/// indexes by.
#[derive(Clone, Copy, Default)]
pub(crate) struct Prehashed;

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

/// See [`Prehashed`].
pub(crate) struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; anything else is folded in, to stay a hash.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(loom)]
use loom::sync as imp;
#[cfg(not(loom))]
use std::sync as imp;

/// A mutex whose lock ignores poisoning (see the module docs for why).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(imp::Mutex<T>);

/// The guard of [`Mutex`].
pub(crate) type MutexGuard<'a, T> = imp::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(imp::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value, through exclusive access (no locking needed).
    #[cfg(not(loom))]
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reader-writer lock whose locks ignore poisoning, like [`Mutex`].
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct RwLock<T>(std::sync::RwLock<T>);

#[cfg(not(loom))]
impl<T> RwLock<T> {
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A read lock if one is to be had without waiting.
    pub(crate) fn try_read(&self) -> Option<std::sync::RwLockReadGuard<'_, T>> {
        match self.0.try_read() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug, Default)]
pub(crate) struct Condvar(imp::Condvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(imp::Condvar::new())
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// An identifier of the calling thread (loom's own under `--cfg loom`).
#[cfg(loom)]
pub(crate) type ThreadId = loom::thread::ThreadId;
/// An identifier of the calling thread (loom's own under `--cfg loom`).
#[cfg(not(loom))]
pub(crate) type ThreadId = std::thread::ThreadId;

/// The calling thread's identifier.
pub(crate) fn current_thread() -> ThreadId {
    #[cfg(loom)]
    return loom::thread::current().id();
    #[cfg(not(loom))]
    return std::thread::current().id();
}

/// A small number identifying the calling thread, for spreading per-thread state over shards.
/// Any value is correct; distinct threads usually get distinct values (threads are numbered in
/// the order they first ask).
#[cfg(not(loom))]
#[inline]
pub(crate) fn thread_shard() -> usize {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.set(v);
        }
        v
    })
}
