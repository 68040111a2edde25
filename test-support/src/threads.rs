//! Ordering threads in tests and benchmarks: staged signals, a spinning barrier, a watchdog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Duration;

/// A staged signal: a count threads raise and wait on, so a test states "all eight waiters are
/// blocked before the owner fails" as a fact rather than a hope about timing.
#[derive(Debug, Default)]
pub struct Signal {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Signal {
    /// Adds one to the count and wakes every waiter.
    pub fn raise(&self) {
        *self.count.lock().unwrap() += 1;
        self.changed.notify_all();
    }

    /// The count now.
    pub fn get(&self) -> usize {
        *self.count.lock().unwrap()
    }

    /// Blocks until the count reaches `n`.
    pub fn wait_for(&self, n: usize) {
        let mut count = self.count.lock().unwrap();
        while *count < n {
            count = self.changed.wait(count).unwrap();
        }
    }
}

/// A barrier that spins, yielding, instead of sleeping: a futex wake-up takes tens of
/// microseconds on a small VM, more than the rounds it would separate.
pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `body` on a thread and fails if it does not finish within `secs`.
pub fn watchdog<F: FnOnce() + Send + 'static>(secs: u64, body: F) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => handle.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(payload) = handle.join() {
                std::panic::resume_unwind(payload);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("deadlock: test did not finish in {secs}s"),
    }
}
