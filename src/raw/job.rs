//! The per-key once-cell that deduplicates compilation, and the wait-for graph that keeps
//! recursive compilation from deadlocking.
//!
//! The first thread to miss a key creates a [`Job`] and runs the work; every other thread that
//! misses the same key waits on the job and receives a clone of its outcome, success or failure.
//! The job is removed from its key before it completes, so a failed job is never seen again and a
//! later call retries.
//!
//! # Cycles
//!
//! Compiling `f` may compile `g`, which may compile `f` again: on one thread (the job's owner is
//! the waiter itself) or across threads (thread 1 owns `f` and waits for `g`, thread 2 owns `g`
//! and waits for `f`). Before blocking, a thread follows the chain "owner of the job I would wait
//! for → job that owner is waiting for → its owner → …" in the [`WaitGraph`]; if the chain comes
//! back to itself, waiting would deadlock, so [`Job::wait`] returns [`Waited::Cycle`] instead and
//! the caller goes on without the result. The chain is read and the new edge added under one lock,
//! so of two threads closing a cycle at the same moment, the second sees the first's edge. This
//! lock is taken only on the blocking path, never on a cache hit.

use std::collections::HashMap;

use crate::sync::{current_thread, Arc, AtomicBool, Condvar, Mutex, Ordering, ThreadId};

/// Who waits on whom. One per engine.
#[derive(Debug, Default)]
pub struct WaitGraph {
    /// waiter → (owner of the job it waits on, whether that job is already done)
    waiting: Mutex<HashMap<ThreadId, (ThreadId, Arc<AtomicBool>)>>,
}

impl WaitGraph {
    /// An empty graph.
    pub fn new() -> Self {
        WaitGraph {
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `thread` is blocked waiting on a job (tests order threads by it).
    #[cfg(any(test, loom))]
    pub fn is_waiting(&self, thread: ThreadId) -> bool {
        self.waiting.lock().contains_key(&thread)
    }
}

/// The outcome of [`Job::wait`].
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    /// The job finished with this outcome.
    Done(T),
    /// Waiting would close a cycle of threads waiting on each other; the caller must go on
    /// without the job's result.
    Cycle,
}

/// How long a waiter yields, checking for the outcome, before it sleeps on the condvar: a few
/// short compilations' worth, and little beside a long one.
#[cfg(not(loom))]
const SPIN_FOR: std::time::Duration = std::time::Duration::from_micros(50);

/// A unit of work run once by its owner thread, whose outcome every waiter receives.
#[derive(Debug)]
pub struct Job<T> {
    owner: ThreadId,
    done: Arc<AtomicBool>,
    outcome: Mutex<Completion<T>>,
    finished: Condvar,
}

#[derive(Debug)]
struct Completion<T> {
    value: Option<T>,
    /// Waiters asleep on `finished`. Read under the lock by the completer, which skips the
    /// wake-up (a system call) when nobody sleeps: waiters usually catch the outcome while
    /// yielding.
    sleepers: usize,
}

impl<T: Clone> Job<T> {
    /// A job owned by the calling thread.
    pub fn new() -> Self {
        Job::owned_by(current_thread())
    }

    /// A job run by `owner` (made by a thread that is about to wait on it).
    pub fn owned_by(owner: ThreadId) -> Self {
        Job {
            owner,
            done: Arc::new(AtomicBool::new(false)),
            outcome: Mutex::new(Completion {
                value: None,
                sleepers: 0,
            }),
            finished: Condvar::new(),
        }
    }

    /// The thread running the job.
    pub fn owner(&self) -> ThreadId {
        self.owner
    }

    /// Whether the job has completed.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Records the outcome and wakes every waiter. Only the first completion counts.
    pub fn complete(&self, outcome: T) {
        let mut slot = self.outcome.lock();
        if slot.value.is_none() {
            slot.value = Some(outcome);
            self.done.store(true, Ordering::Release);
        }
        let sleepers = slot.sleepers;
        drop(slot);
        if sleepers > 0 {
            self.finished.notify_all();
        }
    }

    /// Blocks until the job completes and returns its outcome, unless blocking would deadlock
    /// (see the module docs), in which case it returns [`Waited::Cycle`] at once.
    pub fn wait(&self, graph: &WaitGraph) -> Waited<T> {
        let me = current_thread();
        // A job that has completed holds nobody up, whoever owned it and whatever its former owner
        // waits on now: only a running job can be part of a cycle.
        let registered = !self.is_done() && {
            if self.owner == me {
                return Waited::Cycle;
            }
            let mut waiting = graph.waiting.lock();
            // Checked again under the graph lock. Wait-for entries change only under this lock,
            // so while the walk holds it every owner it passes stays blocked in the wait it reads
            // (an entry whose job is not done belongs to a thread still inside that wait). If our
            // job is not done now, its owner cannot finish it before the walk ends either: a chain
            // back to us is a cycle that exists at one instant, not one pieced together from a
            // wait that ended and a later one.
            if self.is_done() {
                false
            } else {
                let mut cursor = self.owner;
                // Edges are only added when they close no cycle, so the chain is finite.
                while let Some((next, done)) = waiting.get(&cursor) {
                    if done.load(Ordering::Acquire) {
                        break; // that wait is about to end; it cannot hold us up
                    }
                    if *next == me {
                        return Waited::Cycle;
                    }
                    cursor = *next;
                }
                waiting.insert(me, (self.owner, Arc::clone(&self.done)));
                true
            }
        };
        // Yield a little before sleeping: a deduplicated miss is often a short compilation, and on
        // a loaded machine a condvar wake-up costs several times a short compilation
        // (`benches/concurrent_miss`). The outcome is still read under the lock below.
        #[cfg(not(loom))]
        {
            let start = std::time::Instant::now();
            while !self.is_done() && start.elapsed() < SPIN_FOR {
                std::thread::yield_now();
            }
        }
        let mut outcome = self.outcome.lock();
        let result = loop {
            if let Some(value) = &outcome.value {
                break value.clone();
            }
            // Counted under the lock, before the wait releases it: a completer that takes the lock
            // afterwards sees the count and wakes us.
            outcome.sleepers += 1;
            outcome = self.finished.wait(outcome);
            outcome.sleepers -= 1;
        };
        drop(outcome);
        if registered {
            graph.waiting.lock().remove(&me);
        }
        Waited::Done(result)
    }
}

impl<T: Clone> Default for Job<T> {
    fn default() -> Self {
        Job::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::mpsc;
    use std::sync::Arc;

    use super::{Job, WaitGraph, Waited};

    /// A thread holding a job that has completed must receive its outcome even when the job's
    /// former owner now waits on a job this thread owns: nothing is recursive, nothing can
    /// deadlock, and reporting a cycle would hand a compiler a false `InProgress`.
    #[test]
    fn a_finished_job_is_never_a_cycle_whatever_its_former_owner_waits_on() {
        let graph = Arc::new(WaitGraph::new());
        let mine: Arc<Job<u32>> = Arc::new(Job::new()); // owned by this thread
        let (to_main, from_owner) = mpsc::channel();
        let owner = {
            let (graph, mine) = (Arc::clone(&graph), Arc::clone(&mine));
            std::thread::spawn(move || {
                let theirs: Arc<Job<u32>> = Arc::new(Job::new());
                to_main
                    .send((Arc::clone(&theirs), std::thread::current().id()))
                    .unwrap();
                theirs.complete(7);
                // Stage 2: the former owner of the finished job now waits on ours.
                mine.wait(&graph)
            })
        };
        let (finished, owner_id) = from_owner.recv().unwrap();
        // Staged, not timed: proceed once the owner is provably blocked on our job.
        while !graph.is_waiting(owner_id) {
            std::thread::yield_now();
        }
        assert!(finished.is_done());
        assert_eq!(finished.wait(&graph), Waited::Done(7));
        mine.complete(1);
        assert_eq!(owner.join().unwrap(), Waited::Done(1));
    }

    #[test]
    fn a_running_job_owned_by_the_waiter_is_a_cycle() {
        let graph = WaitGraph::new();
        let job: Job<u32> = Job::new();
        assert_eq!(job.wait(&graph), Waited::Cycle);
        job.complete(3);
        assert_eq!(job.wait(&graph), Waited::Done(3));
    }
}
