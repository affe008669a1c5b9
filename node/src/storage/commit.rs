//! Group commit: many writers share one flush.
//!
//! Writers append (to segment files or sled, in memory), then call
//! [`GroupCommit::flush`] or [`GroupCommit::flush_appends`] and wait. One dedicated
//! thread takes every waiting request, runs a single flush, and answers them all. A
//! request that arrives while a flush runs waits for the next one, because the running
//! flush may have started before its write. So each waiter is answered only by a flush
//! that began after it asked: its write is durable.
//!
//! A flush that only appends wait for syncs the segment files and leaves sled (the
//! recovery points and high watermarks it saved) to the next full flush, which runs at
//! least every [`META_SYNC_INTERVAL`] while appends flow, and once more when they stop:
//! sled's flush plus the fsync of its log was a second sync on every append's critical
//! path. When that periodic full flush is due only by the clock (no waiter asked for
//! sled), the waiters are answered after the segment files' sync and sled's part runs
//! after the answers: otherwise the batch whose flush fell on the second waited for a
//! second fsync (13 ms of a 40 ms acks=all round trip in a traced single-partition run),
//! and with three replicas each ack risks three such seconds.

use super::{StorageError, Store};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How many flush requests may queue before writers wait to enqueue.
const FLUSH_QUEUE_CAPACITY: usize = 4096;

/// How often, while only appends are flushed, sled's part is flushed too: a recovery
/// point or high watermark saved in sled waits about one to two intervals to become
/// durable (Kafka checkpoints its recovery points every 60 s).
pub const META_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What a waiter needs durable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Need {
    /// Segment files and sled.
    Everything,
    /// Segment files (appends and truncations are not mixed: a truncation asks for
    /// everything, so its recovery point is durable before anything lands after the cut).
    Appends,
}

/// A flush request and where its answer goes. The answer is the flush's own error
/// (cloned for each waiter), so a full disk still reads as one to every writer.
type Waiter = (Need, oneshot::Sender<Result<(), StorageError>>);

/// Handle to the group-commit thread. Cloning shares the thread.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::SyncSender<Waiter>,
    stats: CommitStats,
}

/// How long flushes take and how many waiters each answers (the admin port serves them).
#[derive(Debug, Clone)]
pub struct CommitStats {
    flush: Histogram,
    waiters: Histogram,
}

impl Default for CommitStats {
    fn default() -> Self {
        // 50 us to ~1.6 s; 1 to 4096 waiters.
        CommitStats {
            flush: Histogram::new(exponential_buckets(5e-5, 2.0, 16)),
            waiters: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

impl CommitStats {
    fn observe(&self, took: Duration, waiters: usize) {
        self.flush.observe(took.as_secs_f64());
        self.waiters.observe(waiters as f64);
    }

    /// Name the histograms in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "fsync",
            "Duration of a group commit's flush (segment fdatasync, and sled's when a waiter needs it)",
            Unit::Seconds,
            self.flush.clone(),
        );
        registry.register("group_commit_size", "Writers answered by one flush", self.waiters.clone());
    }
}

impl GroupCommit {
    /// Start the flush thread for `store`. It stops when every handle is dropped.
    pub fn start(store: Arc<Store>) -> Result<GroupCommit, StorageError> {
        let (tx, rx) = mpsc::sync_channel::<Waiter>(FLUSH_QUEUE_CAPACITY);
        let stats = CommitStats::default();
        let recorded = stats.clone();
        std::thread::Builder::new()
            .name("meshlog-flush".into())
            .spawn(move || run(store, rx, recorded))
            .map_err(|e| StorageError::io("start flush thread", e))?;
        Ok(GroupCommit { tx, stats })
    }

    /// Flush durations and sizes.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Wait until every write made before this call is durable: segment files and sled.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.request(Need::Everything).await
    }

    /// Wait until every segment-file append made before this call is durable. What was
    /// written to sled (recovery points, high watermarks) may become durable later, with
    /// the next full flush (about one to two [`META_SYNC_INTERVAL`]s later).
    pub async fn flush_appends(&self) -> Result<(), StorageError> {
        self.request(Need::Appends).await
    }

    async fn request(&self, need: Need) -> Result<(), StorageError> {
        let (done_tx, done_rx) = oneshot::channel();
        let tx = self.tx.clone();
        // The queue is large; if it is ever full, block a blocking-pool thread, not the runtime.
        if let Err(mpsc::TrySendError::Full(w)) = tx.try_send((need, done_tx)) {
            tokio::task::spawn_blocking(move || tx.send(w))
                .await
                .map_err(|e| StorageError::io("flush queue", std::io::Error::other(e)))?
                .map_err(|_| StorageError::Stopped { what: "flush thread" })?;
        }
        done_rx.await.map_err(|_| StorageError::Stopped { what: "flush thread" })?
    }
}

/// When sled was last flushed, and whether it may hold writes no flush has covered.
struct MetaSync {
    last_full: Instant,
    behind: bool,
}

impl MetaSync {
    /// Appends stopped: what their flushes left in sled becomes durable now, not
    /// whenever the next write comes.
    fn on_idle(&mut self, store: &Store) {
        if !self.behind {
            return;
        }
        match store.flush_meta() {
            Ok(()) => self.behind = false,
            // A failed sled write is tried again at the next timeout; after a failed
            // fsync every flush fails (Store::flush): stop trying.
            Err(e) => {
                tracing::warn!(error = %e, "idle flush of the metadata failed");
                self.behind = !store.fsync_failed();
            }
        }
    }

    /// After a flush answered its waiters: sled's part when it is due by the clock and
    /// no waiter asked for it (nobody waits on it, so it runs after the answers).
    fn after(&mut self, store: &Store, full: bool, ok: bool) {
        if ok && full {
            self.last_full = Instant::now();
            self.behind = false;
            return;
        }
        // A failed flush may have saved some recovery points in sled already.
        self.behind = true;
        if ok && self.last_full.elapsed() >= META_SYNC_INTERVAL {
            match store.flush_meta() {
                Ok(()) => self.behind = false,
                // As when idle: a failed fsync fails every later flush anyway.
                Err(e) => tracing::warn!(error = %e, "periodic flush of the metadata failed"),
            }
            self.last_full = Instant::now();
        }
    }
}

fn run(store: Arc<Store>, rx: mpsc::Receiver<Waiter>, stats: CommitStats) {
    let mut meta = MetaSync { last_full: Instant::now(), behind: false };
    loop {
        let first = match rx.recv_timeout(META_SYNC_INTERVAL) {
            Ok(w) => w,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                meta.on_idle(&store);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let full = waiters.iter().any(|(need, _)| *need == Need::Everything);
        let started = Instant::now();
        let result = if full { store.flush() } else { store.flush_logs() };
        stats.observe(started.elapsed(), waiters.len());
        if let Err(e) = &result {
            tracing::error!(error = %e, waiters = waiters.len(), "flush failed; writes not acknowledged");
        }
        for (_, w) in waiters {
            let _ = w.send(result.clone());
        }
        meta.after(&store, full, result.is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreOptions;

    /// Sled's periodic flush: not before it is due, then after the appends-only flush
    /// that finds it due (once its waiters are answered); a full flush asked for by a
    /// waiter counts as one, a failed one does not.
    #[test]
    fn sled_is_flushed_once_due_after_an_appends_only_flush() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: 1 << 20 };
        let store = Store::open(dir.path(), &opts).unwrap();
        let mut meta = MetaSync { last_full: Instant::now(), behind: false };
        meta.after(&store, false, true);
        assert!(meta.behind, "not due yet: the recovery points wait in sled");
        let long_ago = Instant::now().checked_sub(2 * META_SYNC_INTERVAL).unwrap();
        meta.last_full = long_ago;
        meta.after(&store, false, false);
        assert!(meta.behind, "a failed flush leaves sled behind and flushes nothing more");
        assert_eq!(meta.last_full, long_ago);
        meta.after(&store, false, true);
        assert!(!meta.behind, "due: sled flushed after the answers");
        assert!(meta.last_full > long_ago);
        meta.after(&store, true, false);
        assert!(meta.behind);
        meta.after(&store, true, true);
        assert!(!meta.behind, "a full flush covers sled");
    }
}
