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
//!
//! A running job's [`Job`] (what waiters block on) is made by the first thread that finds the job
//! running, under the slot's lock; [`SlotCell::finish`] removes the job under the same lock and
//! completes the `Job` if one was made. A waiter therefore either finds the job running and its
//! `Job` completed later, or finds it gone; a miss nobody waits on allocates no `Job`. The loom
//! model `slot_dedupes_misses_with_a_job_made_by_the_first_waiter` checks this.

use smallvec::SmallVec;

use super::job::Job;
use crate::sync::{current_thread, Arc, Mutex, MutexGuard, ThreadId};

/// The state of one slot, behind its lock.
#[derive(Debug)]
pub struct SlotState<V, T> {
    /// The versions compiled for the slot, oldest first. Inline while there are one or two (most
    /// slots), so a slot's first compilation allocates no list.
    pub versions: SmallVec<[V; 2]>,
    job: Option<Running<T>>,
    /// The version the running job is compiling, if it started one: dependents may register on it
    /// before it is published (recursion, or a dependency recorded on a running compilation).
    pending: Option<V>,
    /// Dependencies being recorded on the slot whose dependents have not registered their backedge
    /// yet.
    holds: usize,
    retired: bool,
}

/// The job running in a slot. Its [`Job`] (a mutex, a condition variable and an outcome) is made
/// by the first thread that waits on it: most compilations have nobody waiting, and then a miss
/// allocates no job at all.
#[derive(Debug)]
struct Running<T> {
    owner: ThreadId,
    waited_on: Option<Arc<Job<T>>>,
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
    /// The caller now runs the slot's job and must end it with [`SlotCell::finish`].
    Run {
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
        if let Some(running) = &mut state.job {
            let owner = running.owner;
            let job = running
                .waited_on
                .get_or_insert_with(|| Arc::new(Job::owned_by(owner)));
            return Begin::Wait(Arc::clone(job));
        }
        // `start` runs user code (it clones the owner key): if it unwinds, the slot must not be
        // left with a job that nobody will finish.
        let version = match existing {
            Some(v) => Started::Existing(v),
            None => {
                let v = start();
                state.pending = Some(v.clone());
                Started::New(v)
            }
        };
        state.job = Some(Running {
            owner: current_thread(),
            waited_on: None,
        });
        Begin::Run { version }
    }

    /// The job running in the slot, to wait on, if one runs (see [`Job::wait`]).
    pub fn running_job(&self) -> Option<Arc<Job<T>>> {
        let mut state = self.state.lock();
        let running = state.job.as_mut()?;
        let owner = running.owner;
        Some(Arc::clone(
            running
                .waited_on
                .get_or_insert_with(|| Arc::new(Job::owned_by(owner))),
        ))
    }

    /// Ends the job [`SlotCell::begin`] handed out: removes it from the slot, so a later call
    /// starts afresh, then hands `outcome` to every waiter (a waiter finds the job under the lock,
    /// so none can come after it is removed).
    pub fn finish(&self, outcome: T) {
        let mut state = self.state.lock();
        let running = state.job.take();
        let pending = state.pending.take();
        drop(state);
        drop(pending);
        if let Some(job) = running.and_then(|r| r.waited_on) {
            job.complete(outcome);
        }
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
