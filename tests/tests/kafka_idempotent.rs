//! Kafka producers through the listener, as real clients send: compressed batches
//! (gzip, snappy, lz4, zstd) stored as sent and read back by `meshlog consume` and by
//! kcat; InitProducerId on the wire (ids, epoch bumps, transactions refused); and an
//! idempotent confluent-kafka producer
//! (`acks=all`, rf=3, up to 5 batches in flight per partition) through repeated
//! `kill -9` of partition leaders: every acknowledged record present exactly once, in
//! order per partition, at the offset it was acknowledged at.
//!
//! The kill test makes `MESHLOG_KAFKA_KILLS` kills (3 by default; 10 for the figure in
//! the README). Each node's Kafka listener keeps its port across restarts and the
//! producer bootstraps from all three, so the test holds whether Metadata routes
//! everything through one node or names each partition's real leader. Requires kcat
//! and confluent-kafka unless `MESHLOG_SKIP_KAFKA_CLIENTS=1`.

use meshlog_tests::kafka_clients::{
    confluent_kafka, kafka_clients, kcat_consume, kcat_produce, meshlog_consume, raw_frame,
};
use meshlog_tests::{members_up, wait_until, NodeProcess, LONG_BUDGET};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Acknowledged records between two faults (and after each kill, to call it survived).
const PROGRESS_RECORDS: u64 = 1_000;
/// How long the producer may take to stop, flush and read everything back.
const CHECK_BUDGET: Duration = Duration::from_secs(600);

#[test]
fn every_codec_kcat_writes_is_read_by_meshlog_consume_and_by_kcat() {
    if !kafka_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let broker = node.kafka.clone().expect("Kafka listener");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        println!("phase: kcat produces 50 {codec} records with keys and headers");
        let topic = format!("codec-{codec}");
        let lines: Vec<String> =
            (0..50).map(|i| format!("key-{i}:{codec} value {i} {}", "x".repeat(i))).collect();
        kcat_produce(&broker, &topic, &lines, &["codec=yes"], codec);
        let mut want: Vec<(String, String, String)> = (0..50)
            .map(|i| {
                (format!("key-{i}"), format!("{codec} value {i} {}", "x".repeat(i)), "codec=yes".to_string())
            })
            .collect();
        want.sort();
        assert_eq!(meshlog_consume(&node, &topic, 50), want, "meshlog consume reads {codec} batches");
        let back = kcat_consume(&broker, &topic);
        let mut kcat_want: Vec<String> = want.iter().map(|(k, v, h)| format!("{k}\t{v}\t{h}")).collect();
        kcat_want.sort();
        assert_eq!(back, kcat_want, "kcat reads its {codec} batches back as stored");
    }
    println!("figure: codecs gzip, snappy, lz4, zstd: 4 x 50 records read back by meshlog consume and kcat, mismatches 0");
}

/// One InitProducerId answer: (error code, producer id, epoch), after the correlation id
/// (and, `flexible`, the response header's tagged fields).
fn init_answer(s: &mut TcpStream, correlation: i32, flexible: bool) -> (i16, i64, i16) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), correlation);
    let at = if flexible { 5 } else { 4 } + 4; // after the header and throttle_time_ms
    let error = i16::from_be_bytes(body[at..at + 2].try_into().unwrap());
    let id = i64::from_be_bytes(body[at + 2..at + 10].try_into().unwrap());
    let epoch = i16::from_be_bytes(body[at + 10..at + 12].try_into().unwrap());
    (error, id, epoch)
}

#[test]
fn init_producer_id_hands_out_mesh_unique_ids_bumps_epochs_and_refuses_transactions() {
    const INIT_PRODUCER_ID: i16 = 22;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let mut s = TcpStream::connect(node.kafka.clone().expect("Kafka listener")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    println!("phase 1: v1, no transactional id: two producers get two ids of this node");
    let v1 = |tid: Option<&str>| {
        let mut b = match tid {
            None => (-1i16).to_be_bytes().to_vec(),
            Some(t) => [(t.len() as i16).to_be_bytes().as_slice(), t.as_bytes()].concat(),
        };
        b.extend_from_slice(&60_000i32.to_be_bytes());
        b
    };
    s.write_all(&raw_frame(INIT_PRODUCER_ID, 1, 1, false, &v1(None))).unwrap();
    let (e1, id1, epoch1) = init_answer(&mut s, 1, false);
    s.write_all(&raw_frame(INIT_PRODUCER_ID, 1, 2, false, &v1(None))).unwrap();
    let (e2, id2, _) = init_answer(&mut s, 2, false);
    assert_eq!((e1, e2, epoch1), (0, 0, 0));
    assert!(id1 >= 0 && id2 >= 0 && id1 != id2, "{id1} {id2}");
    assert_eq!(id1 >> 32, id2 >> 32, "both carry this node's broker id");

    println!("phase 2: v3 (flexible) re-init with the current id and epoch: the next epoch");
    let mut v3 = vec![0u8]; // compact nullable string: null
    v3.extend_from_slice(&60_000i32.to_be_bytes());
    v3.extend_from_slice(&id1.to_be_bytes());
    v3.extend_from_slice(&0i16.to_be_bytes());
    v3.push(0); // no tagged fields
    s.write_all(&raw_frame(INIT_PRODUCER_ID, 3, 3, true, &v3)).unwrap();
    assert_eq!(init_answer(&mut s, 3, true), (0, id1, 1));

    println!("phase 3: a transactional id is refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED)");
    s.write_all(&raw_frame(INIT_PRODUCER_ID, 1, 4, false, &v1(Some("tx-1")))).unwrap();
    assert_eq!(init_answer(&mut s, 4, false), (53, -1, -1));
    println!(
        "figure: InitProducerId: 2 ids (prefix {}), 1 epoch bump, 1 transactional id refused",
        id1 >> 32
    );
}

/// Three `meshlog node` processes, each with a Kafka listener on a port it keeps
/// across restarts.
struct Mesh {
    dirs: Vec<tempfile::TempDir>,
    ports: Vec<u16>,
    nodes: Vec<Option<NodeProcess>>,
    ids: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Mesh {
    async fn start() -> Mesh {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut mesh = Mesh { dirs, ports, nodes: vec![None, None, None], ids: Vec::new() };
        for i in 0..3 {
            mesh.start_node(i).await;
        }
        mesh.ids = mesh.nodes.iter().map(|n| peer_id(n.as_ref().unwrap())).collect();
        mesh
    }

    /// Start node `i` (bootstrapping through a live one) and, once all three run, wait
    /// until every one of them sees all three (a topic created with rf=3 on a node that
    /// still sees two is refused).
    async fn start_node(&mut self, i: usize) {
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let boot = self.nodes.iter().flatten().next().map(|n| n.addr.clone());
        let mut args = vec!["--kafka-listen", &listen];
        if let Some(b) = &boot {
            args.extend(["--bootstrap", b]);
        }
        let node = NodeProcess::start_with(self.dirs[i].path(), &args);
        self.nodes[i] = Some(node);
        let addrs: Vec<String> = self.nodes.iter().flatten().map(|n| n.addr.clone()).collect();
        if addrs.len() == 3 {
            for addr in &addrs {
                wait_until(&format!("{addr} sees three members up"), LONG_BUDGET, || async {
                    (members_up(addr, &[]) == Some(3)).then_some(())
                })
                .await;
            }
        }
    }

    fn any(&self) -> &NodeProcess {
        self.nodes.iter().flatten().next().expect("a live node")
    }

    fn bootstrap(&self) -> String {
        self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// `topic describe --json`'s partitions, from a live node.
    fn partitions(&self, topic: &str) -> Option<Vec<serde_json::Value>> {
        let out = self.any().cli(&["topic", "describe", topic, "--json"], None);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        v["partitions"].as_array().cloned()
    }

    /// The index of the node leading `topic`-`p`, once one does.
    async fn leader(&self, topic: &str, p: usize) -> usize {
        wait_until(&format!("{topic}-{p} has a leader"), LONG_BUDGET, || async {
            let parts = self.partitions(topic)?;
            let leader = parts.get(p)?["leader"].as_str()?.to_string();
            self.ids.iter().position(|id| *id == leader)
        })
        .await
    }

    /// Wait until every partition of `topic` has a leader and all three in sync.
    async fn wait_full_isr(&self, topic: &str) {
        wait_until(&format!("{topic}: every partition led, 3 in sync"), LONG_BUDGET, || async {
            let parts = self.partitions(topic)?;
            let full = parts.iter().all(|p| {
                p["leader"].as_str().is_some_and(|l| !l.is_empty())
                    && p["isr"].as_array().is_some_and(|isr| isr.len() == 3)
            });
            (full && !parts.is_empty()).then_some(())
        })
        .await;
    }
}

fn peer_id(n: &NodeProcess) -> String {
    n.addr.rsplit('/').next().unwrap_or_default().to_string()
}

/// The producer script's `acked <n>` lines, as a count, and every other line kept.
struct Progress {
    acked: Arc<AtomicU64>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Progress {
    fn follow(stdout: std::process::ChildStdout) -> Progress {
        let (acked, lines) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (a, l) = (acked.clone(), lines.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                    Some(n) => a.store(n, Ordering::Relaxed),
                    None => l.lock().unwrap().push(line),
                }
            }
        });
        Progress { acked, lines, reader }
    }

    async fn wait_for_more(&self, what: &str) -> Duration {
        let (from, started) = (self.acked.load(Ordering::Relaxed), Instant::now());
        wait_until(what, LONG_BUDGET, || async {
            (self.acked.load(Ordering::Relaxed) >= from + PROGRESS_RECORDS).then_some(())
        })
        .await;
        started.elapsed()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_kills_under_an_idempotent_producer_lose_and_duplicate_nothing() {
    if !confluent_kafka() {
        return;
    }
    let kills: usize = std::env::var("MESHLOG_KAFKA_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(3);
    let mut mesh = Mesh::start().await;
    let topic = "idempotent-kills";
    let out =
        mesh.any().cli(&["topic", "create", topic, "--partitions", "3", "--replication-factor", "3"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    mesh.wait_full_isr(topic).await;

    println!("phase 1: an idempotent confluent-kafka producer (acks=all) writes through all three listeners");
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/idempotent_kills.py");
    let mut child = Command::new("python3")
        .args([script, &mesh.bootstrap(), topic, stop_file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let progress = Progress::follow(child.stdout.take().unwrap());
    progress.wait_for_more("the producer's first acknowledgements").await;

    let mut failovers = Vec::new();
    for k in 0..kills {
        let p = k % 3;
        let victim = mesh.leader(topic, p).await;
        println!("phase 2.{k}: kill -9 node {victim}, leader of {topic}-{p}");
        if let Some(mut n) = mesh.nodes[victim].take() {
            n.kill9_ref();
        }
        failovers.push(progress.wait_for_more(&format!("acknowledgements after kill {k}")).await);
        mesh.start_node(victim).await;
        mesh.wait_full_isr(topic).await;
        progress.wait_for_more(&format!("acknowledgements after restart {k}")).await;
    }

    println!("phase 3: stop, flush, read every partition back with a Kafka consumer");
    std::fs::write(&stop_file, b"stop").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CHECK_BUDGET {
            let _ = child.kill();
            panic!("the producer script ran past {CHECK_BUDGET:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Progress { lines, reader, .. } = progress;
    reader.join().expect("the reader of the script's output"); // it ends at the script's exit
    let lines = lines.lock().unwrap().join("\n");
    println!("{lines}");
    assert!(status.success(), "acknowledged records lost, duplicated or moved:\n{lines}");
    let figures = lines.lines().find(|l| l.starts_with("figures:")).unwrap_or_default().to_string();
    let mut ms: Vec<u128> = failovers.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    println!(
        "figure: {kills} leader kills under an idempotent librdkafka producer, rf=3 acks=all: {figures}; \
         time to the next {PROGRESS_RECORDS} acks after a kill, ms: min {} max {}",
        ms.first().copied().unwrap_or(0),
        ms.last().copied().unwrap_or(0)
    );
    drop(mesh);
}
