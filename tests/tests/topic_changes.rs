//! Deleting topics and adding partitions (issue #16, DESIGN.md decision 16) on real
//! processes: a delete removes the topic's partition logs from every node's data
//! directory; the name then comes back as a new topic that starts empty and never shows
//! an old record; a node that was down (`kill -9`) through the delete and the
//! re-creation removes its copy when it is back and follows the new topic; partitions added under an `acks=all` writer lose nothing
//! acknowledged and take writes at once. Each test prints its figure line.

use meshlog::client::ClientError;
use meshlog_protocol::group::{CommittedOffset, GroupRequest, OffsetCommit, TopicPartition};
use meshlog_protocol::messages::{AlterTopic, ClientRequest, AUTO_REPLICATION_FACTOR};
use meshlog_protocol::ErrorCode;
use meshlog_tests::cluster::{check, Background, Cluster, Writer, WriterLog};
use meshlog_tests::{read_partition, wait_until, LONG_BUDGET};
use std::time::Instant;

/// Whether node `i` has a log directory for `stored` (a topic's stored name).
fn has_logs(c: &Cluster, i: usize, stored: &str) -> bool {
    c.data_dir(i).join("logs").join(stored).exists()
}

/// Write `batches` acknowledged batches of 10 records to `topic`-`p` through any node.
async fn write(c: &Cluster, topic: &str, p: u32, batches: u64) -> WriterLog {
    let w = Background::start(Writer::new(topic, p, 10), c.clients.clone());
    w.wait_for_more(batches, &format!("{batches} batches acknowledged on {topic}-{p}")).await;
    w.stop().await
}

/// Delete `topic` through node `i`, retrying while its partition 0 elects a leader.
async fn delete(c: &Cluster, i: usize, topic: &str) {
    let client = c.client(i);
    wait_until(&format!("{topic} deleted through node {i}"), LONG_BUDGET, || async {
        match client.delete_topic(topic).await {
            Ok(_) => Some(()),
            Err(ClientError::Server(e)) if !e.code.is_retriable() => panic!("delete refused: {e}"),
            Err(_) => None,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_leaves_every_node_and_its_name_comes_back_empty() {
    let started = Instant::now();
    let mut c = Cluster::start(3).await;
    let info =
        c.client(0).create_topic("doomed", 2, AUTO_REPLICATION_FACTOR, Default::default()).await.unwrap();
    assert_eq!(info.replication_factor, 3, "replication factor auto on three nodes is 3");

    // Phase 1: records on both partitions, on every node's disk.
    let mut old = 0;
    for p in 0..2 {
        old += write(&c, "doomed", p, 5).await.acked.len() * 10;
    }
    // A group's position in it (a commit without membership, as a simple consumer's).
    let commit = OffsetCommit {
        group: "readers".into(),
        member: None,
        offsets: vec![(
            TopicPartition::new("doomed", 0),
            CommittedOffset { offset: 7, metadata: String::new() },
        )],
    };
    let client = c.client(0);
    wait_until("a group commit for doomed", LONG_BUDGET, || async {
        client.request(ClientRequest::Group(GroupRequest::Commit(commit.clone()))).await.ok()
    })
    .await;
    assert_eq!(c.client(0).committed_offsets("readers").await.unwrap().len(), 1);
    for i in 0..3 {
        wait_until(&format!("node {i} stores doomed"), LONG_BUDGET, || async {
            has_logs(&c, i, "doomed").then_some(())
        })
        .await;
    }

    // Phase 2: node 2 is killed, the topic deleted through node 1 (its partition 0's
    // leader makes the change): the other two delete their copies.
    c.kill9(2);
    let t_delete = Instant::now();
    delete(&c, 1, "doomed").await;
    for i in 0..2 {
        wait_until(&format!("node {i} deleted doomed"), LONG_BUDGET, || async {
            (!has_logs(&c, i, "doomed")).then_some(())
        })
        .await;
    }
    let delete_ms = t_delete.elapsed().as_millis();
    let e = c.client(0).describe_topic("doomed").await.unwrap_err();
    assert!(matches!(&e, ClientError::Server(w) if w.code == ErrorCode::UnknownTopicOrPartition), "{e}");
    assert!(c.client(0).list_topics().await.unwrap().iter().all(|t| t.name != "doomed"));
    assert!(has_logs(&c, 2, "doomed"), "the node that was down still holds its copy");
    let offsets = c.client(1).committed_offsets("readers").await.unwrap();
    assert!(offsets.is_empty(), "a deleted topic's offsets are not shown: {offsets:?}");

    // Phase 3: the name again while node 2 is still down: a new topic (rf 2: node 2 may
    // or may not still count as live here).
    let again = c.client(0).create_topic("doomed", 1, 2, Default::default()).await.unwrap();
    assert_ne!(again.creation_id, info.creation_id);

    // Phase 4: node 2 is back, holding the first life as live: its peers send the
    // delete's tombstone before the new life's record, so it deletes its copy and
    // follows the new topic (a new life is never taken over a live one unannounced).
    let t_back = Instant::now();
    c.restart(2).await;
    let client2 = c.client(2);
    wait_until("the node that was down deleted doomed and holds its new life", LONG_BUDGET, || async {
        let info = client2.describe_topic("doomed").await.ok()?;
        (!has_logs(&c, 2, "doomed") && info.topic.creation_id == again.creation_id).then_some(())
    })
    .await;
    let straggler_ms = t_back.elapsed().as_millis();

    // Phase 5: the new topic is empty and never shows an old record.
    let log = write(&c, "doomed", 0, 3).await;
    // The writers of both lives wrote the values v0, v1, ...: an old record would be a
    // duplicate.
    let new = log.acked.len() as u64 * 10;
    for i in 0..3 {
        let records = read_partition(&c.client(i), "doomed", 0).await;
        let r = check(&log.acked, &records);
        assert_eq!((r.lost, r.duplicated, r.read), (0, 0, new), "node {i} reads only the new topic: {r:?}");
        // Only the new leaders' epoch markers come before the records.
        assert!(records.iter().all(|rec| (rec.offset as u64) < new + 5), "offsets start again: {records:?}");
        assert!(!has_logs(&c, i, "doomed"), "node {i} holds no old log");
    }
    let apart = (0..3).filter(|&i| has_logs(&c, i, "doomed~1")).count();
    assert_eq!(apart, 2, "the new topic's two replicas store it apart");
    println!(
        "figure: topic delete on 3 nodes: old records {old}, deleted on the live nodes in {delete_ms} ms, \
         on the node down during it and the re-creation {straggler_ms} ms after its restart; re-created \
         topic read back \
         {new} of {new} new records, 0 old, on 3 of 3 nodes ({} s in all)",
        started.elapsed().as_secs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_under_a_writer_lose_nothing_acknowledged() {
    let c = Cluster::start(3).await;
    c.client(0).create_topic("growing", 2, AUTO_REPLICATION_FACTOR, Default::default()).await.unwrap();
    let w0 = Background::start(Writer::new("growing", 0, 10), c.clients.clone());
    w0.wait_for_more(20, "writes before the change").await;

    // Grow from 2 to 4 partitions through node 2 while the writer writes.
    let t_grow = Instant::now();
    let grow = AlterTopic {
        name: "growing".into(),
        partitions: Some(4),
        config: Default::default(),
        validate_only: false,
    };
    let info = c.client(2).alter_topic(grow.clone()).await.unwrap();
    assert_eq!(info.partitions, 4);
    for i in 0..3 {
        let client = c.client(i);
        wait_until(&format!("node {i} sees 4 partitions"), LONG_BUDGET, || async {
            let t = client.list_topics().await.ok()?.into_iter().find(|t| t.name == "growing")?;
            (t.partitions == 4).then_some(())
        })
        .await;
    }
    // The new partitions take acknowledged writes.
    let new: Vec<Background> =
        (2..4).map(|p| Background::start(Writer::new("growing", p, 10), c.clients.clone())).collect();
    for (p, w) in new.iter().enumerate() {
        w.wait_for_more(10, &format!("writes to new partition {}", p + 2)).await;
    }
    let grow_ms = t_grow.elapsed().as_millis();
    w0.wait_for_more(20, "writes after the change").await;

    // Shrinking is refused, and so is a no-op; a dry run changes nothing.
    for n in [3, 4] {
        let e =
            c.client(0).alter_topic(AlterTopic { partitions: Some(n), ..grow.clone() }).await.unwrap_err();
        assert!(matches!(&e, ClientError::Server(w) if w.code == ErrorCode::InvalidPartitions), "{n}: {e}");
    }
    let dry = AlterTopic { partitions: Some(6), validate_only: true, ..grow.clone() };
    assert_eq!(c.client(0).alter_topic(dry).await.unwrap().partitions, 6);
    assert_eq!(c.client(0).describe_topic("growing").await.unwrap().topic.partitions, 4);

    let mut logs = vec![(0, w0.stop().await)];
    for (p, w) in new.into_iter().enumerate() {
        logs.push((p as u32 + 2, w.stop().await));
    }
    let mut acked = 0;
    for (p, log) in &logs {
        let (leader, _) = c.wait_leader_with_full_isr("growing", *p).await;
        let r = check(&log.acked, &read_partition(&c.client(leader), "growing", *p).await);
        assert_eq!((r.lost, r.duplicated, r.reordered, r.moved), (0, 0, 0, 0), "partition {p}: {r:?}");
        acked += log.acked.len() * 10;
    }
    println!(
        "figure: 2 -> 4 partitions under an acks=all writer: acked lost 0 of {acked} across 3 partitions; \
         new partitions writable {grow_ms} ms after the change was asked"
    );
}

#[test]
fn kafka_admin_clients_add_partitions_and_delete_topics() {
    if !meshlog_tests::kafka_clients::confluent_kafka() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = meshlog_tests::NodeProcess::start(dir.path());
    let broker = node.kafka.clone().expect("Kafka listener");
    let out = node.cli(&["topic", "create", "kadmin", "--partitions", "2"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The CLI first: a dry run, a shrink refused (exit 1, Kafka's code), a delete.
    let out = node.cli(&["topic", "alter", "kadmin", "--partitions", "5", "--dry-run"], None);
    assert!(
        out.code == 0 && out.stdout.contains("Would alter topic kadmin: 5 partition(s)"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = node.cli(&["topic", "alter", "kadmin", "--partitions", "1"], None);
    assert!(out.code == 1 && out.stderr.contains("INVALID_PARTITIONS"), "{} {}", out.stdout, out.stderr);
    let out = node.cli(&["topic", "create", "cli-gone"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = node.cli(&["topic", "delete", "cli-gone"], None);
    assert!(out.code == 0 && out.stdout.contains("Deleted topic cli-gone"), "{} {}", out.stdout, out.stderr);
    assert_eq!(node.cli(&["topic", "describe", "cli-gone"], None).code, 1);
    let script = format!("{}/kafka/confluent_topics.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3").args([&script, &broker, "kadmin", "2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    print!("{stdout}");
    assert!(!dir.path().join("logs/kadmin").exists(), "the deleted topic's logs are gone");
    println!("figure: kafka admin: CreatePartitions validate-only, 2 -> 4, shrink refused; DeleteTopics, unknown refused: 5 of 5");
}
