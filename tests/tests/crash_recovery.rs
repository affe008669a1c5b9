//! Real `meshlog node` processes killed with `kill -9`: every acknowledged record is
//! still there after a restart, at the same offset, in order, none doubled; and the
//! store reopens cleanly after every crash.

use meshlog::client::consumer::{self, StartAt};
use meshlog::client::{Client, ClientError};
use meshlog::network::Multiaddr;
use meshlog_protocol::batch::BatchBuilder;
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ProduceRequest};
use meshlog_protocol::partitioner::partition_for_key;
use meshlog_protocol::types::Acks;
use meshlog_protocol::ErrorCode;
use meshlog_tests::{run_cli, NodeProcess};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

const RECORDS: usize = 100_000;
const PARTITIONS: u32 = 3;

#[test]
fn a_hundred_thousand_keyed_records_survive_kill_9_via_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());

    // Phase 1: create the topic and produce 100,000 keyed records from stdin.
    let out = node.cli(&["topic", "create", "orders", "--partitions", &PARTITIONS.to_string()], None);
    assert_eq!(out.code, 0, "topic create: {}", out.stderr);
    let input: String = (0..RECORDS).map(|i| format!("key-{}:value-{i}\n", i % 1000)).collect();
    let out = node.cli(&["produce", "orders", "--key-separator", ":"], Some(input.as_bytes()));
    assert_eq!(out.code, 0, "produce: {}", out.stderr);
    assert!(out.stderr.contains(&format!("Produced {RECORDS} record(s)")), "{}", out.stderr);

    // Phase 2: kill -9 and restart on the same data directory.
    node.kill9();
    let node = NodeProcess::start(dir.path());

    // Phase 3: consume everything back and check it.
    let out = node.cli(
        &["consume", "orders", "--from-beginning", "--timeout-ms", "3000", "--print-key", "--print-offset"],
        None,
    );
    assert_eq!(out.code, 0, "consume: {}", out.stderr);
    let mut next_offset: BTreeMap<u32, u64> = BTreeMap::new();
    let mut last_per_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    for line in out.stdout.lines() {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(f.len(), 4, "line {line:?}");
        let (p, off, key, value) = (f[0].parse::<u32>().unwrap(), f[1].parse::<u64>().unwrap(), f[2], f[3]);
        // The first record is at offset 0: the first leader, elected over an empty log,
        // writes no epoch-start marker (the restarted one's comes after every record).
        let want = next_offset.entry(p).or_insert(0);
        assert_eq!(off, *want, "partition {p}: offsets dense and in order");
        *want += 1;
        assert_eq!(partition_for_key(key.as_bytes(), PARTITIONS), p, "key {key} in its partition");
        let i: usize = value.strip_prefix("value-").unwrap().parse().unwrap();
        assert!(seen.insert(i), "value {i} doubled");
        if let Some(prev) = last_per_key.insert(key.to_string(), i) {
            assert!(prev < i, "key {key}: {prev} then {i} is out of order");
        }
    }
    let missing = RECORDS - seen.len();
    println!("figure: kill -9 after {RECORDS} acked records: lost {missing}, doubled 0, reordered 0");
    assert_eq!(missing, 0, "records lost");
}

/// Acknowledged batches: partition -> (base offset, values).
type Acked = BTreeMap<u32, Vec<(u64, Vec<String>)>>;

async fn produce_until_killed(client: Client, round: usize, acked: std::sync::Arc<std::sync::Mutex<Acked>>) {
    let mut tasks = Vec::new();
    for p in 0..2u32 {
        let (client, acked) = (client.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let values: Vec<String> = (0..50).map(|i| format!("r{round}-p{p}-b{n}-{i}")).collect();
                let mut b = BatchBuilder::new();
                for v in &values {
                    b.push(1, None, Some(v.as_bytes()), &[]);
                }
                let req = ClientRequest::Produce(ProduceRequest {
                    topic: "burst".into(),
                    partition: p,
                    acks: Acks::All,
                    timeout_ms: 5000,
                    leader_epoch: None,
                    batch: b.build().unwrap(),
                });
                match client.request(req).await {
                    Ok(ClientResponse::Produced(r)) => {
                        acked.lock().unwrap().entry(p).or_default().push((r.base_offset.unwrap(), values));
                    }
                    _ => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Read every acknowledged record back and check it is where its ack said. A restarted
/// node serves them once its replica leads again and commits in its new epoch: the high
/// watermark it saved may lag what it had acknowledged by a second or two, and reads
/// stop at the high watermark. So the read goes on until the last acknowledged offset
/// is visible (long polls, within [`meshlog_tests::LONG_BUDGET`]).
async fn check_acked(client: &Client, acked: &Acked) -> usize {
    let deadline = Instant::now() + meshlog_tests::LONG_BUDGET;
    let mut checked = 0;
    for (&p, batches) in acked {
        let end = batches.iter().map(|(base, values)| base + values.len() as u64).max().unwrap_or(0);
        let start = consumer::start_offset(client, "burst", p, StartAt::Beginning).await.unwrap();
        let mut stored: BTreeMap<u64, String> = BTreeMap::new();
        let mut off = start;
        while off < end {
            assert!(
                Instant::now() < deadline,
                "partition {p}: acknowledged records up to offset {end} not readable within {:?}; read up to {off}",
                meshlog_tests::LONG_BUDGET
            );
            let f = match consumer::fetch(client, "burst", p, off, 1 << 20, 200).await {
                Ok(f) => f,
                // The log ends below an acknowledged offset: lost, no use waiting.
                Err(ClientError::Server(e)) if e.code == ErrorCode::OffsetOutOfRange => {
                    panic!("partition {p}: offset {off} out of range, acknowledged up to {end}: {e}")
                }
                Err(e) => {
                    eprintln!("partition {p}: fetch at {off} failed ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for r in &f.records {
                stored.insert(r.offset as u64, String::from_utf8(r.value.clone().unwrap()).unwrap());
            }
            off = off.max(f.next_offset);
        }
        for (base, values) in batches {
            for (i, v) in values.iter().enumerate() {
                let at = base + i as u64;
                assert_eq!(
                    stored.get(&at),
                    Some(v),
                    "acked record {v} missing or moved (partition {p}, offset {at})"
                );
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_kill_9_in_the_middle_of_a_write_burst() {
    let rounds: usize = std::env::var("MESHLOG_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Acked::new()));
    let mut opened = 0;
    for round in 0..rounds {
        let node = NodeProcess::start(dir.path());
        opened += 1;
        let addr: Multiaddr = node.addr.parse().unwrap();
        let client = Client::connect(&addr).await.expect("connect after restart");
        if round == 0 {
            client.create_topic("burst", 2, 1, BTreeMap::new()).await.unwrap();
        }
        // Everything acknowledged in earlier rounds must be intact before writing more.
        let snapshot = acked.lock().unwrap().clone();
        check_acked(&client, &snapshot).await;
        let writer = tokio::spawn(produce_until_killed(client.clone(), round, acked.clone()));
        // Kill at a varying point of the burst, once some writes were acknowledged.
        let started = Instant::now();
        let before: usize = snapshot.values().map(Vec::len).sum();
        let kill_after = Duration::from_millis(50 + (round as u64 * 37) % 200);
        while started.elapsed() < kill_after
            || acked.lock().unwrap().values().map(Vec::len).sum::<usize>() == before
        {
            assert!(started.elapsed() < meshlog_tests::LONG_BUDGET, "no write acknowledged in round {round}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node.kill9();
        let _ = writer.await;
    }
    let node = NodeProcess::start(dir.path());
    let client = Client::connect(&node.addr.parse().unwrap()).await.unwrap();
    let snapshot = acked.lock().unwrap().clone();
    let checked = check_acked(&client, &snapshot).await;
    println!(
        "figure: kill -9 during a write burst, {rounds} restarts: store opened cleanly {opened}/{rounds}; acked records lost 0 of {checked}"
    );
    let _ = run_cli(&node.addr, &["topic", "describe", "burst"], None);
}
