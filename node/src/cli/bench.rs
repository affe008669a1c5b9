//! `meshlog bench`: a load generator like kafka-producer-perf-test, and a raw-store
//! baseline that writes the same bytes straight into the storage engine.

use super::{output, ViewArgs};
use crate::client::consumer::{self, StartAt};
use crate::client::producer::{Producer, ProducerConfig};
use crate::client::ClientError;
use crate::storage;
use crate::time::unix_ms;
use meshlog_protocol::batch::BatchBuilder;
use meshlog_protocol::types::Acks;
use meshlog_protocol::{Epoch, ErrorCode};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Benchmark subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Produce records as fast as the window allows and report rate and ack latency.
    Produce(ProduceBench),
    /// Read a topic from the beginning until N records and report the rate.
    Consume(ConsumeBench),
    /// Write the same bytes straight into a partition log (segment file, then fdatasync), with
    /// the same batch size and one durable flush per window of batches: the ceiling a
    /// node's produce path is measured against.
    RawStore(RawStoreBench),
    /// Start a mesh of node processes and measure how fast members and topic records
    /// converge, and idle memory per node.
    Mesh(super::bench_mesh::MeshBench),
    /// A consumer group reads a topic: consume rate, commit latency, and rebalance times
    /// when a member joins and when one is killed.
    Group(super::bench_group::GroupBench),
}

/// How much a writing benchmark writes, and in what pieces.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Records to write.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub batch_size: usize,
}

/// Flags of `meshlog bench produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceBench {
    /// Topic (created with --partitions if missing).
    pub topic: String,
    #[command(flatten)]
    pub load: Load,
    /// Linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Batches in flight at once, across partitions.
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// Batches of one partition in flight at once (Kafka's
    /// max.in.flight.requests.per.connection; at most 5; 1 without idempotence).
    #[arg(long, default_value_t = 1)]
    pub in_flight_per_partition: usize,
    /// Acks level.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Partitions if the topic is created.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Replication factor if the topic is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u16,
    /// Sealed-but-unsent bytes the producer may hold (default: two batches per
    /// in-flight slot, so latency measures the node, not a deep client queue).
    #[arg(long)]
    pub buffer_bytes: Option<usize>,
    /// Stop after this many seconds even if not all records were sent.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
    #[command(flatten)]
    pub view: ViewArgs,
}

/// Flags of `meshlog bench consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeBench {
    /// Topic.
    pub topic: String,
    /// Records to read.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
    #[command(flatten)]
    pub view: ViewArgs,
}

/// Flags of `meshlog bench raw-store`.
#[derive(Debug, clap::Args)]
pub struct RawStoreBench {
    /// Scratch directory (must not exist or be empty).
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub load: Load,
    /// Batches per flush (the node's in-flight window).
    #[arg(long, default_value_t = 16)]
    pub batches_per_flush: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One benchmark's figures.
#[derive(Debug, Serialize)]
struct BenchResult {
    label: String,
    records: u64,
    bytes: u64,
    secs: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
}

impl BenchResult {
    fn new(label: String, records: u64, bytes: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        BenchResult {
            label,
            records,
            bytes,
            secs,
            records_per_sec: records as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
        }
    }

    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            return output::json(self);
        }
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{}: {} records, {:.0} records/s, {:.1} MB/s, latency ms p50 {} p99 {} p999 {}",
            self.label,
            self.records,
            self.records_per_sec,
            self.mb_per_sec,
            ms(self.p50_ms),
            ms(self.p99_ms),
            ms(self.p999_ms)
        );
        Ok(())
    }
}

/// Run a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(b) => b.run().await,
        BenchCommand::Consume(b) => b.run().await,
        BenchCommand::RawStore(b) => b.run().await,
        BenchCommand::Mesh(b) => b.run().await,
        BenchCommand::Group(b) => b.run().await,
    }
}

/// A line on stderr each second while a benchmark runs: records so far and the rate over
/// the last second (stdout keeps only the result, so `--json` output stays parseable).
struct Progress {
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(what: &'static str) -> Progress {
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (started, mut last) = (Instant::now(), 0u64);
            loop {
                tick.tick().await;
                let now = seen.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>4.0} s] {what}: {now} records, {} records/s",
                    started.elapsed().as_secs_f64(),
                    now - last
                );
                last = now;
            }
        });
        Progress { count, task }
    }

    fn add(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a new topic's partitions may take to elect leaders before a benchmark gives up.
const LEADERS_BUDGET: Duration = Duration::from_secs(30);

/// Wait until every partition of `topic` has a leader that answers and every replica in
/// sync, so the timed run measures producing, not the elections of a topic just created.
/// (Timed with them, a 200,000-record run on three nodes measured 15-25% below a
/// 600,000-record one; without them the two agree.)
async fn wait_until_led(client: &crate::client::Client, topic: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + LEADERS_BUDGET;
    loop {
        let ready = match client.describe_topic(topic).await {
            Ok(t) => t
                .partitions
                .iter()
                .all(|p| p.online && p.epoch > Epoch::ZERO && p.isr.len() == p.replicas.len()),
            Err(ClientError::Server(e)) if e.code == ErrorCode::UnknownTopicOrPartition => false,
            Err(e) => return Err(e.into()),
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "topic {topic}: not every partition had a leader and a full ISR within {LEADERS_BUDGET:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl ProduceBench {
    async fn run(self) -> anyhow::Result<()> {
        let client = self.view.server.connect().await?;
        match client
            .create_topic(&self.topic, self.partitions, self.replication_factor, Default::default())
            .await
        {
            Ok(_) => {}
            Err(ClientError::Server(e)) if e.code == ErrorCode::TopicAlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        wait_until_led(&client, &self.topic).await?;
        let cfg = ProducerConfig {
            acks: self.acks,
            batch_size_bytes: self.load.batch_size,
            linger: Duration::from_millis(self.linger_ms),
            max_in_flight: self.in_flight,
            max_in_flight_per_partition: self.in_flight_per_partition,
            buffer_bytes: self.buffer_bytes.unwrap_or(2 * self.in_flight * self.load.batch_size),
            ..ProducerConfig::default()
        };
        let mut producer = Producer::new(client, &self.topic, cfg).await?;
        producer.record_latencies();
        let payload: Vec<u8> = (0..self.load.record_size).map(|_| rand::random::<u8>()).collect();
        let deadline = Instant::now() + Duration::from_secs(self.max_secs);
        let started = Instant::now();
        let progress = Progress::start("sent");
        for _ in 0..self.load.records {
            if Instant::now() >= deadline {
                break;
            }
            producer.send(None, &payload, unix_ms()).await?;
            progress.add(1);
        }
        producer.flush().await?;
        drop(progress);
        let elapsed = started.elapsed();
        let s = producer.stats();
        let label = format!(
            "produce {} B acks={} in-flight={} rf={}",
            self.load.record_size, self.acks, self.in_flight, self.replication_factor
        );
        let mut r = BenchResult::new(label, s.records, s.records * self.load.record_size as u64, elapsed);
        if let Some(h) = producer.latencies() {
            let q = |p: f64| Some(h.value_at_quantile(p) as f64 / 1000.0);
            (r.p50_ms, r.p99_ms, r.p999_ms) = (q(0.5), q(0.99), q(0.999));
        }
        r.print(self.view.json)
    }
}

impl ConsumeBench {
    async fn run(self) -> anyhow::Result<()> {
        let client = self.view.server.connect().await?;
        let parts = client.describe_topic(&self.topic).await?.topic.partitions;
        let deadline = Instant::now() + Duration::from_secs(self.max_secs);
        let per_partition = self.records.div_ceil(parts.max(1) as u64);
        let started = Instant::now();
        let progress = Progress::start("read");
        let reads = (0..parts)
            .map(|p| read_partition(client.clone(), &self.topic, p, per_partition, deadline, &progress));
        let mut total = (0u64, 0u64);
        for r in futures::future::join_all(reads).await {
            let (n, b) = r?;
            total = (total.0 + n, total.1 + b);
        }
        let label = format!("consume {parts} partition(s)");
        BenchResult::new(label, total.0, total.1, started.elapsed()).print(self.view.json)
    }
}

/// Read one partition from the beginning until `want` records, the end, or `deadline`.
async fn read_partition(
    client: crate::client::Client,
    topic: &str,
    p: u32,
    want: u64,
    deadline: Instant,
    progress: &Progress,
) -> Result<(u64, u64), ClientError> {
    let mut off = consumer::start_offset(&client, topic, p, StartAt::Beginning).await?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < want && Instant::now() < deadline {
        let f = consumer::fetch(&client, topic, p, off, 4 << 20, 0).await?;
        // Nothing new ends the read (a fetch of only an epoch marker still moves on).
        if f.next_offset == off {
            break;
        }
        n += f.records.len() as u64;
        progress.add(f.records.len() as u64);
        bytes += f.records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64).sum::<u64>();
        off = f.next_offset;
    }
    Ok((n, bytes))
}

impl RawStoreBench {
    async fn run(self) -> anyhow::Result<()> {
        let per_batch = (self.load.batch_size / (self.load.record_size + 16)).max(1) as u64;
        let payload: Vec<u8> = (0..self.load.record_size).map(|_| rand::random::<u8>()).collect();
        let mut b = BatchBuilder::new();
        for _ in 0..per_batch {
            b.push(unix_ms(), None, Some(&payload), &[]);
        }
        let batch = b.build().unwrap_or_default();
        let batches = self.load.records.div_ceil(per_batch);
        let (dir, per_flush) = (self.dir.clone(), self.batches_per_flush);
        let elapsed =
            tokio::task::spawn_blocking(move || storage::raw_write_bench(&dir, &batch, batches, per_flush))
                .await??;
        let n = batches * per_batch;
        let label = format!("raw store {} B, {per_flush} batches/flush", self.load.record_size);
        BenchResult::new(label, n, n * self.load.record_size as u64, elapsed).print(self.json)
    }
}
