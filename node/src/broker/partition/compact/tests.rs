//! Compaction on real sled in a temporary directory: what is kept, at which offsets,
//! what the replica core recovers afterwards, and that nothing at or above the high
//! watermark changes; and the other moves of a log's head (delete retention, a reset to
//! a leader's start) with what survives a reopen.

use super::super::as_entry;
use super::*;
use crate::replica::{Entry, Epoch, ProducerState};
use crate::storage::{Store, StoreOptions};
use meshlog_protocol::types::CleanupPolicy;
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "offsets";
const DAY_MS: i64 = 86_400_000;
/// Record timestamps; `NOW_MS` is a little later.
const T0_MS: i64 = 1_000_000;
const NOW_MS: i64 = T0_MS + 1_000;

/// A record: key, value (None: a tombstone).
type Rec = (Option<&'static str>, Option<&'static str>);

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path(), &StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: 16 << 10 })
            .unwrap();
    (dir, Arc::new(store))
}

fn open(store: &Arc<Store>) -> (Partition, Vec<Entry>) {
    Partition::open(store.clone(), TOPIC, 0).unwrap()
}

fn config() -> TopicConfig {
    TopicConfig { cleanup_policy: CleanupPolicy::Compact, ..TopicConfig::default() }
}

/// Store a batch of `recs` (epoch 1) at the log end; returns its base offset.
fn put(part: &Partition, recs: &[Rec]) -> u64 {
    let mut b = batch::BatchBuilder::new();
    for (k, v) in recs {
        b.push(T0_MS, k.map(str::as_bytes), v.map(str::as_bytes), &[]);
    }
    store_at_end(part, b.build().unwrap())
}

/// Store a leader's epoch-start marker at the log end.
fn marker(part: &Partition) -> u64 {
    store_at_end(part, batch::leader_change_marker(T0_MS, 1))
}

fn store_at_end(part: &Partition, mut bytes: Vec<u8>) -> u64 {
    let base = part.offsets().1;
    batch::set_base_offset(&mut bytes, base as i64).unwrap();
    batch::set_partition_leader_epoch(&mut bytes, 1).unwrap();
    let h = batch::parse_header(&bytes).unwrap();
    part.store_batch(base, &bytes, h.last_offset_delta as u32 + 1).unwrap();
    base
}

/// Every data record stored, as (offset, key, value).
fn stored(part: &Partition) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8(b).unwrap());
    let mut out = Vec::new();
    for (_, bytes) in part.read_batches(0, u64::MAX, usize::MAX).unwrap() {
        batch::verify_crc(&bytes).unwrap();
        if !batch::parse_header(&bytes).unwrap().is_control() {
            let recs = batch::records(&bytes).unwrap();
            out.extend(recs.into_iter().map(|r| (r.offset, text(r.key), text(r.value))));
        }
    }
    out
}

fn rec(offset: i64, key: &str, value: &str) -> (i64, Option<String>, Option<String>) {
    (offset, Some(key.to_string()), Some(value.to_string()))
}

/// The stored batches as the replica core sees them.
fn entries(part: &Partition) -> Vec<Entry> {
    let batches = part.read_batches(0, u64::MAX, usize::MAX).unwrap();
    batches.iter().map(|(b, bytes)| as_entry(*b, &batch::parse_header(bytes).unwrap())).collect()
}

/// Reopening recovers the same offsets and entries, contiguous, and serves.
fn assert_reopens_same(store: &Arc<Store>, part: &Partition) {
    let (again, recovered) = open(store);
    assert_eq!(again.failure(), None);
    assert_eq!(again.offsets(), part.offsets());
    assert_eq!(again.start_epoch(), part.start_epoch());
    assert_eq!(recovered, entries(part));
    assert!(recovered.windows(2).all(|w| w[0].end() == w[1].base), "contiguous: {recovered:?}");
}

#[tokio::test]
async fn superseded_records_go_and_the_latest_stay_at_their_offsets() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    marker(&part); // 0
    put(&part, &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("a"), Some("2"))]); // 1..4
    put(&part, &[(Some("b"), Some("2")), (None, Some("x"))]); // 4..6
    put(&part, &[(Some("c"), Some("1"))]); // 6
    part.set_hw(7);
    let before = entries(&part);
    let stats = part.compact(&config(), NOW_MS).unwrap();
    assert_eq!((stats.batches_rewritten, stats.batches_removed, stats.records_removed), (1, 1, 2));
    assert!(stats.bytes_after < stats.bytes_before);
    let want = vec![rec(3, "a", "2"), rec(4, "b", "2"), (5, None, Some("x".into())), rec(6, "c", "1")];
    assert_eq!(stored(&part), want);
    // Same entries, less the leading marker; a consumer reads the same offsets.
    assert_eq!(entries(&part), before[1..]);
    assert_eq!(part.offsets().0, 1);
    let fetched = part.fetch(1, 1 << 20, Duration::ZERO).await.unwrap();
    assert_eq!((fetched.log_start_offset, fetched.high_watermark), (1, 7));
    let offsets: Vec<i64> = batch::split_batches(&fetched.records)
        .flat_map(|b| batch::records(b.unwrap()).unwrap())
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [3, 4, 5, 6]);
    assert_reopens_same(&store, &part);
    // A second pass finds nothing to do.
    let again = part.compact(&config(), NOW_MS).unwrap();
    assert!(!again.changed() && again.bytes_before == again.bytes_after, "{again:?}");
}

#[test]
fn an_emptied_batch_in_the_middle_stays_so_the_log_has_no_gap() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    put(&part, &[(Some("z"), Some("1"))]); // 0
    put(&part, &[(Some("a"), Some("1")), (Some("a"), Some("2"))]); // 1..3
    marker(&part); // 3: kept, control batches are left as they are
    put(&part, &[(Some("a"), Some("3"))]); // 4
    part.set_hw(5);
    let before = entries(&part);
    let (_, _, size) = part.offsets();
    let stats = part.compact(&config(), NOW_MS).unwrap();
    assert_eq!((stats.batches_rewritten, stats.batches_removed, stats.records_removed), (1, 0, 2));
    assert_eq!(stored(&part), [rec(0, "z", "1"), rec(4, "a", "3")]);
    assert_eq!(entries(&part), before);
    let emptied = &part.read_batches(1, 3, usize::MAX).unwrap()[0].1;
    let h = batch::verify_crc(emptied).unwrap();
    assert_eq!((h.records_count, h.last_offset_delta), (0, 1));
    assert_eq!(part.offsets(), (0, 5, size - stats.bytes_before + stats.bytes_after));
    assert_reopens_same(&store, &part);
}

#[tokio::test]
async fn a_leading_run_without_records_is_deleted_and_the_log_start_advances() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    marker(&part); // 0
    put(&part, &[(Some("a"), Some("1"))]); // 1
    put(&part, &[(Some("a"), Some("2")), (Some("b"), Some("1"))]); // 2..4
    put(&part, &[(Some("b"), Some("2")), (Some("a"), Some("3"))]); // 4..6
    part.set_hw(6);
    let stats = part.compact(&config(), NOW_MS).unwrap();
    assert_eq!((stats.batches_rewritten, stats.batches_removed, stats.records_removed), (2, 3, 3));
    assert_eq!(stored(&part), [rec(4, "b", "2"), rec(5, "a", "3")]);
    assert_eq!(part.offsets().0, 4);
    assert_eq!(part.start_epoch(), Epoch::new(1), "the epoch of the batch below the start is kept");
    let err = part.fetch(0, 1 << 20, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code, meshlog_protocol::ErrorCode::OffsetOutOfRange);
    assert_reopens_same(&store, &part);
}

#[test]
fn batches_at_or_above_the_high_watermark_are_not_touched() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    put(&part, &[(Some("a"), Some("1"))]); // 0
    put(&part, &[(Some("a"), Some("2")), (Some("a"), Some("3"))]); // 1..3, straddles the HW
    put(&part, &[(Some("a"), Some("4"))]); // 3
    part.set_hw(2);
    let before = part.read_batches(0, u64::MAX, usize::MAX).unwrap();
    let stats = part.compact(&config(), NOW_MS).unwrap();
    assert!(!stats.changed(), "{stats:?}");
    let after = part.read_batches(0, u64::MAX, usize::MAX).unwrap();
    let bytes =
        |v: &[(u64, crate::storage::StoredBytes)]| v.iter().map(|(_, b)| b.to_vec()).collect::<Vec<_>>();
    assert_eq!(bytes(&after), bytes(&before));
    // Once committed, the superseded records go.
    part.set_hw(4);
    part.compact(&config(), NOW_MS).unwrap();
    assert_eq!(stored(&part), [rec(3, "a", "4")]);
    assert_eq!(part.offsets().0, 3, "both emptied batches led the log");
}

#[test]
fn a_latest_tombstone_is_kept_for_delete_retention_ms_then_removed() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    put(&part, &[(Some("a"), Some("1")), (Some("b"), Some("1"))]); // 0..2
    put(&part, &[(Some("a"), None)]); // 2: tombstone of a
    put(&part, &[(None, Some("unkeyed"))]); // 3
    part.set_hw(4);
    let cfg = config();
    let retention_ms = cfg.delete_retention_ms as i64;
    assert_eq!(retention_ms, DAY_MS);
    part.compact(&cfg, T0_MS + retention_ms).unwrap();
    assert_eq!(
        stored(&part),
        [rec(1, "b", "1"), (2, Some("a".into()), None), (3, None, Some("unkeyed".into()))]
    );
    part.compact(&cfg, T0_MS + retention_ms + 1).unwrap();
    assert_eq!(stored(&part), [rec(1, "b", "1"), (3, None, Some("unkeyed".into()))]);
    assert_eq!(part.offsets().0, 0);
    assert_reopens_same(&store, &part);
}

#[test]
fn the_last_batch_stays_even_without_records() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    put(&part, &[(Some("a"), Some("1"))]); // 0
    marker(&part); // 1
    put(&part, &[(Some("a"), None)]); // 2
    part.set_hw(3);
    let stats = part.compact(&config(), NOW_MS + DAY_MS).unwrap();
    assert_eq!((stats.batches_rewritten, stats.batches_removed), (2, 2));
    assert_eq!(stored(&part), []);
    assert_eq!(part.offsets().0, 2);
    let (_, recovered) = open(&store);
    assert_eq!(recovered.len(), 1);
    assert_eq!((recovered[0].base, recovered[0].epoch.get()), (2, 1), "the last epoch survives a reopen");
    assert_reopens_same(&store, &part);
    // Once a later batch exists, the empty one is part of the leading run.
    put(&part, &[(Some("b"), Some("1"))]); // 3
    part.set_hw(4);
    part.compact(&config(), NOW_MS + DAY_MS).unwrap();
    assert_eq!(part.offsets().0, 3);
    assert_reopens_same(&store, &part);
}

#[test]
fn time_and_size_retention_do_not_delete_from_a_compacted_topic() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    put(&part, &[(Some("a"), Some("1"))]);
    put(&part, &[(Some("b"), Some("1"))]);
    part.set_hw(2);
    let cfg = TopicConfig { retention_ms: Some(0), retention_bytes: Some(0), ..config() };
    assert_eq!(part.enforce_retention(&cfg, NOW_MS).unwrap(), 0);
    assert_eq!(stored(&part).len(), 2);
}

/// A producer's batch of `n` records at the log end (epoch 1).
fn put_idempotent(part: &Partition, id: i64, first_seq: i32, n: usize) -> u64 {
    let mut b = batch::BatchBuilder::with_producer(id, 0, first_seq);
    for _ in 0..n {
        b.push(T0_MS, None, Some(b"v"), &[]);
    }
    store_at_end(part, b.build().unwrap())
}

#[test]
fn delete_retention_keeps_the_last_batch_and_saves_the_start_epoch_and_producers() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    put_idempotent(&part, 5, 0, 2); // 0..2
    put_idempotent(&part, 5, 2, 2); // 2..4
    put(&part, &[(None, Some("x"))]); // 4
    part.set_hw(5);
    let cfg = TopicConfig { retention_ms: Some(0), ..TopicConfig::default() };
    assert_eq!(part.enforce_retention(&cfg, NOW_MS).unwrap(), 2, "all but the last batch");
    assert_eq!((part.offsets().0, part.start_epoch()), (4, Epoch::new(1)));
    let want = vec![ProducerState { id: 5, epoch: 0, recent: vec![(0, 1, 0, 2), (2, 3, 2, 4)] }];
    assert_eq!(part.deleted_producers(), want);
    let (again, recovered) = open(&store);
    assert_eq!((again.offsets().0, again.start_epoch(), again.deleted_producers()), (4, Epoch::new(1), want));
    assert_eq!(recovered.len(), 1);
}

#[test]
fn a_reset_interrupted_by_a_crash_reopens_at_the_saved_start_and_retention_leaves_it_alone() {
    let (dir, store) = store();
    let (part, _) = open(&store);
    for _ in 0..3 {
        put(&part, &[(None, Some("old"))]); // 0, 1, 2
    }
    part.set_hw(2);
    let producers = vec![ProducerState { id: 7, epoch: 0, recent: vec![(0, 9, 20, 30)] }];
    part.save_reset_start(40, Epoch::new(3), producers.clone()).unwrap();
    store.flush().unwrap();
    // Until the reset runs, retention must not move the start back below it, nor may
    // another reset.
    let cfg = TopicConfig { retention_ms: Some(0), ..TopicConfig::default() };
    assert_eq!(part.enforce_retention(&cfg, NOW_MS).unwrap(), 0);
    assert_eq!(part.offsets().0, 40);
    assert!(part.save_reset_start(30, Epoch::new(3), vec![]).is_err(), "the start never moves back");
    // The process dies before `reset`: the store is reopened from its directory, and
    // the log starts, empty, at the saved start.
    drop(part);
    drop(store);
    let store = Arc::new(
        Store::open(dir.path(), &StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: 16 << 10 })
            .unwrap(),
    );
    let (again, recovered) = open(&store);
    assert!(recovered.is_empty(), "{recovered:?}");
    assert_eq!(again.offsets(), (40, 40, 0));
    assert_eq!((again.start_epoch(), again.deleted_producers()), (Epoch::new(3), producers));
}

#[test]
fn a_log_start_saved_by_an_older_node_reads_as_epoch_zero() {
    let (_dir, store) = store();
    store.meta_put(&format!("log_start/{TOPIC}/0"), &9u64.to_be_bytes()).unwrap();
    let (part, _) = open(&store);
    assert_eq!((part.offsets().0, part.start_epoch()), (9, Epoch::new(0)));
    store.meta_put(&format!("log_start/{TOPIC}/0"), &[1, 2, 3]).unwrap();
    let err = Partition::open(store.clone(), TOPIC, 0).err().expect("a damaged start is an error");
    assert!(err.to_string().contains("saved log start of 3 bytes"), "{err}");
}

#[tokio::test]
async fn an_offset_above_the_high_watermark_but_in_the_log_reads_nothing_instead_of_out_of_range() {
    let (_dir, store) = store();
    let (part, _) = open(&store);
    marker(&part); // 0
    put(&part, &[(Some("a"), Some("1")), (Some("b"), Some("1"))]); // 1..3
    put(&part, &[(Some("c"), Some("1"))]); // 3..4
    part.set_hw(1); // as a restarted replica whose saved HW lags its log
    let got = part.fetch(3, 1 << 20, Duration::ZERO).await.unwrap();
    assert!(got.records.is_empty(), "nothing above the HW is served");
    assert_eq!(got.high_watermark, 1);
    // Waiting at such an offset returns as soon as the HW passes it.
    let waiting = part.fetch(3, 1 << 20, Duration::from_secs(30));
    let (got, ()) = tokio::join!(waiting, async { part.set_hw(4) });
    assert!(!got.unwrap().records.is_empty(), "the batch at 3 once the HW passed it");
    let err = part.fetch(5, 1 << 20, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code, meshlog_protocol::ErrorCode::OffsetOutOfRange, "past the log end");
}
