//! `meshlog bench group`: a consumer group of N members (one client each, spread over
//! the servers given) reads a topic written beforehand; reports the group's consume
//! rate, commit latency, and rebalance times when a member joins and when one is killed
//! (its task dropped without leaving: the coordinator notices by its session timeout),
//! and the latency of commits made one after another.

use super::{ServerArgs, ViewArgs};
use crate::client::group::{GroupConfig, GroupConsumer};
use crate::client::producer::{Producer, ProducerConfig};
use crate::client::Client;
use hdrhistogram::Histogram;
use meshlog_protocol::group::TopicPartition;
use meshlog_protocol::ErrorCode;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flags of `meshlog bench group`.
#[derive(Debug, clap::Args)]
pub struct GroupBench {
    /// Topic (created if missing).
    #[arg(long, default_value = "bench-group")]
    pub topic: String,
    /// Partitions if the topic is created.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Replication factor if the topic is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u16,
    /// Records written, then read by the group.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Members of the group.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Join and kill rounds measured.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Commits timed one after another (for the commit latency).
    #[arg(long, default_value_t = 500)]
    pub commits: u64,
    /// Members' session timeout.
    #[arg(long, default_value_t = 3_000)]
    pub session_timeout_ms: u64,
    /// Give up after this many seconds per phase.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
    #[command(flatten)]
    pub view: ViewArgs,
}

#[derive(Debug, Serialize)]
struct GroupBenchResult {
    label: String,
    members: usize,
    records: u64,
    secs: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Commit latency.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    commits: u64,
    join_rebalance_p50_ms: u128,
    join_rebalance_p99_ms: u128,
    kill_rebalance_p50_ms: u128,
    kill_rebalance_p99_ms: u128,
    rounds: usize,
}

/// What the members report.
#[derive(Default)]
struct Board {
    assigned: BTreeMap<usize, Vec<TopicPartition>>,
}

struct Member {
    task: tokio::task::JoinHandle<()>,
}

/// What one run of the benchmark shares between its phases.
struct Running {
    group: String,
    board: Arc<Mutex<Board>>,
    read: Arc<AtomicU64>,
    members: BTreeMap<usize, Member>,
    budget: Duration,
    clients: Vec<Client>,
    partitions: u32,
}

impl Running {
    /// Start member `id` on a client picked round-robin.
    fn add(&mut self, bench: &GroupBench, id: usize) {
        let client = self.clients[id % self.clients.len()].clone();
        let member = bench.spawn(id, client, &self.group, self.board.clone(), self.read.clone());
        self.members.insert(id, member);
    }

    /// Whether members `ids` hold every partition exactly once.
    fn stable(&self, ids: &BTreeSet<usize>) -> bool {
        let b = crate::sync::lock(&self.board);
        let held: Vec<&TopicPartition> =
            ids.iter().flat_map(|i| b.assigned.get(i).into_iter().flatten()).collect();
        let distinct: BTreeSet<&TopicPartition> = held.iter().copied().collect();
        held.len() == self.partitions as usize && distinct.len() == held.len()
    }
}

impl GroupBench {
    /// Run it.
    pub async fn run(self) -> anyhow::Result<()> {
        let (clients, partitions) = self.connect_and_fill().await?;
        let mut run = Running {
            group: format!("bench-{:08x}", rand::random::<u32>()),
            board: Arc::new(Mutex::new(Board::default())),
            read: Arc::new(AtomicU64::new(0)),
            members: BTreeMap::new(),
            budget: Duration::from_secs(self.max_secs),
            clients,
            partitions,
        };
        let started = Instant::now();
        for id in 0..self.members {
            run.add(&self, id);
        }
        let read = run.read.clone();
        wait(run.budget, "the group reads every record", || read.load(Ordering::Relaxed) >= self.records)
            .await?;
        let elapsed = started.elapsed();
        let (joins, kills) = self.rebalance_rounds(&mut run).await?;
        for (_, m) in std::mem::take(&mut run.members) {
            m.task.abort();
        }
        let hist = self.commit_latency(&run.clients[0], &run.group).await?;
        self.report(elapsed, hist, joins, kills)
    }

    /// One client per server address; the topic created (or found) and filled with
    /// `records` keyed records. Returns the clients and the topic's partition count.
    async fn connect_and_fill(&self) -> anyhow::Result<(Vec<Client>, u32)> {
        let mut clients = Vec::new();
        for addr in &self.view.server.server {
            let one = ServerArgs { server: vec![addr.clone()], ..self.view.server.clone() };
            clients.push(one.connect().await?);
        }
        let first = clients[0].clone();
        match first.create_topic(&self.topic, self.partitions, self.replication_factor, BTreeMap::new()).await
        {
            Ok(_) => {}
            Err(crate::client::ClientError::Server(w)) if w.code == ErrorCode::TopicAlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let partitions = first.topic_info(&self.topic).await?.partitions;
        let mut producer = Producer::new(first.clone(), &self.topic, ProducerConfig::default()).await?;
        let value = vec![b'x'; self.record_size];
        for i in 0..self.records {
            producer.send(Some(&i.to_be_bytes()), &value, 0).await?;
        }
        producer.flush().await?;
        Ok((clients, partitions))
    }

    /// Each round: a member joins (time until it holds partitions and the assignment is
    /// whole again), then is killed without leaving (time until its partitions move).
    async fn rebalance_rounds(&self, run: &mut Running) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let (mut joins, mut kills) = (Vec::new(), Vec::new());
        for round in 0..self.rounds {
            let id = self.members + round;
            let mut ids: BTreeSet<usize> = run.members.keys().copied().collect();
            ids.insert(id);
            let t = Instant::now();
            run.add(self, id);
            let newcomer_has_work =
                |b: &Arc<Mutex<Board>>| crate::sync::lock(b).assigned.get(&id).is_some_and(|v| !v.is_empty());
            wait(run.budget, "a joining member gets partitions", || {
                newcomer_has_work(&run.board) && run.stable(&ids)
            })
            .await?;
            joins.push(t.elapsed());
            // Kill the newcomer: no leave, no commit.
            if let Some(m) = run.members.remove(&id) {
                m.task.abort();
                let _ = m.task.await;
            }
            crate::sync::lock(&run.board).assigned.remove(&id);
            ids.remove(&id);
            let t = Instant::now();
            wait(run.budget, "a killed member's partitions move", || run.stable(&ids)).await?;
            kills.push(t.elapsed());
        }
        Ok((joins, kills))
    }

    /// Commit latency, one commit at a time, through the same coordinator path.
    async fn commit_latency(&self, client: &Client, group: &str) -> anyhow::Result<Option<Histogram<u64>>> {
        let mut hist = Histogram::<u64>::new(3).ok();
        let tp = TopicPartition::new(self.topic.clone(), 0);
        for i in 0..self.commits {
            let t = Instant::now();
            client.set_offsets(&format!("{group}-commits"), vec![(tp.clone(), i)]).await?;
            if let Some(h) = hist.as_mut() {
                let _ = h.record(t.elapsed().as_micros().max(1) as u64);
            }
        }
        Ok(hist)
    }

    /// Print the result line (or JSON).
    fn report(
        &self,
        elapsed: Duration,
        hist: Option<Histogram<u64>>,
        mut joins: Vec<Duration>,
        mut kills: Vec<Duration>,
    ) -> anyhow::Result<()> {
        let (jp50, jp99) = pct(&mut joins);
        let (kp50, kp99) = pct(&mut kills);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms =
            |q: f64| hist.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q) as f64 / 1000.0);
        let r = GroupBenchResult {
            label: format!("group of {} consume + commit, {} B", self.members, self.record_size),
            members: self.members,
            records: self.records,
            secs,
            records_per_sec: self.records as f64 / secs,
            mb_per_sec: (self.records * self.record_size as u64) as f64 / secs / 1e6,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            commits: hist.as_ref().map_or(0, |h| h.len()),
            join_rebalance_p50_ms: jp50,
            join_rebalance_p99_ms: jp99,
            kill_rebalance_p50_ms: kp50,
            kill_rebalance_p99_ms: kp99,
            rounds: self.rounds,
        };
        if self.view.json {
            return super::output::json(&r);
        }
        println!(
            "{}: {:.0} records/s, {:.1} MB/s; commit p50 {:?} ms p99 {:?} ms over {} commits; rebalance on join p50 {} \
             ms p99 {} ms, on kill p50 {} ms p99 {} ms (session {} ms, {} rounds)",
            r.label,
            r.records_per_sec,
            r.mb_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.commits,
            jp50,
            jp99,
            kp50,
            kp99,
            self.session_timeout_ms,
            self.rounds
        );
        Ok(())
    }

    fn spawn(
        &self,
        id: usize,
        client: Client,
        group: &str,
        board: Arc<Mutex<Board>>,
        read: Arc<AtomicU64>,
    ) -> Member {
        let mut cfg = GroupConfig::new(group, vec![self.topic.clone()]);
        cfg.session_timeout = Duration::from_millis(self.session_timeout_ms);
        cfg.client_id = format!("bench-{id}");
        cfg.fetch_max_bytes = 4 << 20;
        // Runs until aborted (a kill: no leave, no last commit).
        let task = tokio::spawn(async move {
            let mut m = GroupConsumer::new(client, cfg);
            loop {
                let records = match m.poll().await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(member = id, error = %e, "poll failed");
                        continue;
                    }
                };
                for c in &records {
                    m.ack(c);
                }
                read.fetch_add(records.len() as u64, Ordering::Relaxed);
                if let Err(e) = m.commit().await {
                    tracing::debug!(member = id, error = %e, "commit failed");
                }
                crate::sync::lock(&board).assigned.insert(id, m.assignment());
            }
        });
        Member { task }
    }
}

async fn wait(budget: Duration, what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t = Instant::now();
    while !done() {
        if t.elapsed() > budget {
            anyhow::bail!("gave up after {budget:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn pct(v: &mut [Duration]) -> (u128, u128) {
    v.sort();
    let at =
        |q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).map_or(0, |d| d.as_millis());
    (at(0.5), at(0.99))
}
