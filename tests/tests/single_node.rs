//! A single node, in process, over real libp2p on loopback and real sled in a temp dir:
//! keyed records land in Kafka's partition and come back in order, offsets are dense and
//! survive a restart, long polls wake on new data, retention trims the head, compaction
//! keeps each key's latest record at its offset, and every kind of bad input gets a
//! clear error code while the node keeps serving and loses nothing. The leader answers
//! where each epoch of its log ends.

use meshlog::client::consumer::{self, StartAt};
use meshlog::client::producer::{Producer, ProducerConfig};
use meshlog::client::{Client, ClientError};
use meshlog::network::Multiaddr;
use meshlog::server::{self, RunningNode};
use meshlog::time::unix_ms;
use meshlog_protocol::batch::BatchBuilder;
use meshlog_protocol::messages::{ClientRequest, ClientResponse, EpochEnd, FetchRequest, ProduceRequest};
use meshlog_protocol::partitioner::partition_for_key;
use meshlog_protocol::types::{Acks, CleanupPolicy, OffsetSpec};
use meshlog_protocol::{Epoch, ErrorCode};
use meshlog_tests::{test_config, wait_until, SHORT_BUDGET};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

async fn start(dir: &Path) -> (RunningNode, Client) {
    let node = server::start(test_config(dir)).await.expect("node starts");
    let addr: Multiaddr = node.listen_addrs()[0].clone();
    let client = Client::connect(&addr).await.expect("client connects");
    (node, client)
}

fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Server(w) => w.code,
        other => panic!("expected a server error, got {other}"),
    }
}

async fn read_all(client: &Client, topic: &str, partition: u32) -> Vec<(u64, Option<Vec<u8>>, Vec<u8>)> {
    let records = meshlog_tests::read_partition(client, topic, partition).await;
    records.into_iter().map(|r| (r.offset as u64, r.key, r.value.unwrap_or_default())).collect()
}

#[tokio::test]
async fn keyed_records_land_in_kafkas_partition_in_order_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("orders", 4, 1, BTreeMap::new()).await.unwrap();

    // Phase 1: produce 2,000 keyed records through the batching producer.
    let cfg = ProducerConfig { batch_size_bytes: 4096, ..ProducerConfig::default() };
    let mut producer = Producer::new(client.clone(), "orders", cfg).await.unwrap();
    for i in 0..2000u32 {
        let key = format!("customer-{}", i % 37);
        producer.send(Some(key.as_bytes()), format!("{i}").as_bytes(), unix_ms()).await.unwrap();
    }
    producer.flush().await.unwrap();
    assert_eq!(producer.stats().records, 2000);

    // Phase 2: every record is in murmur2(key) % 4, offsets dense from 0 (a leader
    // elected over an empty log writes no epoch-start marker), send order kept.
    let mut seen = 0;
    for p in 0..4 {
        let recs = read_all(&client, "orders", p).await;
        let mut last_i: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        for (idx, (off, key, value)) in recs.iter().enumerate() {
            assert_eq!(*off, idx as u64, "offsets are dense from 0");
            let key = key.clone().expect("keyed");
            assert_eq!(partition_for_key(&key, 4), p, "record in Kafka's partition");
            let i: u32 = String::from_utf8_lossy(value).parse().unwrap();
            if let Some(prev) = last_i.insert(key, i) {
                assert!(prev < i, "per-key order kept");
            }
        }
        seen += recs.len();
    }
    assert_eq!(seen, 2000);

    // Phase 3: restart on the same data dir; data and offsets continue.
    node.shutdown().await;
    drop(client);
    let (node, client) = start(dir.path()).await;
    let before: Vec<_> = read_all(&client, "orders", 0).await;
    assert!(!before.is_empty());
    let mut producer =
        Producer::new(client.clone(), "orders", ProducerConfig { partition: Some(0), ..Default::default() })
            .await
            .unwrap();
    producer.send(None, b"after-restart", unix_ms()).await.unwrap();
    producer.flush().await.unwrap();
    let after = read_all(&client, "orders", 0).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        after.last().unwrap().0,
        before.last().unwrap().0 + 2,
        "the next offset follows the last, after the new epoch's marker"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("t", 2, 1, BTreeMap::new()).await.unwrap();
    let mut b = BatchBuilder::new();
    b.push(1, None, Some(b"keep-me"), &[]);
    let good = b.build().unwrap();
    let produce = |topic: &str, partition: u32, batch: Vec<u8>| {
        ClientRequest::Produce(ProduceRequest {
            topic: topic.into(),
            partition,
            acks: Acks::All,
            timeout_ms: 5000,
            leader_epoch: None,
            batch,
        })
    };
    client.request(produce("t", 0, good.clone())).await.unwrap();

    let cases: Vec<(&str, ClientRequest, ErrorCode)> = vec![
        ("unknown topic", produce("nope", 0, good.clone()), ErrorCode::UnknownTopicOrPartition),
        ("unknown partition", produce("t", 9, good.clone()), ErrorCode::UnknownTopicOrPartition),
        ("garbage batch", produce("t", 0, b"not a batch".to_vec()), ErrorCode::CorruptMessage),
        (
            "flipped byte",
            produce("t", 0, {
                let mut x = good.clone();
                let n = x.len();
                x[n - 1] ^= 0xff;
                x
            }),
            ErrorCode::CorruptMessage,
        ),
        (
            "offset past the end",
            ClientRequest::Fetch(FetchRequest {
                topic: "t".into(),
                partition: 0,
                offset: 99,
                max_bytes: 1024,
                max_wait_ms: 0,
                leader_epoch: None,
            }),
            ErrorCode::OffsetOutOfRange,
        ),
        (
            "duplicate topic",
            ClientRequest::CreateTopic {
                name: "t".into(),
                partitions: 1,
                replication_factor: 1,
                config: BTreeMap::new(),
            },
            ErrorCode::TopicAlreadyExists,
        ),
        (
            "config typo",
            ClientRequest::CreateTopic {
                name: "u".into(),
                partitions: 1,
                replication_factor: 1,
                config: BTreeMap::from([("retention.mss".into(), "1".into())]),
            },
            ErrorCode::InvalidConfig,
        ),
        (
            "zero partitions",
            ClientRequest::CreateTopic {
                name: "u".into(),
                partitions: 0,
                replication_factor: 1,
                config: BTreeMap::new(),
            },
            ErrorCode::InvalidPartitions,
        ),
        (
            "replication beyond the mesh",
            ClientRequest::CreateTopic {
                name: "u".into(),
                partitions: 1,
                replication_factor: 3,
                config: BTreeMap::new(),
            },
            ErrorCode::InvalidReplicationFactor,
        ),
        (
            "bad name",
            ClientRequest::CreateTopic {
                name: "a/b".into(),
                partitions: 1,
                replication_factor: 1,
                config: BTreeMap::new(),
            },
            ErrorCode::InvalidTopic,
        ),
        (
            "unknown topic offsets",
            ClientRequest::ListOffsets { topic: "nope".into(), partition: 0, spec: OffsetSpec::Latest },
            ErrorCode::UnknownTopicOrPartition,
        ),
    ];
    for (what, req, want) in cases {
        let err = client.request(req).await.expect_err(what);
        assert_eq!(code(err), want, "{what}");
    }

    // An oversized record batch is refused with MESSAGE_TOO_LARGE.
    client
        .create_topic("small", 1, 1, BTreeMap::from([("max.message.bytes".into(), "1024".into())]))
        .await
        .unwrap();
    let mut big = BatchBuilder::new();
    big.push(1, None, Some(&vec![7u8; 4096]), &[]);
    let err = client.request(produce("small", 0, big.build().unwrap())).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::MessageTooLarge);

    // Nothing changed: one record in t-0, none created by the failed requests.
    let recs = read_all(&client, "t", 0).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].2, b"keep-me");
    let names: Vec<String> = client.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["small".to_string(), "t".to_string()]);
    node.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_producer_retry_is_not_written_twice_and_a_gap_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("idem", 1, 1, BTreeMap::new()).await.unwrap();
    let batch = |seq: i32| {
        let mut b = BatchBuilder::with_producer(42, 0, seq);
        b.push(1, None, Some(format!("seq-{seq}").as_bytes()), &[]);
        b.push(1, None, Some(format!("seq-{}", seq + 1).as_bytes()), &[]);
        ClientRequest::Produce(ProduceRequest {
            topic: "idem".into(),
            partition: 0,
            acks: Acks::All,
            timeout_ms: 5000,
            leader_epoch: None,
            batch: b.build().unwrap(),
        })
    };
    let first = client.request(batch(0)).await.unwrap();
    let retry = client.request(batch(0)).await.unwrap();
    match (first, retry) {
        (ClientResponse::Produced(a), ClientResponse::Produced(b)) => {
            assert_eq!(a.base_offset, b.base_offset, "the retry is answered with the original offset");
            assert!(!a.duplicate && b.duplicate);
        }
        other => panic!("{other:?}"),
    }
    let gap = client.request(batch(5)).await.unwrap_err();
    assert_eq!(code(gap), ErrorCode::OutOfOrderSequenceNumber);
    client.request(batch(2)).await.unwrap();
    assert_eq!(read_all(&client, "idem", 0).await.len(), 4, "two batches, no duplicate");
    node.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_wakes_when_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    let reader = client.clone();
    // Long-poll from the start (a marker-only answer would move the poll on).
    let poll = tokio::spawn(async move {
        let mut offset = 0;
        loop {
            let f = consumer::fetch(&reader, "t", 0, offset, 1 << 20, 20_000).await?;
            if !f.records.is_empty() {
                return Ok::<_, meshlog::client::ClientError>(f);
            }
            offset = f.next_offset;
        }
    });
    // The poll is parked at the high watermark; the write below must wake it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut p = Producer::new(client.clone(), "t", ProducerConfig::default()).await.unwrap();
    p.send(None, b"wake", 1).await.unwrap();
    p.flush().await.unwrap();
    let fetched = tokio::time::timeout(SHORT_BUDGET, poll).await.expect("poll answered").unwrap().unwrap();
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value.as_deref(), Some(&b"wake"[..]));
    node.shutdown().await;
}

#[tokio::test]
async fn retention_by_size_trims_the_head_and_the_start_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    let cfg = BTreeMap::from([("retention.bytes".to_string(), "2000".to_string())]);
    client.create_topic("r", 1, 1, cfg).await.unwrap();
    let pc = ProducerConfig { batch_size_bytes: 1, ..ProducerConfig::default() };
    let mut p = Producer::new(client.clone(), "r", pc).await.unwrap();
    for i in 0..50u32 {
        p.send(None, &[i as u8; 200], unix_ms()).await.unwrap();
    }
    p.flush().await.unwrap();
    node.broker().enforce_retention();
    let head = consumer::start_offset(&client, "r", 0, StartAt::Beginning).await.unwrap();
    assert!(head > 0, "the head was trimmed");
    let end = consumer::start_offset(&client, "r", 0, StartAt::End).await.unwrap();
    assert_eq!(end, 50, "offsets keep their meaning (50 records from offset 0)");
    let err = consumer::fetch(&client, "r", 0, 0, 1024, 0).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::OffsetOutOfRange);

    node.shutdown().await;
    drop(client);
    let (node, client) = start(dir.path()).await;
    let again = wait_until("restarted node answers", SHORT_BUDGET, || {
        let c = client.clone();
        async move { consumer::start_offset(&c, "r", 0, StartAt::Beginning).await.ok() }
    })
    .await;
    assert_eq!(again, head);
    let end_again = consumer::start_offset(&client, "r", 0, StartAt::End).await.unwrap();
    assert!(end_again >= 50, "the end stays (plus the new epoch's marker once it is committed)");
    node.shutdown().await;
}

#[tokio::test]
async fn compaction_keeps_each_keys_latest_record_at_its_offset_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    let cfg = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    let info = client.create_topic("c", 1, 1, cfg).await.unwrap();
    assert_eq!(info.config.cleanup_policy, CleanupPolicy::Compact);

    // Phase 1: 30 records over 5 keys, in batches of a few records, from offset 0.
    let pc = ProducerConfig { batch_size_bytes: 300, ..ProducerConfig::default() };
    let mut p = Producer::new(client.clone(), "c", pc).await.unwrap();
    for i in 0..30u32 {
        p.send(Some(format!("k{}", i % 5).as_bytes()), format!("{i}").as_bytes(), unix_ms()).await.unwrap();
    }
    p.flush().await.unwrap();

    // Phase 2: once all is committed, compaction leaves the latest record of each key
    // (record i at offset i).
    wait_until("all 30 offsets committed", SHORT_BUDGET, || {
        let c = client.clone();
        async move { consumer::start_offset(&c, "c", 0, StartAt::End).await.ok().filter(|&e| e == 30) }
    })
    .await;
    node.broker().enforce_retention();
    let want: Vec<_> = (25..30u64)
        .map(|i| (i, Some(format!("k{}", i % 5).into_bytes()), format!("{i}").into_bytes()))
        .collect();
    assert_eq!(read_all(&client, "c", 0).await, want);

    // Phase 3: a restarted node serves the same records at the same offsets.
    node.shutdown().await;
    drop(client);
    let (node, client) = start(dir.path()).await;
    wait_until("restarted node answers", SHORT_BUDGET, || {
        let c = client.clone();
        async move { consumer::start_offset(&c, "c", 0, StartAt::End).await.ok().filter(|&e| e >= 30) }
    })
    .await;
    assert_eq!(read_all(&client, "c", 0).await, want);
    node.shutdown().await;
}

#[tokio::test]
async fn list_offsets_by_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("ts", 1, 1, BTreeMap::new()).await.unwrap();
    let mut p =
        Producer::new(client.clone(), "ts", ProducerConfig { batch_size_bytes: 1, ..Default::default() })
            .await
            .unwrap();
    for ts in [100, 200, 300] {
        p.send(None, b"x", ts).await.unwrap();
    }
    p.flush().await.unwrap();
    let ask =
        |ts| ClientRequest::ListOffsets { topic: "ts".into(), partition: 0, spec: OffsetSpec::Timestamp(ts) };
    // The records are at 0, 1 and 2 (no epoch marker before the first record).
    for (ts, want) in [(50, 0), (200, 1), (250, 2), (999, 3)] {
        match client.request(ask(ts)).await.unwrap() {
            ClientResponse::Offset { offset } => assert_eq!(offset, want, "timestamp {ts}"),
            other => panic!("{other:?}"),
        }
    }
    node.shutdown().await;
}

/// Where a leader epoch ends (Kafka's OffsetForLeaderEpoch, through the client API the
/// Kafka door shares): the current epoch at the log end, an earlier one at the start of
/// the next, a later one unknown; a client's stale or future leader epoch is refused.
#[tokio::test]
async fn epoch_ends_come_from_the_leaders_epoch_history_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("e", 1, 1, BTreeMap::new()).await.unwrap();
    let mut p = Producer::new(client.clone(), "e", ProducerConfig::default()).await.unwrap();
    for i in 0..3u8 {
        p.send(None, &[i], unix_ms()).await.unwrap();
    }
    p.flush().await.unwrap();
    let ask = |epoch, leader_epoch: Option<u64>| ClientRequest::EpochEnd {
        topic: "e".into(),
        partition: 0,
        epoch: Epoch::new(epoch),
        leader_epoch: leader_epoch.map(Epoch::new),
    };
    let end =
        |epoch, end_offset| ClientResponse::EpochEnd(Some(EpochEnd { epoch: Epoch::new(epoch), end_offset }));

    println!("phase 1: epoch 1 (the first leader, no marker) holds offsets 0-2");
    assert_eq!(
        client.request(ask(1, Some(1))).await.unwrap(),
        end(1, 3),
        "the current epoch ends at the log end"
    );
    assert_eq!(client.request(ask(2, None)).await.unwrap(), ClientResponse::EpochEnd(None), "a later epoch");
    assert_eq!(code(client.request(ask(1, Some(0))).await.unwrap_err()), ErrorCode::FencedLeaderEpoch);
    assert_eq!(code(client.request(ask(1, Some(2))).await.unwrap_err()), ErrorCode::UnknownLeaderEpoch);

    println!("phase 2: after a restart the leader of epoch 2 writes its marker at 3, then a record at 4");
    node.shutdown().await;
    drop((p, client));
    let (node, client) = start(dir.path()).await;
    wait_until("the restarted node leads epoch 2", SHORT_BUDGET, || {
        let c = client.clone();
        async move { c.request(ask(2, Some(2))).await.ok() }
    })
    .await;
    let mut p = Producer::new(client.clone(), "e", ProducerConfig::default()).await.unwrap();
    p.send(None, b"after", unix_ms()).await.unwrap();
    p.flush().await.unwrap();
    assert_eq!(client.request(ask(1, Some(2))).await.unwrap(), end(1, 3), "epoch 1 ends where 2 starts");
    assert_eq!(client.request(ask(2, Some(2))).await.unwrap(), end(2, 5));
    assert_eq!(client.request(ask(0, None)).await.unwrap(), end(0, 0), "below every epoch: the log start");
    println!("figure: epoch ends: 6 answers as Kafka's leader epoch cache gives them, 2 refusals");
    node.shutdown().await;
}
