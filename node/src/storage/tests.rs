//! Storage API tests on real files (segment logs, sled) in temporary directories.

use super::*;
use std::sync::atomic::Ordering;

/// Small segments, so a few batches fill several.
const SEGMENT: u64 = 4096;

fn opts() -> StoreOptions {
    StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: SEGMENT }
}

#[test]
fn append_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open_log(dir.path());
        log.append(0, b"batch-0-9").unwrap();
        log.append(10, b"batch-10-19").unwrap();
        log.append(20, b"batch-20-29").unwrap();
        store.meta_put("topic/t", b"info").unwrap();
        store.flush().unwrap();
    }
    let (store, log) = open_log(dir.path());
    // An offset inside a batch starts the read at that batch.
    let got = log.read(15, u64::MAX, 1 << 20).unwrap();
    let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, vec![10, 20]);
    assert_eq!(&*got[0].1, b"batch-10-19");
    // The end bound excludes batches at or past it.
    assert_eq!(log.read(0, 20, 1 << 20).unwrap().len(), 2);
    // max_bytes stops after the first batch but always returns one.
    assert_eq!(log.read(0, u64::MAX, 1).unwrap().len(), 1);
    assert_eq!(log.last().unwrap().unwrap().0, 20);
    assert_eq!(log.first().unwrap().unwrap().0, 0);
    assert_eq!(&*store.meta_get("topic/t").unwrap().unwrap(), b"info");
    assert_eq!(store.meta_scan("topic/").unwrap().len(), 1);
}

#[test]
fn remove_and_empty_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts()).unwrap();
    let log = store.log("t", 3).unwrap();
    assert!(log.read(0, u64::MAX, 100).unwrap().is_empty());
    log.append(0, b"a").unwrap();
    log.append(1, b"b").unwrap();
    log.remove(0).unwrap();
    assert_eq!(log.first().unwrap().unwrap().0, 1);
    assert_eq!(log.iter().count(), 1);
}

#[test]
fn an_append_not_past_the_last_batch_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open_log(dir.path());
    log.append(0, b"a").unwrap();
    log.append(10, b"b").unwrap();
    for base in [0, 5, 10] {
        let e = log.append(base, b"x").unwrap_err().to_string();
        assert!(e.contains("truncate first"), "{e}");
    }
    assert_eq!(bases(&log), vec![0, 10]);
    assert_eq!(&*log.last().unwrap().unwrap().1, b"b");
    log.truncate(10).unwrap();
    log.append(10, b"c").unwrap();
    assert_eq!(&*log.last().unwrap().unwrap().1, b"c");
}

#[test]
fn replace_only_swaps_the_expected_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open_log(dir.path());
    log.append(0, b"old").unwrap();
    assert!(!log.replace(0, b"other", b"new").unwrap());
    assert!(!log.replace(5, b"old", b"new").unwrap(), "nothing stored at 5");
    assert!(log.first().unwrap().unwrap().0 == 0 && log.iter().count() == 1);
    assert!(log.replace(0, b"old", b"new").unwrap());
    assert_eq!(&*log.read(0, u64::MAX, 100).unwrap()[0].1, b"new");
}

#[test]
fn oversized_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open_log(dir.path());
    let big = vec![0u8; MAX_BATCH_BYTES + 1];
    assert!(matches!(log.append(0, &big), Err(StorageError::TooLarge { .. })));
}

#[test]
fn a_locked_store_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path(), &opts()).unwrap();
    let err = Store::open(dir.path(), &opts()).err().expect("second open must fail");
    let msg = err.to_string();
    assert!(msg.contains("cannot open the store") && msg.contains("in use by another"), "{msg}");
    assert!(matches!(err, StorageError::Open { why: OpenError::InUse { .. }, .. }), "{err:?}");
}

#[test]
fn a_garbage_store_gives_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), b"segment_size: banana\n").unwrap();
    std::fs::write(dir.path().join("db"), vec![0xAB; 4096]).unwrap();
    let r = std::panic::catch_unwind(|| Store::open(dir.path(), &opts()).map(|_| ()));
    assert!(matches!(r, Ok(Err(_))), "expected a clean error");
}

#[tokio::test]
async fn group_commit_answers_every_waiter() {
    commit_64_logs(|_| true).await;
}

#[tokio::test]
async fn group_commit_answers_appends_and_full_waiters_together() {
    commit_64_logs(|i| i % 2 == 1).await;
}

/// 64 writers each append to their own log and wait for a group commit: a full flush
/// (after also writing a meta key) where `full(i)`, an appends-only one elsewhere.
/// Every one is answered, and after a reopen every append and meta key is there.
async fn commit_64_logs(full: impl Fn(u32) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &opts()).unwrap());
    let gc = GroupCommit::start(store.clone()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let log = store.log("t", i).unwrap();
        let (gc, store, full) = (gc.clone(), store.clone(), full(i));
        tasks.push(tokio::spawn(async move {
            log.append(0, &i.to_be_bytes()).unwrap();
            if full {
                store.meta_put(&format!("k/{i}"), &i.to_be_bytes()).unwrap();
                gc.flush().await
            } else {
                gc.flush_appends().await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    drop(gc);
    drop(store);
    let store = Store::open(dir.path(), &opts()).unwrap();
    for i in 0..64u32 {
        assert_eq!(&*store.log("t", i).unwrap().first().unwrap().unwrap().1, &i.to_be_bytes());
        if full(i) {
            assert_eq!(store.meta_get(&format!("k/{i}")).unwrap().as_deref(), Some(&i.to_be_bytes()[..]));
        }
    }
}

/// Linux drops the pages an fsync could not write and reports the error once, so a
/// flush after a failed fsync must not succeed: every later flush of the store fails,
/// in the group commit too, until a restart recovers from what is on disk. Each of
/// those errors still says what the device said (a full disk stays a full disk).
#[tokio::test]
async fn after_a_failed_fsync_every_flush_fails_until_a_restart() {
    use std::io::ErrorKind::StorageFull;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(Store::open(dir.path(), &opts()).unwrap());
        let log = store.log("t", 0).unwrap();
        log.append(0, b"first").unwrap();
        store.dirty.fail_syncs.store(true, Ordering::SeqCst);
        let e = store.flush().unwrap_err();
        assert!(e.to_string().contains("injected fsync failure"), "{e}");
        assert_eq!(e.io_kind(), Some(StorageFull), "{e:?}");
        assert!(store.fsync_failed());
        // The device works again: a retry would now "succeed" over the lost pages.
        store.dirty.fail_syncs.store(false, Ordering::SeqCst);
        log.append(1, b"second").unwrap();
        for (what, r) in
            [("flush", store.flush()), ("logs", store.flush_logs()), ("meta", store.flush_meta())]
        {
            let e = r.expect_err(what);
            assert_eq!(e.io_kind(), Some(StorageFull), "{what}: {e:?}");
            let e = e.to_string();
            assert!(e.contains("an earlier fsync failed") && e.contains("injected"), "{what}: {e}");
        }
        let gc = GroupCommit::start(store.clone()).unwrap();
        // Every waiter of a group commit gets the flush's own error, kind and all.
        let (a, b) = tokio::join!(gc.flush_appends(), gc.flush());
        for e in [a.unwrap_err(), b.unwrap_err()] {
            assert!(e.to_string().contains("an earlier fsync failed"), "{e}");
            assert_eq!(e.io_kind(), Some(StorageFull), "{e:?}");
            assert!(std::error::Error::source(&e).is_some(), "the cause is kept as the source");
        }
    }
    // A restart syncs what it recovers and flushes again.
    let (store, log) = open_log(dir.path());
    assert!(!store.fsync_failed());
    log.append(2, b"third").unwrap();
    store.flush().unwrap();
    assert_eq!(bases(&log), vec![0, 1, 2]);
}

#[test]
fn an_appends_only_flush_saves_the_recovery_point_for_the_next_full_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open_log(dir.path());
    log.append(0, b"batch-0-9").unwrap();
    store.flush().unwrap();
    let after_full = store.meta_get(&keys::recovery("t/0")).unwrap().map(|b| b.to_vec());
    log.append(10, b"batch-10-19").unwrap();
    store.flush_logs().unwrap();
    // The file is no longer dirty, so the point this flush reached must already be saved
    // (in sled's memory): a later full flush has nothing else to save it from.
    let (seg, len) = log.end_point().unwrap();
    let saved = store.meta_get(&keys::recovery("t/0")).unwrap().map(|b| b.to_vec());
    assert_eq!(saved.as_deref(), Some(&encode_point(seg, len)[..]));
    assert_ne!(saved, after_full, "the appends-only flush moved the point");
    store.flush().unwrap();
    drop((store, log));
    let (store, _log) = open_log(dir.path());
    let reopened = store.meta_get(&keys::recovery("t/0")).unwrap().map(|b| b.to_vec());
    assert_eq!(reopened.as_deref(), Some(&encode_point(seg, len)[..]));
}

/// The segment files of `t`-0 in `dir`, in order.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir.join("logs/t/0")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// The store in `dir` and its log `t`-0.
fn open_log(dir: &Path) -> (Store, PartitionLog) {
    let store = Store::open(dir, &opts()).unwrap();
    let log = store.log("t", 0).unwrap();
    (store, log)
}

/// A crash in the middle of a write: the last `bytes` of `t`-0's first segment never
/// reached the disk.
fn tear(dir: &Path, bytes: u64) {
    let seg = &segment_files(dir)[0];
    let len = std::fs::metadata(seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(seg).unwrap().set_len(len - bytes).unwrap();
}

fn bases(log: &PartitionLog) -> Vec<u64> {
    log.iter().map(|e| e.unwrap().0).collect()
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open_log(dir.path());
        for i in 0..4u64 {
            log.append(i * 10, &[i as u8; 100]).unwrap();
        }
        store.flush().unwrap();
        // Written but never flushed when the node dies.
        log.append(40, &[4; 100]).unwrap();
    }
    // A crash mid-write: the last frame is only partly there.
    tear(dir.path(), 30);
    let (store, log) = open_log(dir.path());
    assert_eq!(bases(&log), vec![0, 10, 20, 30]);
    assert!(log.corruption().is_none(), "a torn unflushed tail is not damage");
    // Appends go on after the cut, and survive a reopen with the rest.
    log.append(40, b"again").unwrap();
    store.flush().unwrap();
    drop(log);
    drop(store);
    let (_store, log) = open_log(dir.path());
    assert_eq!(bases(&log), vec![0, 10, 20, 30, 40]);
    assert_eq!(&*log.last().unwrap().unwrap().1, b"again");
}

#[test]
fn damage_below_what_was_flushed_is_reported_and_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open_log(dir.path());
        for i in 0..4u64 {
            log.append(i, &[7u8; 64]).unwrap();
        }
        store.flush().unwrap();
    }
    let seg = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(seg).unwrap();
    // Inside the third batch's payload: frames are 16 + 64 bytes.
    bytes[2 * 80 + 16 + 5] ^= 1;
    std::fs::write(seg, &bytes).unwrap();
    let (_store, log) = open_log(dir.path());
    assert_eq!(bases(&log), vec![0, 1]);
    let why = log.corruption().expect("flushed data was damaged");
    assert!(why.contains("corrupt frame"), "{why}");
    assert!(log.append(2, b"x").is_err() && log.truncate(1).is_err(), "a damaged log takes no writes");
    assert_eq!(std::fs::read(seg).unwrap(), bytes, "the damaged file is kept as it is");
}

#[test]
fn after_a_truncation_and_its_flush_a_torn_append_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = six_flushed_then_cut_at_two(dir.path());
        store.flush().unwrap();
        log.append(2, &[1u8; 200]).unwrap();
    }
    tear_and_expect_no_damage(dir.path());
}

/// Six 200-byte batches written and flushed, then the log cut back to two (not flushed).
fn six_flushed_then_cut_at_two(dir: &Path) -> (Store, PartitionLog) {
    let (store, log) = open_log(dir);
    for i in 0..6u64 {
        log.append(i, &[9u8; 200]).unwrap();
    }
    store.flush().unwrap();
    log.truncate(2).unwrap();
    (store, log)
}

/// The append after the cut is torn by a crash: reopened, that is a torn tail, not damage.
fn tear_and_expect_no_damage(dir: &Path) {
    tear(dir, 50);
    let (_store, log) = open_log(dir);
    assert!(log.corruption().is_none(), "{:?}", log.corruption());
    assert_eq!(bases(&log), vec![0, 1]);
}

#[test]
fn segments_roll_and_truncation_deletes_whole_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open_log(dir.path());
    let big = vec![1u8; (SEGMENT / 3) as usize];
    for i in 0..8u64 {
        log.append(i * 100, &big).unwrap();
    }
    let before = segment_files(dir.path()).len();
    assert!(before >= 2, "{before} segments");
    log.truncate(150).unwrap();
    assert_eq!(bases(&log), vec![0, 100]);
    assert_eq!(segment_files(dir.path()).len(), 1);
    // Replacing the last batch is a truncation, then an append.
    log.truncate(100).unwrap();
    log.append(100, b"new-100").unwrap();
    assert_eq!(bases(&log), vec![0, 100]);
    store.flush().unwrap();
    drop(log);
    drop(store);
    let (_store, log) = open_log(dir.path());
    assert_eq!(bases(&log), vec![0, 100]);
    assert_eq!(&*log.last().unwrap().unwrap().1, b"new-100");
}

#[test]
fn removing_the_head_frees_whole_segments_and_remove_below_forgets_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open_log(dir.path());
    let big = vec![2u8; (SEGMENT / 2) as usize];
    for i in 0..6u64 {
        log.append(i, &big).unwrap();
    }
    let before = segment_files(dir.path()).len();
    log.remove(0).unwrap();
    log.remove(1).unwrap();
    assert!(segment_files(dir.path()).len() < before, "a segment without batches is deleted");
    assert!(log.remove(4).is_err(), "the middle of a log cannot be removed");
    log.remove(5).unwrap();
    assert_eq!(bases(&log), vec![2, 3, 4]);
    store.flush().unwrap();
    drop(log);
    drop(store);
    // Batches removed from a segment still in use are found again on open; the caller
    // forgets them by its saved log start.
    let (_store, log) = open_log(dir.path());
    log.remove_below(3).unwrap();
    assert_eq!(bases(&log), vec![3, 4]);
}

#[test]
fn replace_many_rewrites_each_segment_once_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open_log(dir.path());
        for i in 0..4u64 {
            log.append(i, format!("batch-{i}").as_bytes()).unwrap();
        }
        let swapped = log
            .replace_many(&[
                (1, b"batch-1", b"b1"),
                (2, b"stale", b"b2"),
                (3, b"batch-3", b"b3-longer-than-before"),
            ])
            .unwrap();
        assert_eq!(swapped, vec![true, false, true]);
        // Appends go on in the rewritten segment.
        log.append(4, b"batch-4").unwrap();
        store.flush().unwrap();
    }
    let (store, log) = open_log(dir.path());
    let got: Vec<Vec<u8>> = log.iter().map(|e| e.unwrap().1.to_vec()).collect();
    let want: Vec<&[u8]> = vec![b"batch-0", b"b1", b"batch-2", b"b3-longer-than-before", b"batch-4"];
    assert_eq!(got, want);
    // A rewrite that crashed before its swap leaves only the old segment.
    std::fs::write(dir.path().join("logs/t/0/00000000000000000000.swap"), b"half").unwrap();
    drop(log);
    drop(store);
    let store = Store::open(dir.path(), &opts()).unwrap();
    assert_eq!(bases(&store.log("t", 0).unwrap()), vec![0, 1, 2, 3, 4]);
    let files = segment_files(dir.path());
    assert!(
        files.iter().all(|f| f.extension().unwrap() == "log"),
        "the leftover swap file is gone: {files:?}"
    );
    // The rewritten segment was the one appended to: appends moved to a new one first.
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn a_topic_name_that_is_not_a_directory_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts()).unwrap();
    assert!(store.log("..", 0).is_err());
    assert!(store.log("a/b", 0).is_err());
}

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[test]
fn a_cut_the_last_run_never_flushed_is_not_taken_for_damage_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The node dies right after a truncation, before the flush that follows it.
    drop(six_flushed_then_cut_at_two(dir.path()));
    {
        let (_store, log) = open_log(dir.path());
        assert_eq!(bases(&log), vec![0, 1]);
        // It dies again in the middle of its first append.
        log.append(2, &[1u8; 200]).unwrap();
    }
    tear_and_expect_no_damage(dir.path());
}

#[test]
fn a_segment_emptied_from_the_head_goes_when_the_next_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open_log(dir.path());
    let big = vec![3u8; (SEGMENT / 2) as usize];
    log.append(0, &big).unwrap();
    log.append(1, &big).unwrap();
    log.remove(0).unwrap();
    log.remove(1).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1, "the only segment stays while it is the last");
    log.append(2, &big).unwrap();
    log.append(3, &big).unwrap();
    let files = segment_files(dir.path());
    assert!(files.iter().all(|f| !f.ends_with("00000000000000000000.log")), "{files:?}");
    assert_eq!(bases(&log), vec![2, 3]);
}

#[test]
fn values_sled_keeps_in_blob_files_are_fsynced_by_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts()).unwrap();
    // Over a quarter of sled's 8 MiB segment: a file of its own in `blobs/`.
    let big = vec![5u8; 3 << 20];
    store.meta_put("big", &big).unwrap();
    store.flush().unwrap();
    let on_disk = || -> std::collections::HashMap<std::ffi::OsString, u64> {
        std::fs::read_dir(dir.path().join(BLOBS_DIR))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name(), e.metadata().unwrap().len()))
            .collect()
    };
    assert!(!on_disk().is_empty(), "sled wrote the value to a blob file");
    assert_eq!(store.synced_blobs(), on_disk(), "the flush synced every blob file at its length");
    // A later value gets its own file, synced by the next flush.
    store.meta_put("big2", &big).unwrap();
    store.flush().unwrap();
    assert_eq!(store.synced_blobs(), on_disk());
    drop(store);
    let store = Store::open(dir.path(), &opts()).unwrap();
    assert_eq!(&*store.meta_get("big").unwrap().unwrap(), &big[..]);
}

#[test]
fn deleting_a_partition_removes_its_files_and_keys_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts()).unwrap();
    for (topic, p) in [("t", 0), ("t", 1), ("t~1", 0)] {
        let log = store.log(topic, p).unwrap();
        for i in 0..20u64 {
            log.append(i * 10, &[7u8; 600]).unwrap();
        }
        store.meta_put(&keys::hard_state(topic, p), b"hs").unwrap();
        store.meta_put(&keys::high_watermark(topic, p), b"hw").unwrap();
    }
    store.flush().unwrap();
    assert_eq!(store.stored_partitions(), vec![("t".into(), 0), ("t".into(), 1), ("t~1".into(), 0)]);
    store.delete_partition("t", 0).unwrap();
    store.flush().unwrap();
    assert!(!dir.path().join("logs/t/0").exists());
    assert!(store.meta_get(&keys::hard_state("t", 0)).unwrap().is_none());
    assert!(store.meta_get(&keys::high_watermark("t", 0)).unwrap().is_none());
    assert!(store.meta_scan("recovery/t/0").unwrap().is_empty());
    assert_eq!(store.stored_partitions(), vec![("t".into(), 1), ("t~1".into(), 0)]);
    assert!(store.meta_get(&keys::hard_state("t", 1)).unwrap().is_some(), "other partitions keep theirs");
    store.delete_partition("t", 1).unwrap();
    assert!(!dir.path().join("logs/t").exists(), "the topic's directory goes with its last partition");
    // Opened again, the name starts empty; deleting what is not there is no error.
    assert!(store.log("t", 0).unwrap().last().unwrap().is_none());
    store.delete_partition("nothing", 3).unwrap();
    assert_eq!(store.log("t~1", 0).unwrap().last().unwrap().unwrap().0, 190);
}
