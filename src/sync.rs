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
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc, OnceLock, Weak,
};

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

    /// The value, taken out of the mutex.
    #[cfg(not(loom))]
    pub(crate) fn into_inner(self) -> T {
        self.0
            .into_inner()
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
/// Any value is correct; distinct threads usually get distinct values.
///
/// Threads are numbered in the order they first ask. Under loom the numbering restarts with every
/// execution of a model (loom's own thread ids do not: they come from a process-wide counter), so
/// a replayed interleaving puts each thread in the same shard and loom's exploration stays
/// deterministic.
#[inline]
pub(crate) fn thread_shard() -> usize {
    #[cfg(loom)]
    {
        loom::lazy_static! {
            // Not a loom atomic: numbering threads is not part of any protocol being checked.
            static ref NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        }
        loom::thread_local! {
            static SHARD: std::cell::Cell<Option<usize>> = std::cell::Cell::new(None);
        }
        SHARD.with(|s| match s.get() {
            Some(v) => v,
            None => {
                let v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s.set(Some(v));
                v
            }
        })
    }
    #[cfg(not(loom))]
    {
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
}
