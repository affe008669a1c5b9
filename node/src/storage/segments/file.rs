//! The files of a partition log: one segment file ([`SegFile`]), the list of files
//! written since the last flush ([`Dirty`]), and the frame format they hold (write one,
//! scan a file's frames back).
//!
//! Owns the bytes of a segment file and their syncing; the index of batches and which
//! segments a log has are [`super::PartitionLog`]'s. No sled here, and no policy: what
//! a scan found is for the log's recovery to judge.

use crate::storage::{StorageError, MAX_BATCH_BYTES};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of a frame's header: batch length, CRC, base offset.
pub(super) const FRAME_HEADER: usize = 16;
/// A segment file's name: its first base offset, then this.
pub(super) const SUFFIX: &str = ".log";
/// A segment being rewritten, until it is renamed over the original.
pub(super) const SWAP_SUFFIX: &str = ".swap";

/// An I/O error on `path` during `op`.
pub(super) fn io(op: &'static str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::file(op, path, e)
}

/// One segment file, shared by the index and the dirty list.
pub(super) struct SegFile {
    pub(super) file: File,
    pub(super) path: PathBuf,
    dirty: AtomicBool,
    /// The log it belongs to (its name in the store's recovery points).
    log: Arc<str>,
    /// Its first base offset (its name).
    seg: u64,
    /// Bytes of whole frames written.
    pub(super) len: AtomicU64,
    /// Deleted, or replaced by a rewrite.
    pub(super) retired: AtomicBool,
}

impl SegFile {
    pub(super) fn new(file: File, path: PathBuf, log: &Arc<str>, seg: u64, len: u64) -> Arc<SegFile> {
        Arc::new(SegFile {
            file,
            path,
            dirty: AtomicBool::new(false),
            log: log.clone(),
            seg,
            len: len.into(),
            retired: AtomicBool::new(false),
        })
    }
}

/// Where a log's last flush left it durable: (segment, bytes of it). Frames below it
/// were flushed; a bad one there is damage, not a torn write.
pub type RecoveryPoint = (u64, u64);

/// The files written since the last durable flush.
#[derive(Default)]
pub(in crate::storage) struct Dirty {
    files: Mutex<Vec<Arc<SegFile>>>,
    /// Tests: make every fdatasync fail as a full device may (`StorageFull`).
    #[cfg(test)]
    pub(in crate::storage) fail_syncs: AtomicBool,
}

impl Dirty {
    pub(super) fn mark(&self, f: &Arc<SegFile>) {
        if !f.dirty.swap(true, Ordering::SeqCst) {
            crate::sync::lock(&self.files).push(f.clone());
        }
    }

    /// `fdatasync` every file written to before this call; returns each log's new
    /// recovery point.
    pub(in crate::storage) fn sync(&self) -> Result<Vec<(Arc<str>, RecoveryPoint)>, StorageError> {
        let files = std::mem::take(&mut *crate::sync::lock(&self.files));
        let mut points: BTreeMap<Arc<str>, RecoveryPoint> = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            // Clear first: a write after this point marks the file again for the next flush.
            f.dirty.store(false, Ordering::SeqCst);
            // Read before the sync: every frame up to here was written before it.
            let len = f.len.load(Ordering::SeqCst);
            let synced = f.file.sync_data();
            #[cfg(test)]
            let synced = match self.fail_syncs.load(Ordering::SeqCst) {
                true => Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "injected fsync failure")),
                false => synced,
            };
            if let Err(e) = synced {
                // Keep the unsynced ones (this one included, the later ones still flagged)
                // for the next flush. The error stops the replicas that waited on it.
                let mut list = crate::sync::lock(&self.files);
                for g in &files[i..] {
                    g.dirty.store(true, Ordering::SeqCst);
                    list.push(g.clone());
                }
                return Err(io("fsync", &f.path, e));
            }
            // A deleted or replaced file no longer says where its log ends.
            if f.retired.load(Ordering::SeqCst) {
                continue;
            }
            let p = points.entry(f.log.clone()).or_insert((f.seg, len));
            *p = (*p).max((f.seg, len));
        }
        Ok(points.into_iter().collect())
    }
}

/// The file of segment `base` in the log directory `dir`.
pub(super) fn seg_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

/// fsync a directory, so the entries created, renamed or deleted in it last.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync directory", dir, e))
}

/// A frame's CRC-32C: of its base offset (LE) and then its batch.
fn frame_crc(base: u64, batch: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&base.to_le_bytes()), batch)
}

/// Write the frame of `batch` at `pos` in `file`: its header, then the batch as it is
/// (two writes rather than a copy of the batch behind the header; a crash between them
/// leaves a torn frame, which recovery cuts like any other). Returns the frame's length.
pub(super) fn write_frame(file: &File, pos: u64, base: u64, batch: &[u8]) -> std::io::Result<u64> {
    let mut header = [0u8; FRAME_HEADER];
    header[..4].copy_from_slice(&(batch.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&frame_crc(base, batch).to_le_bytes());
    header[8..].copy_from_slice(&base.to_le_bytes());
    file.write_all_at(&header, pos)?;
    file.write_all_at(batch, pos + FRAME_HEADER as u64)?;
    Ok((FRAME_HEADER + batch.len()) as u64)
}

/// Open a segment file for reading and writing, creating it if `create`.
pub(super) fn open_rw(path: &Path, create: bool) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| io(if create { "create segment" } else { "open segment" }, path, e))
}

/// Read a segment's frames: (valid length, frames as (base, position, batch length),
/// whether the whole file was valid). Stops at the first short, corrupt or out-of-order
/// frame.
#[allow(clippy::type_complexity)]
pub(super) fn scan(
    file: &File,
    path: &Path,
    mut prev: Option<u64>,
) -> Result<(u64, Vec<(u64, u64, u32)>, bool), StorageError> {
    let size = file.metadata().map_err(|e| io("stat segment", path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut pos = 0u64;
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    while pos < size {
        let mut h = [0u8; FRAME_HEADER];
        if size - pos < FRAME_HEADER as u64 || r.read_exact(&mut h).is_err() {
            break;
        }
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let base = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let end = pos + FRAME_HEADER as u64 + len as u64;
        if len as usize > MAX_BATCH_BYTES || end > size || prev.is_some_and(|p| base <= p) {
            break;
        }
        batch.resize(len as usize, 0);
        if r.read_exact(&mut batch).is_err() || frame_crc(base, &batch) != crc {
            break;
        }
        frames.push((base, pos, len));
        prev = Some(base);
        pos = end;
    }
    Ok((pos, frames, pos == size))
}
