//! Opening a partition log: list its segment files, scan each one's frames, and cut a
//! torn tail or report damage (the rules are in [`super`]'s module docs).
//!
//! Owns only the recovery on open; a log's later changes are [`super::PartitionLog`]'s.
//! It never guesses: a bad frame above the recovery point is cut, one below it is kept
//! and reported.

use super::file::{io, open_rw, scan, seg_path, sync_dir, SegFile, SUFFIX, SWAP_SUFFIX};
use super::{Dirty, Inner, Loc, PartitionLog, RecoveryPoint, Segment, StorageError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

impl PartitionLog {
    /// Open (or create) the log `name` in `dir`, recovering every whole frame and
    /// cutting a torn tail above `recovered_to`, the recovery point its last flush saved.
    pub(in crate::storage) fn open(
        dir: &Path,
        name: &str,
        dirty: Arc<Dirty>,
        segment_bytes: u64,
        recovered_to: Option<RecoveryPoint>,
    ) -> Result<PartitionLog, StorageError> {
        let name: Arc<str> = name.into();
        if !dir.exists() {
            create_log_dir(dir)?;
        }
        let bases = segment_bases(dir)?;
        let mut inner = Inner { index: BTreeMap::new(), segments: BTreeMap::new(), corrupt: None };
        let mut cut = false;
        for (i, &seg) in bases.iter().enumerate() {
            if inner.corrupt.is_some() || cut {
                break;
            }
            cut = recover_segment(dir, &name, &mut inner, seg, &bases[i + 1..], recovered_to)?;
        }
        if cut {
            sync_dir(dir)?;
        }
        Ok(PartitionLog {
            dir: Arc::new(dir.to_path_buf()),
            inner: Arc::new(RwLock::new(inner)),
            dirty,
            segment_bytes,
            name,
        })
    }
}

/// Create a log's directory, durably.
fn create_log_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir).map_err(|e| io("create log directory", dir, e))?;
    // The new directories' own entries, up to the data directory, so a flushed segment
    // in them is never lost with its directory.
    for d in dir.ancestors().skip(1).take(3) {
        sync_dir(d)?;
    }
    Ok(())
}

/// The base offsets of the segment files in `dir`, in order. A rewrite's swap file
/// left by a crash is deleted: the original is still in place.
fn segment_bases(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("list log directory", dir, e))? {
        let name = entry.map_err(|e| io("list log directory", dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(SWAP_SUFFIX) {
            let _ = std::fs::remove_file(dir.join(&*name));
        } else if let Some(b) = name.strip_suffix(SUFFIX).and_then(|s| s.parse::<u64>().ok()) {
            bases.push(b);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Recover segment `seg` into `inner`: index its whole frames; past a bad frame, mark
/// the log damaged (below `recovered_to`) or cut the file there and delete the `later`
/// segments. Returns whether it cut.
fn recover_segment(
    dir: &Path,
    name: &Arc<str>,
    inner: &mut Inner,
    seg: u64,
    later: &[u64],
    recovered_to: Option<RecoveryPoint>,
) -> Result<bool, StorageError> {
    let path = seg_path(dir, seg);
    let file = open_rw(&path, false)?;
    let (len, frames, whole) = scan(&file, &path, inner.index.keys().next_back().copied())?;
    let mut cut = false;
    if !whole && recovered_to.is_some_and(|p| (seg, len) < p) {
        let why = format!(
            "corrupt frame at byte {len} of {}, below what was flushed (the store's recovery point)",
            path.display()
        );
        tracing::error!(%why, "partition log damaged; it is kept as it is");
        inner.corrupt = Some(why);
    } else if !whole {
        tracing::warn!(segment = %path.display(), valid_bytes = len, "log tail cut at the first incomplete or corrupt frame (unflushed writes)");
        cut_tail(dir, &path, &file, len, later)?;
        cut = true;
    }
    // What was recovered counts as flushed from now on (the replica reports it so): make
    // it so, whatever the last run managed to sync.
    file.sync_all().map_err(|e| io("fsync", &path, e))?;
    if frames.is_empty() && cut {
        std::fs::remove_file(&path).map_err(|e| io("delete segment", &path, e))?;
        return Ok(true);
    }
    let live = frames.len();
    for (base, pos, flen) in frames {
        inner.index.insert(base, Loc { seg, pos, len: flen });
    }
    let file = SegFile::new(file, path, name, seg, len);
    inner.segments.insert(seg, Segment { file, live });
    Ok(cut)
}

/// Cut the segment at `path` to `len` bytes, deleting the `later` segments first,
/// durably, so a crash during the cut can never leave them behind a shortened file.
fn cut_tail(
    dir: &Path,
    path: &Path,
    file: &std::fs::File,
    len: u64,
    later: &[u64],
) -> Result<(), StorageError> {
    for &later in later {
        let p = seg_path(dir, later);
        std::fs::remove_file(&p).map_err(|e| io("delete segment", &p, e))?;
    }
    sync_dir(dir)?;
    file.set_len(len).map_err(|e| io("truncate segment", path, e))
}
