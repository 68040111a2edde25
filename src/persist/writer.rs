//! Write-behind: records are handed to a thread of the cache's own, which writes them in
//! batches (one store transaction, one sync to disk, for everything queued meanwhile), so a
//! compilation never waits for the disk. The thread lingers a little after the first record of a
//! batch so that a burst of compilations (a cold start) is written in a few transactions rather
//! than one per record: a durable commit takes milliseconds, and an embedded store's readers can
//! wait on it.
//!
//! Records queued and not yet written when the process dies are lost, which costs only their
//! recompilation next time; [`Writer::flush`] waits for everything queued so far, and dropping
//! the writer (with its cache) flushes too.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::{ArtifactStore, RecordKey, StoreError};
use crate::sync::{Arc, Mutex};

/// At most this many records per batch.
const BATCH_RECORDS: usize = 1024;
/// At most about this many bytes per batch.
const BATCH_BYTES: usize = 16 << 20;
/// How long a batch waits for more records after its first one (unless flushed or full).
const LINGER: Duration = Duration::from_millis(50);

enum Message {
    Put(RecordKey, Vec<u8>),
    /// Answered once everything queued before it is written.
    Flush(Sender<()>),
}

/// Counts records a failed write lost.
pub(crate) type OnError = Box<dyn Fn(u64) + Send + Sync>;

pub(crate) struct Writer {
    store: Arc<dyn ArtifactStore>,
    on_error: Arc<OnError>,
    /// The first error since the last flush.
    error: Arc<Mutex<Option<StoreError>>>,
    queue: Mutex<Option<(Sender<Message>, JoinHandle<()>)>>,
}

impl Writer {
    pub(crate) fn new(store: Arc<dyn ArtifactStore>, on_error: OnError) -> Self {
        Writer {
            store,
            on_error: Arc::new(on_error),
            error: Arc::new(Mutex::new(None)),
            queue: Mutex::new(None),
        }
    }

    /// Queues `record` for writing under `key`, starting the writing thread if needed. If no
    /// thread can be started, writes it at once.
    pub(crate) fn put(&self, key: RecordKey, record: Vec<u8>) {
        let mut queue = self.queue.lock();
        if queue.is_none() {
            let (sender, receiver) = channel();
            let (store, on_error, error) = (
                Arc::clone(&self.store),
                Arc::clone(&self.on_error),
                Arc::clone(&self.error),
            );
            let spawned = std::thread::Builder::new()
                .name("compiler-caching store writer".into())
                .spawn(move || write_loop(&*store, &on_error, &error, receiver));
            match spawned {
                Ok(thread) => *queue = Some((sender, thread)),
                Err(_) => {
                    drop(queue);
                    let result = self.store.put(&key, &record);
                    self.settle(result, 1);
                    return;
                }
            }
        }
        if let Some((sender, _)) = queue.as_ref() {
            // The thread only stops when the sender is dropped, below.
            let _ = sender.send(Message::Put(key, record));
        }
    }

    fn settle(&self, result: Result<(), StoreError>, records: u64) {
        settle(&self.on_error, &self.error, result, records);
    }

    /// Waits until every record queued so far is written; returns the first error since the last
    /// flush, if any.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let ack = {
            let queue = self.queue.lock();
            queue.as_ref().map(|(sender, _)| {
                let (ack, done) = channel();
                let _ = sender.send(Message::Flush(ack));
                done
            })
        };
        if let Some(done) = ack {
            // An error here means the thread is gone, having written what it could.
            let _ = done.recv();
        }
        match self.error.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some((sender, thread)) = self.queue.get_mut().take() {
            drop(sender);
            // The thread writes what was queued, then ends; its panics were caught inside it.
            let _ = thread.join();
        }
    }
}

fn settle(
    on_error: &OnError,
    error: &Mutex<Option<StoreError>>,
    result: Result<(), StoreError>,
    records: u64,
) {
    if let Err(e) = result {
        on_error(records);
        error.lock().get_or_insert(e);
    }
}

fn write_loop(
    store: &dyn ArtifactStore,
    on_error: &OnError,
    error: &Mutex<Option<StoreError>>,
    receiver: Receiver<Message>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch: Vec<(RecordKey, Vec<u8>)> = Vec::new();
        let mut acks = Vec::new();
        let mut bytes = 0;
        let deadline = Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Put(key, record) => {
                    bytes += record.len();
                    batch.push((key, record));
                }
                Message::Flush(ack) => acks.push(ack),
            }
            // Wait for more until the deadline, unless someone waits for this batch or it is
            // full; then take only what is already queued.
            if batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                break;
            }
            next = if acks.is_empty() {
                // Timed out or disconnected: write what there is.
                receiver
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok()
            } else {
                receiver.try_recv().ok()
            };
        }
        if !batch.is_empty() {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.put_batch(&batch)))
                    .unwrap_or_else(|_| {
                        Err(StoreError::Unavailable {
                            reason: "the store panicked while writing".to_owned(),
                        })
                    });
            settle(on_error, error, result, batch.len() as u64);
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}
