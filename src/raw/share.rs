//! Work one thread offers to helpers that may or may not come.
//!
//! The invalidation walk runs on the thread that mutated the engine, which holds the engine's
//! writer lock for the whole walk. It must never wait *inside* rayon for the workers it brought
//! in: a rayon wait runs whatever other jobs are queued meanwhile, and a queued job that mutates
//! the same engine then blocks on the lock its own thread holds, forever. So the walking thread
//! (the *owner*) offers batches of pending work here and starts helpers with `rayon::spawn`; it
//! keeps working and, when it runs out, takes offered batches back or waits on a condition
//! variable (not in rayon) for the helpers that are working on a batch they took. A helper that
//! starts late, when nothing is offered, leaves at once: the owner never waits for a helper that
//! has not taken work, so a busy or stalled pool only slows the walk, never stops it.
//!
//! The owner is done when nothing is offered and no helper holds a batch: only holders offer, so
//! nothing can be offered afterwards. The loom models `share_owner_sees_every_result` and
//! `share_late_helper_finds_nothing` check this.

use crate::sync::{Condvar, Mutex};

/// Batches of `T` on offer, and the results `R` helpers leave.
#[derive(Debug)]
pub struct Share<T, R> {
    state: Mutex<State<T, R>>,
    /// Signalled when a batch is offered or a helper finishes one: only the owner waits on it.
    changed: Condvar,
}

#[derive(Debug)]
struct State<T, R> {
    offered: Vec<Vec<T>>,
    /// Helpers started and not yet left.
    helpers: usize,
    /// Helpers holding a batch.
    working: usize,
    results: Vec<R>,
}

/// What [`Share::offer`] tells the offering thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// Start one more helper: fewer than the limit are running.
    StartHelper,
    /// Enough helpers are running.
    Enough,
}

impl<T, R> Default for Share<T, R> {
    fn default() -> Self {
        Share::new()
    }
}

impl<T, R> Share<T, R> {
    /// Nothing offered, no helper.
    pub fn new() -> Self {
        Share {
            state: Mutex::new(State {
                offered: Vec::new(),
                helpers: 0,
                working: 0,
                results: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Whether nothing is on offer: the owner or a helper offers part of its work only then, so
    /// that offered work is work someone is about to take.
    pub fn is_hungry(&self) -> bool {
        self.state.lock().offered.is_empty()
    }

    /// Offers `batch`. Counts a new helper (which the caller then starts, and which must call
    /// [`Share::take`] until it returns `None`) if fewer than `max_helpers` are running.
    pub fn offer(&self, batch: Vec<T>, max_helpers: usize) -> Offered {
        let mut state = self.state.lock();
        state.offered.push(batch);
        self.changed.notify_all();
        if state.helpers < max_helpers {
            state.helpers += 1;
            Offered::StartHelper
        } else {
            Offered::Enough
        }
    }

    /// A helper takes a batch, leaving `result` (what it did with its last batch, if any). `None`
    /// means nothing is on offer: the helper has left and must not call again.
    pub fn take(&self, result: Option<R>) -> Option<Vec<T>> {
        let mut state = self.state.lock();
        if let Some(result) = result {
            state.results.push(result);
            state.working -= 1;
            self.changed.notify_all();
        }
        match state.offered.pop() {
            Some(batch) => {
                state.working += 1;
                Some(batch)
            }
            None => {
                state.helpers -= 1;
                None
            }
        }
    }

    /// The owner, out of work, takes an offered batch back, or waits until a helper offers one or
    /// every helper has finished its batch. `None`: all the work is done, and
    /// [`Share::take_results`] holds every helper's result.
    pub fn owner_next(&self) -> Option<Vec<T>> {
        let mut state = self.state.lock();
        loop {
            if let Some(batch) = state.offered.pop() {
                return Some(batch);
            }
            if state.working == 0 {
                return None;
            }
            state = self.changed.wait(state);
        }
    }

    /// The results helpers left, once [`Share::owner_next`] returned `None`.
    pub fn take_results(&self) -> Vec<R> {
        std::mem::take(&mut self.state.lock().results)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Offered, Share};

    #[test]
    fn the_owner_takes_back_what_no_helper_took() {
        let share: Share<u32, u32> = Share::new();
        assert!(share.is_hungry());
        assert_eq!(share.offer(vec![1, 2], 1), Offered::StartHelper);
        assert_eq!(
            share.offer(vec![3], 1),
            Offered::Enough,
            "one helper at most"
        );
        assert!(!share.is_hungry());
        assert_eq!(share.owner_next(), Some(vec![3]));
        assert_eq!(share.owner_next(), Some(vec![1, 2]));
        assert_eq!(share.owner_next(), None);
        // The counted helper starts late: nothing is left for it.
        assert_eq!(share.take(None), None);
        assert!(share.take_results().is_empty());
    }

    #[test]
    fn the_owner_waits_for_a_helper_holding_a_batch() {
        let share: Share<u32, u32> = Share::new();
        assert_eq!(share.offer(vec![1], 4), Offered::StartHelper);
        let batch = share.take(None).expect("offered");
        // Every interleaving of the owner's wait with the helper is the loom models' business;
        // here the owner starts waiting first or not, and must see the result either way.
        std::thread::scope(|s| {
            let owner = s.spawn(|| share.owner_next());
            assert_eq!(share.take(Some(batch.len() as u32)), None);
            assert_eq!(owner.join().unwrap(), None);
        });
        assert_eq!(share.take_results(), vec![1]);
    }
}
