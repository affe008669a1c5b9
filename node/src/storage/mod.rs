//! Durable storage: the only module that touches files.
//!
//! Owns the on-disk layout and nothing else: partition logs in append-only segment files
//! ([`segments`]: whole record batches exactly as served, by base offset), and sled for
//! the small things (a metadata tree, node-local key-value trees) under the key schema
//! of [`keys`] (the one place key bytes are built), and the durability step
//! ([`Store::flush`]: an fdatasync of every segment file written since the last flush,
//! then sled's flush and an fsync of its file). Errors keep their I/O source
//! ([`StorageError`]). It knows nothing of what topics, offsets or acks mean, nor of the
//! network; callers decide what to write and when an ack may be sent.
//!
//! Keep every sled type and file behind this API so an engine can be replaced.

mod commit;
mod error;
pub mod keys;
mod segments;

pub use commit::{CommitStats, GroupCommit};
pub use error::{OpenError, StorageError};
pub use segments::{PartitionLog, SEGMENT_BYTES};

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// sled's segment size. Values larger than a quarter of it are written to separate
/// blob files (which [`Store::flush`] syncs itself, as sled does not); 8 MiB keeps
/// values up to ~2 MiB inline in its log.
const SEGMENT_SIZE_BYTES: usize = 8 << 20;
/// The largest batch a partition log keeps: the largest `max.message.bytes` a topic may
/// have, so every batch a leader's validation admits (and every stored batch a follower
/// is sent, which is checked against the same bound) can be stored. A smaller limit
/// here once stopped a replica on a batch just under the ceiling that validation had
/// admitted.
pub const MAX_BATCH_BYTES: usize = meshlog_protocol::types::MAX_MESSAGE_BYTES_CEILING as usize;
/// Where sled writes its blob files (under the data directory).
const BLOBS_DIR: &str = "blobs";
/// The directory under the data directory that holds the partition logs.
const LOGS_DIR: &str = "logs";

/// Tuning for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache size (a soft limit).
    pub cache_capacity_bytes: u64,
    /// A partition log's segment file is rolled past this size ([`SEGMENT_BYTES`]).
    pub segment_bytes: u64,
}

/// An open store in one data directory.
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    dir: PathBuf,
    /// sled's log file, kept open so each flush can end in a real fsync.
    log_file: Mutex<File>,
    /// Every partition log opened, so each is opened (and recovered) once.
    logs: Mutex<HashMap<(String, u32), PartitionLog>>,
    /// Segment files written since the last flush.
    dirty: Arc<segments::Dirty>,
    /// One flush at a time: a second caller must not return while the first still
    /// syncs the files it took. Holds why an fsync failed, once one has: see
    /// [`Store::flush`].
    flushing: Mutex<Option<StorageError>>,
    /// sled's blob files already fsynced, with the length they had then: a blob is
    /// written once (a new file per write) but may have been caught half written.
    synced_blobs: Mutex<HashMap<OsString, u64>>,
    segment_bytes: u64,
}

impl Store {
    /// Open (or create) the store in `dir`, recovering whatever the last run flushed.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StorageError> {
        let open_err = |why: OpenError| StorageError::Open { path: dir.to_path_buf(), why };
        std::fs::create_dir_all(dir).map_err(|e| open_err(OpenError::io("create the directory", e)))?;
        let db = open_sled(dir, opts.cache_capacity_bytes).map_err(open_err)?;
        let meta = db.open_tree(keys::META_TREE).map_err(|e| open_err(OpenError::io("metadata tree", e)))?;
        let log_file = File::open(dir.join("db")).map_err(|e| open_err(OpenError::io("db file", e)))?;
        Ok(Store {
            db,
            meta,
            dir: dir.to_path_buf(),
            log_file: Mutex::new(log_file),
            logs: Mutex::new(HashMap::new()),
            dirty: Arc::default(),
            flushing: Mutex::new(None),
            synced_blobs: Mutex::default(),
            segment_bytes: opts.segment_bytes.max(1),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Make every write made before this call durable: an fdatasync of each segment
    /// file written to, sled's flush (which ends in `sync_file_range`, enough for a
    /// process crash) and then an fsync of sled's log file, so that the data and the
    /// files' sizes also survive a power cut. Blocking.
    ///
    /// A failed `fsync` fails every later flush of this store too: Linux marks the pages
    /// it could not write clean and drops the error, so a retry would report success
    /// for writes that are gone (PostgreSQL panics for the same reason). The node's
    /// replicas stop; a restart recovers from what is on disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        let mut failed = crate::sync::lock(&self.flushing);
        Self::not_failed(&failed)?;
        self.sync_logs(&mut failed)?;
        self.sync_sled(&mut failed)
    }

    /// Make every segment-file write made before this call durable (fdatasync of each
    /// file written to). The recovery points it saves in sled become durable with the
    /// next [`Store::flush`]; until then a reopened log checks its tail against an older
    /// (lower) point, which is safe: only less of it counts as must-not-be-damaged.
    /// Blocking.
    pub fn flush_logs(&self) -> Result<(), StorageError> {
        let mut failed = crate::sync::lock(&self.flushing);
        Self::not_failed(&failed)?;
        self.sync_logs(&mut failed)
    }

    /// Make what was written to sled durable (the recovery points and high watermarks
    /// that appends-only flushes left there), without syncing segment files. Blocking.
    pub fn flush_meta(&self) -> Result<(), StorageError> {
        let mut failed = crate::sync::lock(&self.flushing);
        Self::not_failed(&failed)?;
        self.sync_sled(&mut failed)
    }

    /// Whether an fsync has failed, so that every flush now fails.
    pub fn fsync_failed(&self) -> bool {
        crate::sync::lock(&self.flushing).is_some()
    }

    fn not_failed(failed: &Option<StorageError>) -> Result<(), StorageError> {
        match failed {
            Some(first) => Err(StorageError::FsyncFailed { first: Box::new(first.clone()) }),
            None => Ok(()),
        }
    }

    /// fdatasync every dirty segment file and save the logs' new recovery points in sled.
    fn sync_logs(&self, failed: &mut Option<StorageError>) -> Result<(), StorageError> {
        let points = self.dirty.sync().inspect_err(|e| *failed = Some(e.clone()))?;
        for (log, (seg, len)) in points {
            self.meta_put(&keys::recovery(&log), &encode_point(seg, len))?;
        }
        Ok(())
    }

    /// sled's flush, an fsync of its new blob files and their directory, then of its log
    /// file. A failed sled flush (a write, such as on a full disk) can be retried; a
    /// failed fsync cannot.
    fn sync_sled(&self, failed: &mut Option<StorageError>) -> Result<(), StorageError> {
        self.db.flush().map_err(|e| StorageError::io("flush", e))?;
        // Before the log file: a pointer to a blob is never durable without the blob.
        self.sync_blobs(failed)?;
        let file = crate::sync::lock(&self.log_file);
        file.sync_data().map_err(|e| fsync_failed(failed, StorageError::io("fsync", e)))
    }

    /// fsync every blob file sled wrote since the last call, then the blob directory.
    /// sled writes a page bigger than a quarter of its segment (a value over ~2 MiB, or
    /// a leaf whose values add up to that, such as the outbox's batches) to a file of its
    /// own in `blobs/` and never syncs it, so without this a power cut could lose
    /// acknowledged metadata. Each file is synced once at its final length; the listing
    /// costs one directory read per flush.
    fn sync_blobs(&self, failed: &mut Option<StorageError>) -> Result<(), StorageError> {
        let dir = self.dir.join(BLOBS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io("list blobs", e)),
        };
        let mut synced = crate::sync::lock(&self.synced_blobs);
        let mut present = HashMap::new();
        let mut wrote = false;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list blobs", e))?;
            let Ok(len) = entry.metadata().map(|m| m.len()) else { continue }; // deleted by sled meanwhile
            let name = entry.file_name();
            if synced.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(f) => {
                        f.sync_all().map_err(|e| fsync_failed(failed, StorageError::io("fsync blob", e)))?
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("open blob", e)),
                }
                wrote = true;
            }
            present.insert(name, len);
        }
        *synced = present;
        if wrote {
            let d = File::open(&dir).map_err(|e| StorageError::io("open blob directory", e))?;
            d.sync_all().map_err(|e| fsync_failed(failed, StorageError::io("fsync blob directory", e)))?;
        }
        Ok(())
    }

    /// The blob files the last flush left synced, with their lengths (for tests).
    #[cfg(test)]
    fn synced_blobs(&self) -> HashMap<OsString, u64> {
        crate::sync::lock(&self.synced_blobs).clone()
    }

    /// The log of one partition, created empty if it does not exist; recovered from its
    /// segment files the first time it is opened. `topic` must be a valid topic name
    /// (it names a directory).
    pub fn log(&self, topic: &str, partition: u32) -> Result<PartitionLog, StorageError> {
        let mut logs = crate::sync::lock(&self.logs);
        if let Some(log) = logs.get(&(topic.to_string(), partition)) {
            return Ok(log.clone());
        }
        if topic.is_empty() || topic == "." || topic == ".." || topic.contains(['/', '\\', '\0']) {
            return Err(StorageError::refused("open log", format!("{topic:?} cannot name a log directory")));
        }
        let dir = self.dir.join(LOGS_DIR).join(topic).join(partition.to_string());
        let name = keys::log_name(topic, partition);
        let point = self.meta_get(&keys::recovery(&name))?.and_then(|b| {
            let b: [u8; 16] = (*b).try_into().ok()?;
            Some((u64::from_be_bytes(b[..8].try_into().ok()?), u64::from_be_bytes(b[8..].try_into().ok()?)))
        });
        let log = PartitionLog::open(&dir, &name, self.dirty.clone(), self.segment_bytes, point)?;
        // Open synced what it recovered; save where the log now ends before anything is
        // appended, so a torn append after a cut that the last run did not flush (a
        // truncation just before a crash) is never taken for damage.
        if log.corruption().is_none() && log.end_point() != point {
            if let Some((seg, len)) = log.end_point() {
                self.meta_put(&keys::recovery(&name), &encode_point(seg, len))?;
                self.flush_meta()?;
            }
        }
        logs.insert((topic.to_string(), partition), log.clone());
        Ok(log)
    }

    /// A named key-value tree for node-local queues (the outbox).
    pub fn kv(&self, name: &str) -> Result<KvTree, StorageError> {
        let tree = self.db.open_tree(keys::kv_tree(name)).map_err(|e| StorageError::io("open tree", e))?;
        Ok(KvTree { tree })
    }

    /// Read a metadata value.
    pub fn meta_get(&self, key: &str) -> Result<Option<StoredBytes>, StorageError> {
        self.meta
            .get(key)
            .map(|v| v.map(|v| StoredBytes(Held::Sled(v))))
            .map_err(|e| StorageError::io("meta read", e))
    }

    /// Write a metadata value (durable after the next [`Store::flush`]).
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.meta.insert(key, value).map(|_| ()).map_err(|e| StorageError::io("meta write", e))
    }

    /// Delete a metadata value (durable after the next [`Store::flush`]).
    pub fn meta_delete(&self, key: &str) -> Result<(), StorageError> {
        self.meta.remove(key).map(|_| ()).map_err(|e| StorageError::io("meta delete", e))
    }

    /// Whether `dir` holds a store (sled's log file).
    pub fn exists_in(dir: &Path) -> bool {
        dir.join("db").exists()
    }

    /// Every metadata entry whose key starts with `prefix`, in key order.
    pub fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, StoredBytes)>, StorageError> {
        self.meta
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| StorageError::io("meta scan", e))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), StoredBytes(Held::Sled(v))))
            })
            .collect()
    }

    /// Delete everything stored for partition `partition` of the log named `topic`: its
    /// segment files (and its directory, and the topic's once empty) and its metadata
    /// keys (hard state, catch-up mark, producers, log start, HW, recovery point).
    /// Nothing may append to it any more (its replica has stopped). The files are gone
    /// at once (directory fsynced); the keys with the next [`Store::flush`]. Blocking.
    pub fn delete_partition(&self, topic: &str, partition: u32) -> Result<(), StorageError> {
        crate::sync::lock(&self.logs).remove(&(topic.to_string(), partition));
        // Its last appends' recovery point is written by this sync: before the keys go.
        self.flush_logs()?;
        let topic_dir = self.dir.join(LOGS_DIR).join(topic);
        let dir = topic_dir.join(partition.to_string());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("delete a partition log", e)),
        }
        if topic_dir.exists() {
            // Only removed when empty (another partition of it may still be here).
            let _ = std::fs::remove_dir(&topic_dir);
            let parent = if topic_dir.exists() { topic_dir } else { self.dir.join(LOGS_DIR) };
            File::open(&parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| StorageError::io("fsync directory", e))?;
        }
        let name = keys::log_name(topic, partition);
        for key in [
            keys::hard_state(topic, partition),
            keys::catch_up(topic, partition),
            keys::producers(topic, partition),
            keys::log_start(topic, partition),
            keys::high_watermark(topic, partition),
            keys::recovery(&name),
        ] {
            self.meta_delete(&key)?;
        }
        Ok(())
    }

    /// (log name, partition) of every partition log directory on disk.
    pub fn stored_partitions(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let Ok(topics) = std::fs::read_dir(self.dir.join(LOGS_DIR)) else { return out };
        for t in topics.flatten() {
            let Ok(parts) = std::fs::read_dir(t.path()) else { continue };
            let name = t.file_name().to_string_lossy().into_owned();
            for p in parts.flatten() {
                if let Ok(n) = p.file_name().to_string_lossy().parse::<u32>() {
                    out.push((name.clone(), n));
                }
            }
        }
        out.sort();
        out
    }

    /// Bytes the store occupies on disk (sled's files and the partition logs).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + dir_size(&self.dir.join(LOGS_DIR))
    }
}

/// Remember that an fsync failed (every later flush fails: see [`Store::flush`]).
fn fsync_failed(failed: &mut Option<StorageError>, e: StorageError) -> StorageError {
    *failed = Some(e.clone());
    e
}

/// A log's recovery point as stored under [`keys::recovery`]: (segment, bytes) its last
/// flush made durable.
fn encode_point(seg: u64, len: u64) -> [u8; 16] {
    let mut point = [0u8; 16];
    point[..8].copy_from_slice(&seg.to_be_bytes());
    point[8..].copy_from_slice(&len.to_be_bytes());
    point
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// How long opening waits for a just-closed store's lock (see [`Store::open`]).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Open sled in `dir`. sled releases the directory's lock from its I/O threads a moment
/// after the last handle of a closed store is dropped, so an in-process restart right
/// after a shutdown may find it still held: wait a little before saying it is in use.
fn open_sled(dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, OpenError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_capacity_bytes)
        .segment_size(SEGMENT_SIZE_BYTES)
        .mode(sled::Mode::HighThroughput)
        // Every durable write goes through an explicit group-commit flush; sled's own
        // 500 ms background flush would only compete with it.
        .flush_every_ms(None);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(open_error(e)),
        }
    }
}

fn open_error(e: sled::Error) -> OpenError {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            OpenError::InUse { source: Arc::new(io) }
        }
        sled::Error::Corruption { at, .. } => OpenError::Corrupt { at: format!("{at:?}") },
        other => OpenError::io("sled", other),
    }
}

/// Bytes read from the store, cheap to clone.
#[derive(Clone, Debug)]
pub struct StoredBytes(Held);

#[derive(Clone, Debug)]
enum Held {
    Sled(sled::IVec),
    Owned(Arc<[u8]>),
}

impl StoredBytes {
    fn owned(v: Vec<u8>) -> StoredBytes {
        StoredBytes(Held::Owned(v.into()))
    }
}

impl Deref for StoredBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Held::Sled(v) => v,
            Held::Owned(v) => v,
        }
    }
}

/// An ordered key-value tree (byte keys), durable after the next [`Store::flush`].
#[derive(Clone)]
pub struct KvTree {
    tree: sled::Tree,
}

impl KvTree {
    /// Insert or replace.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.tree.insert(key, value).map(|_| ()).map_err(|e| StorageError::io("kv write", e))
    }

    /// Remove.
    pub fn remove(&self, key: &[u8]) -> Result<(), StorageError> {
        self.tree.remove(key).map(|_| ()).map_err(|e| StorageError::io("kv remove", e))
    }

    /// Read one value.
    pub fn get(&self, key: &[u8]) -> Result<Option<StoredBytes>, StorageError> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| StoredBytes(Held::Sled(v))))
            .map_err(|e| StorageError::io("kv read", e))
    }

    /// Every entry in key order.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, StoredBytes)>, StorageError> {
        self.tree
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), StoredBytes(Held::Sled(v))))
                    .map_err(|e| StorageError::io("kv scan", e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

/// Write `batches` copies of `batch` into a fresh store's partition log in `dir`, flushing
/// durably (as
/// [`Store::flush`] does) after every `per_flush` batches: the raw engine's rate for the
/// bytes a node stores, to compare the node's produce path against.
pub fn raw_write_bench(
    dir: &Path,
    batch: &[u8],
    batches: u64,
    per_flush: usize,
) -> Result<std::time::Duration, StorageError> {
    let store =
        Store::open(dir, &StoreOptions { cache_capacity_bytes: 256 << 20, segment_bytes: SEGMENT_BYTES })?;
    let log = store.log("raw", 0)?;
    let started = std::time::Instant::now();
    for i in 0..batches {
        log.append(i * 1000, batch)?;
        if (i + 1) % per_flush.max(1) as u64 == 0 {
            store.flush()?;
        }
    }
    store.flush()?;
    Ok(started.elapsed())
}
