//! Storage API tests on real sled in temporary directories.

use super::*;

fn opts() -> StoreOptions {
    StoreOptions { cache_capacity_bytes: 8 << 20 }
}

#[test]
fn append_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &opts()).unwrap();
        let log = store.log("t", 0).unwrap();
        log.append(0, b"batch-0-9").unwrap();
        log.append(10, b"batch-10-19").unwrap();
        log.append(20, b"batch-20-29").unwrap();
        store.meta_put("topic/t", b"info").unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), &opts()).unwrap();
    let log = store.log("t", 0).unwrap();
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
fn replace_only_swaps_the_expected_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &opts()).unwrap();
    let log = store.log("t", 0).unwrap();
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
    let store = Store::open(dir.path(), &opts()).unwrap();
    let log = store.log("t", 0).unwrap();
    let big = vec![0u8; MAX_INLINE_VALUE_BYTES + 1];
    assert!(matches!(log.append(0, &big), Err(StorageError::TooLarge { .. })));
}

#[test]
fn a_locked_store_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path(), &opts()).unwrap();
    let err = Store::open(dir.path(), &opts()).err().expect("second open must fail");
    let msg = err.to_string();
    assert!(msg.contains("cannot open the store"), "{msg}");
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
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &opts()).unwrap());
    let gc = GroupCommit::start(store.clone()).unwrap();
    let log = store.log("t", 0).unwrap();
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let log = log.clone();
        let gc = gc.clone();
        tasks.push(tokio::spawn(async move {
            log.append(i, &i.to_be_bytes()).unwrap();
            gc.flush().await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(log.iter().count(), 64);
}

use std::sync::Arc;
