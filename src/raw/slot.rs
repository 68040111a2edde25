//! A code-cache slot's locked state, and the protocol that lets reclamation remove an idle slot
//! from its cache without losing a compilation that started in it or a dependency recorded on it.
//!
//! A slot `(method instance, owner key)` holds the versions compiled for it, the job compiling it
//! (see [`super::job`]) and, outside this module, the backedges of what depends on it. The cache
//! finds slots in a lock-free map; reclamation removes a slot once it holds nothing. Finding a slot
//! in the map and locking it are two steps, so a thread can find a slot just before reclamation
//! removes it. Two rules make that harmless:
//!
//! - **Retiring is decided under the slot's lock**, and only for an *idle* slot: no version, no
//!   job, no dependency being recorded ([`SlotCell::hold`]), no backedge. The retired flag is set under
//!   the same lock and the slot is removed from the map before the lock is released.
//! - **Every use starts under the lock by checking the flag**: [`SlotCell::begin`] and
//!   [`SlotCell::hold`] refuse a retired slot, and the caller looks the slot up again (finding the
//!   new one). A job can therefore only start in a slot that is in the map, and while it runs the
//!   slot is not idle; a dependency recorded on a slot keeps it from being retired until the
//!   dependent has registered its backedge, which then does.
//!
//! The loom models `compile_vs_retire` and `hold_vs_retire` check both rules.

use smallvec::SmallVec;

use super::job::Job;
use crate::sync::{Arc, Mutex, MutexGuard};

/// The state of one slot, behind its lock.
#[derive(Debug)]
pub struct SlotState<V, T> {
    /// The versions compiled for the slot, oldest first. Inline while there are one or two (most
    /// slots), so a slot's first compilation allocates no list.
    pub versions: SmallVec<[V; 2]>,
    job: Option<Arc<Job<T>>>,
    /// The version the running job is compiling, if it started one: dependents may register on it
    /// before it is published (recursion, or a dependency recorded on a running compilation).
    pending: Option<V>,
    /// Dependencies being recorded on the slot whose dependents have not registered their backedge
    /// yet.
    holds: usize,
    retired: bool,
}

impl<V, T> SlotState<V, T> {
    /// Whether a job is running in the slot.
    pub fn has_job(&self) -> bool {
        self.job.is_some()
    }

    /// Whether the slot was retired (removed from its map).
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// The version the running job is compiling, if any.
    pub fn pending(&self) -> Option<&V> {
        self.pending.as_ref()
    }
}

/// A slot's locked state.
#[derive(Debug)]
pub struct SlotCell<V, T> {
    state: Mutex<SlotState<V, T>>,
}

/// What [`SlotCell::begin`] found.
#[derive(Debug)]
pub enum Begin<V, T> {
    /// The slot was retired; look it up again.
    Retired,
    /// A finished version.
    Ready(V),
    /// Another thread is compiling: wait on its job, then look again.
    Wait(Arc<Job<T>>),
    /// The caller now owns this job and must end it with [`SlotCell::finish`].
    Run {
        /// The new job, owned by the calling thread.
        job: Arc<Job<T>>,
        /// What the job completes.
        version: Started<V>,
    },
}

/// What a job started by [`SlotCell::begin`] works on.
#[derive(Debug)]
pub enum Started<V> {
    /// A published version valid for the caller that is not finished yet.
    Existing(V),
    /// A new version, the slot's pending one, to compile from the start.
    New(V),
}

impl<V: Clone, T: Clone> Default for SlotCell<V, T> {
    fn default() -> Self {
        SlotCell::new()
    }
}

impl<V: Clone, T: Clone> SlotCell<V, T> {
    /// An empty slot.
    pub fn new() -> Self {
        SlotCell {
            state: Mutex::new(SlotState {
                versions: SmallVec::new(),
                job: None,
                pending: None,
                holds: 0,
                retired: false,
            }),
        }
    }

    /// Locks the state, retired or not. A thread that owns the slot's running job may use it
    /// freely (a slot with a job is never retired); others check [`SlotState::is_retired`].
    pub fn lock(&self) -> MutexGuard<'_, SlotState<V, T>> {
        self.state.lock()
    }

    /// Starts a lookup-or-compile: finds the version `find` picks among the versions and returns
    /// it if `finished` says so; otherwise waits on the running job or starts one. A job that
    /// starts a new version makes it with `start` and holds it as the slot's pending version
    /// until [`SlotCell::finish`].
    pub fn begin(
        &self,
        find: impl Fn(&[V]) -> Option<&V>,
        finished: impl Fn(&V) -> bool,
        start: impl FnOnce() -> V,
    ) -> Begin<V, T> {
        let mut state = self.state.lock();
        if state.retired {
            return Begin::Retired;
        }
        let existing = match find(&state.versions) {
            Some(v) if finished(v) => return Begin::Ready(v.clone()),
            found => found.cloned(),
        };
        if let Some(job) = &state.job {
            return Begin::Wait(Arc::clone(job));
        }
        let job = Arc::new(Job::new());
        state.job = Some(Arc::clone(&job));
        let existing = match existing {
            Some(v) => Started::Existing(v),
            None => {
                let v = start();
                state.pending = Some(v.clone());
                Started::New(v)
            }
        };
        Begin::Run {
            job,
            version: existing,
        }
    }

    /// Ends the job [`SlotCell::begin`] handed out: removes it from the slot, so a later call
    /// starts afresh, then hands `outcome` to every waiter.
    pub fn finish(&self, job: &Job<T>, outcome: T) {
        let mut state = self.state.lock();
        state.job = None;
        let pending = state.pending.take();
        drop(state);
        drop(pending);
        job.complete(outcome);
    }

    /// Records a dependency on the slot that its dependent will register next, and returns the
    /// version `find` picks from the state, or `None` if the slot was retired (look it up again).
    /// Until [`SlotCell::release`], the slot is not retired.
    pub fn hold(&self, find: impl FnOnce(&SlotState<V, T>) -> Option<V>) -> Option<Option<V>> {
        let mut state = self.state.lock();
        if state.retired {
            return None;
        }
        state.holds += 1;
        Some(find(&state))
    }

    /// Ends one [`SlotCell::hold`].
    pub fn release(&self) {
        let mut state = self.state.lock();
        debug_assert!(state.holds > 0, "release without hold");
        state.holds = state.holds.saturating_sub(1);
    }

    /// Retires the slot if it is idle (no version, no job, no hold, and `no_backedges`), calling
    /// `remove` to take it out of its map while the lock is held. Returns whether it did.
    pub fn retire_if_idle(
        &self,
        no_backedges: impl FnOnce() -> bool,
        remove: impl FnOnce(),
    ) -> bool {
        let mut state = self.state.lock();
        if state.retired
            || !state.versions.is_empty()
            || state.job.is_some()
            || state.holds > 0
            || !no_backedges()
        {
            return false;
        }
        state.retired = true;
        remove();
        true
    }
}
