//! Group commit: many writers share one flush.
//!
//! Writers append to sled (in memory), then call [`GroupCommit::flush`] and wait. One
//! dedicated thread takes every waiting request, runs a single [`Store::flush`], and
//! answers them all. A request that arrives while a flush runs waits for the next one,
//! because the running flush may have started before its write. So each waiter is
//! answered only by a flush that began after it asked: its write is durable.

use super::{StorageError, Store};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// How many flush requests may queue before writers wait to enqueue.
const FLUSH_QUEUE_CAPACITY: usize = 4096;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the group-commit thread. Cloning shares the thread.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::SyncSender<Waiter>,
}

impl GroupCommit {
    /// Start the flush thread for `store`. It stops when every handle is dropped.
    pub fn start(store: Arc<Store>) -> Result<GroupCommit, StorageError> {
        let (tx, rx) = mpsc::sync_channel::<Waiter>(FLUSH_QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("meshlog-flush".into())
            .spawn(move || run(store, rx))
            .map_err(|e| StorageError::io("start flush thread", e))?;
        Ok(GroupCommit { tx })
    }

    /// Wait until every write made before this call is durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let (done_tx, done_rx) = oneshot::channel();
        let tx = self.tx.clone();
        // The queue is large; if it is ever full, block a blocking-pool thread, not the runtime.
        if let Err(mpsc::TrySendError::Full(w)) = tx.try_send(done_tx) {
            tokio::task::spawn_blocking(move || tx.send(w))
                .await
                .map_err(|e| StorageError::io("flush queue", e))?
                .map_err(|_| StorageError::io("flush queue", "flush thread stopped"))?;
        }
        match done_rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StorageError::Io { op: "flush", reason }),
            Err(_) => Err(StorageError::io("flush", "flush thread stopped")),
        }
    }
}

fn run(store: Arc<Store>, rx: mpsc::Receiver<Waiter>) {
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let result = store.flush().map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, waiters = waiters.len(), "flush failed; writes not acknowledged");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
