//! Durable storage: the only module that imports sled.
//!
//! Owns the on-disk layout and nothing else: one sled tree per partition log (keys are
//! big-endian base offsets, values are whole record batches exactly as served), one
//! metadata tree, and the durability step ([`Store::flush`]: sled's flush followed by an
//! fsync of the store's files). It knows nothing of topics, offsets' meaning, acks or
//! the network; callers decide what to write and when an ack may be sent.
//!
//! Keep every sled type behind this API so the engine can be replaced.

mod commit;

pub use commit::GroupCommit;

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// sled's segment size. Values larger than a quarter of it are written to separate
/// blob files that sled never syncs; 8 MiB keeps batches up to ~2 MiB inline in the log.
const SEGMENT_SIZE_BYTES: usize = 8 << 20;
/// The largest value kept inline in sled's log (see [`SEGMENT_SIZE_BYTES`]).
pub const MAX_INLINE_VALUE_BYTES: usize = SEGMENT_SIZE_BYTES / 4 - 1024;
const META_TREE: &str = "meta";
const LOG_TREE_PREFIX: &str = "log/";

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened (missing permissions, corrupt files, locked by
    /// another process).
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An I/O error while reading, writing or flushing (a full disk, a failing device).
    #[error("storage I/O error during {op}: {reason}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A value larger than the store keeps inline.
    #[error("value of {len} bytes is over the store's limit of {max} bytes")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl StorageError {
    fn io(op: &'static str, e: impl std::fmt::Display) -> Self {
        StorageError::Io { op, reason: e.to_string() }
    }
}

/// Tuning for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache size (a soft limit).
    pub cache_capacity_bytes: u64,
}

/// An open store in one data directory.
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    dir: PathBuf,
    /// sled's log file, kept open so each flush can end in a real fsync.
    log_file: Mutex<File>,
}

impl Store {
    /// Open (or create) the store in `dir`, recovering whatever the last run flushed.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StorageError> {
        let open_err = |reason: String| StorageError::Open { path: dir.to_path_buf(), reason };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_capacity_bytes)
            .segment_size(SEGMENT_SIZE_BYTES)
            .mode(sled::Mode::HighThroughput)
            // Every durable write goes through an explicit group-commit flush; sled's own
            // 500 ms background flush would only compete with it.
            .flush_every_ms(None);
        // sled releases the directory's lock from its I/O threads a moment after the
        // last handle of a closed store is dropped, so an in-process restart right after
        // a shutdown may find it still held: wait a little before saying it is in use.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(open_err(describe_sled_open_error(e))),
            }
        };
        let meta = db.open_tree(META_TREE).map_err(|e| open_err(e.to_string()))?;
        let log_file = File::open(dir.join("db")).map_err(|e| open_err(format!("db file: {e}")))?;
        Ok(Store { db, meta, dir: dir.to_path_buf(), log_file: Mutex::new(log_file) })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Make every write made before this call durable: sled's flush (which ends in
    /// `sync_file_range`, enough for a process crash) and then an fsync of sled's log
    /// file, so that the data and the file's size also survive a power cut. Blocking.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map_err(|e| StorageError::io("flush", e))?;
        let file = self.log_file.lock().unwrap_or_else(|p| p.into_inner());
        file.sync_data().map_err(|e| StorageError::io("fsync", e))
    }

    /// The log of one partition, created empty if it does not exist.
    pub fn log(&self, topic: &str, partition: u32) -> Result<PartitionLog, StorageError> {
        let name = format!("{LOG_TREE_PREFIX}{topic}/{partition}");
        let tree = self.db.open_tree(name).map_err(|e| StorageError::io("open log", e))?;
        Ok(PartitionLog { tree })
    }

    /// A named key-value tree for node-local queues (the outbox).
    pub fn kv(&self, name: &str) -> Result<KvTree, StorageError> {
        let tree = self.db.open_tree(format!("kv/{name}")).map_err(|e| StorageError::io("open tree", e))?;
        Ok(KvTree { tree })
    }

    /// Read a metadata value.
    pub fn meta_get(&self, key: &str) -> Result<Option<StoredBytes>, StorageError> {
        self.meta.get(key).map(|v| v.map(StoredBytes)).map_err(|e| StorageError::io("meta read", e))
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
                Ok((String::from_utf8_lossy(&k).into_owned(), StoredBytes(v)))
            })
            .collect()
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// How long opening waits for a just-closed store's lock (see [`Store::open`]).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn describe_sled_open_error(e: sled::Error) -> String {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            "the data directory is in use by another running meshlog node".to_string()
        }
        sled::Error::Corruption { at, .. } => {
            format!("the store is corrupt (at {at:?}); restore it or wipe it and let it catch up")
        }
        other => other.to_string(),
    }
}

/// Bytes read from the store, shared without copying.
#[derive(Clone, Debug)]
pub struct StoredBytes(sled::IVec);

impl Deref for StoredBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
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
        self.tree.get(key).map(|v| v.map(StoredBytes)).map_err(|e| StorageError::io("kv read", e))
    }

    /// Every entry in key order.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, StoredBytes)>, StorageError> {
        self.tree
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), StoredBytes(v))).map_err(|e| StorageError::io("kv scan", e))
            })
            .collect()
    }
}

/// One partition's log: whole batches keyed by their base offset.
#[derive(Clone)]
pub struct PartitionLog {
    tree: sled::Tree,
}

fn key(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

fn offset_of(key: &[u8]) -> Result<u64, StorageError> {
    let arr: [u8; 8] =
        key.try_into().map_err(|_| StorageError::io("log key", format!("{}-byte key", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

impl PartitionLog {
    /// Store a batch under its base offset (durable after the next [`Store::flush`]),
    /// replacing any batch stored there.
    pub fn append(&self, base_offset: u64, batch: &[u8]) -> Result<(), StorageError> {
        if batch.len() > MAX_INLINE_VALUE_BYTES {
            return Err(StorageError::TooLarge { len: batch.len(), max: MAX_INLINE_VALUE_BYTES });
        }
        self.tree.insert(key(base_offset), batch).map(|_| ()).map_err(|e| StorageError::io("append", e))
    }

    /// Replace the batch stored under `base_offset` with `batch` if, and only if, it is
    /// still exactly `expected` (one atomic step: a reader sees the old batch or the new
    /// one, whole). False, and nothing written, if it was removed or changed since it was
    /// read. For rewriting stored batches (compaction) alongside a writer that may remove
    /// or replace them. Durable after the next [`Store::flush`].
    pub fn replace(&self, base_offset: u64, expected: &[u8], batch: &[u8]) -> Result<bool, StorageError> {
        if batch.len() > MAX_INLINE_VALUE_BYTES {
            return Err(StorageError::TooLarge { len: batch.len(), max: MAX_INLINE_VALUE_BYTES });
        }
        self.tree
            .compare_and_swap(key(base_offset), Some(expected), Some(batch))
            .map(|swapped| swapped.is_ok())
            .map_err(|e| StorageError::io("replace", e))
    }

    /// The batch with the highest base offset.
    pub fn last(&self) -> Result<Option<(u64, StoredBytes)>, StorageError> {
        self.entry(self.tree.last())
    }

    /// The batch with the lowest base offset.
    pub fn first(&self) -> Result<Option<(u64, StoredBytes)>, StorageError> {
        self.entry(self.tree.first())
    }

    fn entry(
        &self,
        e: sled::Result<Option<(sled::IVec, sled::IVec)>>,
    ) -> Result<Option<(u64, StoredBytes)>, StorageError> {
        match e.map_err(|e| StorageError::io("read", e))? {
            Some((k, v)) => Ok(Some((offset_of(&k)?, StoredBytes(v)))),
            None => Ok(None),
        }
    }

    /// Batches in base-offset order, starting with the one that contains `offset` (the
    /// last batch whose base offset is at or below it) and stopping before `end_offset`
    /// or once `max_bytes` is reached (at least one batch is returned if any exists).
    pub fn read(
        &self,
        offset: u64,
        end_offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, StoredBytes)>, StorageError> {
        let start = match self.tree.range(..=key(offset)).next_back() {
            Some(kv) => offset_of(&kv.map_err(|e| StorageError::io("read", e))?.0)?,
            None => 0,
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for kv in self.tree.range(key(start)..key(end_offset)) {
            let (k, v) = kv.map_err(|e| StorageError::io("read", e))?;
            if !out.is_empty() && bytes + v.len() > max_bytes {
                break;
            }
            bytes += v.len();
            out.push((offset_of(&k)?, StoredBytes(v)));
        }
        Ok(out)
    }

    /// Every batch in order (for recovery scans and retention).
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, StoredBytes), StorageError>> + '_ {
        self.tree.iter().map(|kv| {
            let (k, v) = kv.map_err(|e| StorageError::io("scan", e))?;
            Ok((offset_of(&k)?, StoredBytes(v)))
        })
    }

    /// Delete the batch stored under `base_offset`.
    pub fn remove(&self, base_offset: u64) -> Result<(), StorageError> {
        self.tree.remove(key(base_offset)).map(|_| ()).map_err(|e| StorageError::io("remove", e))
    }
}

#[cfg(test)]
mod tests;

/// Write `batches` copies of `batch` into a fresh store in `dir`, flushing durably (as
/// [`Store::flush`] does) after every `per_flush` batches: the raw engine's rate for the
/// bytes a node stores, to compare the node's produce path against.
pub fn raw_write_bench(
    dir: &Path,
    batch: &[u8],
    batches: u64,
    per_flush: usize,
) -> Result<std::time::Duration, StorageError> {
    let store = Store::open(dir, &StoreOptions { cache_capacity_bytes: 256 << 20 })?;
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
