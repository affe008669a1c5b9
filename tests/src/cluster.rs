//! A cluster of real `meshlog node` processes for fault tests (kill -9, SIGSTOP, a wiped
//! store, all nodes at once), an idempotent writer that keeps writing through whichever
//! node answers, and the workload checker of TESTING.md.

use crate::{wait_until, NodeProcess, LONG_BUDGET};
use meshlog::client::Client;
use meshlog_protocol::batch::{self, BatchBuilder};
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ProduceRequest};
use meshlog_protocol::types::{Acks, PartitionStatus};
use meshlog_protocol::Epoch;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients of the live nodes, by node index (`None` while a node is down).
pub type Clients = Arc<Mutex<Vec<Option<Client>>>>;

/// N `meshlog node` processes meshed through the first one's address.
pub struct Cluster {
    /// The processes (`None` while killed).
    pub nodes: Vec<Option<NodeProcess>>,
    dirs: Vec<tempfile::TempDir>,
    /// PeerIds, by index (stable across restarts: the key stays in the data dir).
    pub ids: Vec<String>,
    /// Clients of the live nodes.
    pub clients: Clients,
    /// Extra `meshlog node` arguments, for restarts too.
    args: Vec<String>,
}

impl Cluster {
    /// Start `n` nodes and wait until each sees all of them.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Start `n` nodes with extra `meshlog node` arguments (also on restarts).
    pub async fn start_with(n: usize, args: &[&str]) -> Cluster {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let first = NodeProcess::start_with(dirs[0].path(), &as_strs(&args));
        let mut nodes = vec![Some(first)];
        for d in &dirs[1..] {
            let boot = nodes[0].as_ref().unwrap().addr.clone();
            let mut with_boot = as_strs(&args);
            with_boot.extend(["--bootstrap", &boot]);
            nodes.push(Some(NodeProcess::start_with(d.path(), &with_boot)));
        }
        let ids = nodes.iter().map(|n| n.as_ref().unwrap().peer_id()).collect();
        let mut clients = Vec::new();
        for node in &nodes {
            clients.push(Some(Client::connect(&node.as_ref().unwrap().addr.parse().unwrap()).await.unwrap()));
        }
        let c = Cluster { nodes, dirs, ids, clients: Arc::new(Mutex::new(clients)), args };
        for i in 0..n {
            c.wait_members(i, n).await;
        }
        c
    }

    /// A client of node `i` (which must be up).
    pub fn client(&self, i: usize) -> Client {
        self.clients.lock().unwrap()[i].clone().expect("node is up")
    }

    /// A client of any live node.
    pub fn any_client(&self) -> Client {
        self.clients.lock().unwrap().iter().flatten().next().cloned().expect("a live node")
    }

    /// Wait until node `i` sees `n` members up.
    pub async fn wait_members(&self, i: usize, n: usize) {
        let c = self.client(i);
        wait_until(&format!("node {i} sees {n} members up"), LONG_BUDGET, || async {
            let s = c.cluster_status().await.ok()?;
            (s.members.iter().filter(|m| m.state == "up").count() == n).then_some(())
        })
        .await;
    }

    /// Node `i`'s data directory (its store is there: `logs/<topic>/<p>` and sled).
    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        self.dirs[i].path()
    }

    /// The index of the node with PeerId `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        self.clients.lock().unwrap()[i] = None;
        if let Some(mut n) = self.nodes[i].take() {
            n.kill9_ref();
        }
    }

    /// Restart node `i` on its data directory, bootstrapping through a live node.
    pub async fn restart(&mut self, i: usize) {
        let boot = self.nodes.iter().flatten().next().map(|n| n.addr.clone());
        let mut args = as_strs(&self.args);
        if let Some(b) = &boot {
            args.extend(["--bootstrap", b]);
        }
        let node = NodeProcess::start_with(self.dirs[i].path(), &args);
        let client = Client::connect(&node.addr.parse().unwrap()).await.unwrap();
        self.nodes[i] = Some(node);
        self.clients.lock().unwrap()[i] = Some(client);
        // Healed means every live node sees every live node (the next fault starts
        // from a whole mesh).
        let live: Vec<usize> = (0..self.nodes.len()).filter(|j| self.nodes[*j].is_some()).collect();
        for j in &live {
            self.wait_members(*j, live.len()).await;
        }
    }

    /// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) node `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].as_ref().expect("node is up").child.id().to_string();
        let ok = std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// Delete node `i`'s store but keep its key (a lost disk; the node must be down).
    pub fn wipe_store(&self, i: usize) {
        assert!(self.nodes[i].is_none(), "wipe a stopped node");
        for e in std::fs::read_dir(self.dirs[i].path()).unwrap().flatten() {
            if e.file_name() == "node.key" {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }

    /// Node `i`'s own view of `topic`-`p` (its replica's status).
    pub async fn replica_status(&self, i: usize, topic: &str, p: u32) -> Option<PartitionStatus> {
        let c = self.clients.lock().unwrap().get(i).cloned().flatten()?;
        // Short: a frozen node must not hold up a poll of the others.
        let s = tokio::time::timeout(Duration::from_secs(1), c.cluster_status()).await.ok()?.ok()?;
        s.partitions
            .into_iter()
            .find(|(t, st)| t == topic && st.partition == p && st.online)
            .map(|(_, st)| st)
    }

    /// Wait until a live node leads `topic`-`p` with every replica of its set in sync;
    /// returns the leader's index and epoch.
    pub async fn wait_leader_with_full_isr(&self, topic: &str, p: u32) -> (usize, Epoch) {
        let n = self.nodes.len();
        wait_until(&format!("{topic}-{p} has a leader with {n} in-sync replicas"), LONG_BUDGET, || async {
            for i in 0..n {
                let Some(s) = self.replica_status(i, topic, p).await else { continue };
                if s.leader == self.ids[i] && s.isr.len() == s.replicas.len() {
                    return Some((i, s.epoch));
                }
            }
            None
        })
        .await
    }

    /// Like [`Cluster::wait_leader_with_full_isr`], but a full ISR is every live replica
    /// (for a partition with a node down).
    pub async fn wait_leader_with_full_isr_of_live(&self, topic: &str, p: u32) -> (usize, Epoch) {
        let live = self.nodes.iter().filter(|n| n.is_some()).count();
        wait_until(&format!("{topic}-{p} has a leader with {live} in-sync replicas"), LONG_BUDGET, || async {
            for i in 0..self.nodes.len() {
                let Some(s) = self.replica_status(i, topic, p).await else { continue };
                if s.leader == self.ids[i] && s.isr.len() >= live {
                    return Some((i, s.epoch));
                }
            }
            None
        })
        .await
    }

    /// The PeerId of the live node leading `topic`-`p` now.
    pub async fn leader_id(&self, topic: &str, p: u32) -> String {
        let (i, _) = self.wait_leader_with_full_isr_of_live(topic, p).await;
        self.ids[i].clone()
    }

    /// Every (epoch, leader) that live nodes claim for `topic`-`p` right now (a node
    /// claims an epoch when its own replica says it leads it).
    pub async fn leadership_claims(&self, topic: &str, p: u32) -> Vec<(Epoch, usize)> {
        let asks = (0..self.nodes.len()).map(|i| self.replica_status(i, topic, p));
        let views = futures::future::join_all(asks).await;
        views
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(|s| s.leader == self.ids[i]).map(|s| (s.epoch, i)))
            .collect()
    }
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// One acknowledged write.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// The first value of the batch.
    pub first: u64,
    /// Records in it.
    pub count: u64,
    /// The offset the leader gave its first record.
    pub offset: u64,
    /// When the ack arrived.
    pub at: Instant,
}

/// What the writer did.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// Every acknowledged batch, in order.
    pub acked: Vec<Acked>,
    /// Attempts that failed (and were retried).
    pub failed_attempts: u64,
    /// Acks that said the batch was a duplicate of one already written.
    pub duplicates_recognised: u64,
}

/// An idempotent producer that writes batches of unique, increasing values to one
/// partition with `acks=all`, one batch at a time, retrying each (same producer id and
/// sequence) through any live node until it is acknowledged.
pub struct Writer {
    topic: String,
    partition: u32,
    producer_id: i64,
    records_per_batch: u64,
}

impl Writer {
    /// A writer of `records_per_batch`-record batches.
    pub fn new(topic: &str, partition: u32, records_per_batch: u64) -> Writer {
        Writer {
            topic: topic.into(),
            partition,
            producer_id: rand::random::<i64>() & i64::MAX,
            records_per_batch,
        }
    }

    /// Write until `stop` is set (finishing the batch in hand) through the clients in
    /// `clients`, counting acknowledged batches in `progress`.
    pub async fn run(self, clients: Clients, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> WriterLog {
        let mut log = WriterLog::default();
        let (mut seq, mut value, mut rr) = (0i32, 0u64, 0usize);
        while !stop.load(Ordering::Relaxed) {
            let mut b = BatchBuilder::new();
            for v in value..value + self.records_per_batch {
                b.push(1, None, Some(format!("v{v:09}").as_bytes()), &[]);
            }
            let mut bytes = b.build().unwrap();
            batch::set_producer(&mut bytes, self.producer_id, 0, seq).unwrap();
            let req = ClientRequest::Produce(ProduceRequest {
                topic: self.topic.clone(),
                partition: self.partition,
                acks: Acks::All,
                timeout_ms: 5_000,
                leader_epoch: None,
                batch: bytes,
            });
            let started = Instant::now();
            loop {
                assert!(started.elapsed() < LONG_BUDGET, "batch at value {value} never acknowledged");
                let live: Vec<Client> = clients.lock().unwrap().iter().flatten().cloned().collect();
                let Some(c) = live.get(rr % live.len().max(1)).cloned() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let answer = tokio::time::timeout(Duration::from_secs(10), c.request(req.clone())).await;
                match answer {
                    Ok(Ok(ClientResponse::Produced(r))) => {
                        let offset = r.base_offset.expect("acks=all gives an offset");
                        log.duplicates_recognised += r.duplicate as u64;
                        log.acked.push(Acked {
                            first: value,
                            count: self.records_per_batch,
                            offset,
                            at: Instant::now(),
                        });
                        progress.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(Ok(other)) => panic!("unexpected answer {other:?}"),
                    Ok(Err(_)) | Err(_) => {
                        log.failed_attempts += 1;
                        rr += 1;
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            }
            seq += self.records_per_batch as i32;
            value += self.records_per_batch;
        }
        log
    }
}

/// The workload checker's findings for one partition.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Acknowledged records not in the log.
    pub lost: u64,
    /// Records in the log more than once.
    pub duplicated: u64,
    /// Records after a larger value (one writer writes increasing values).
    pub reordered: u64,
    /// Acknowledged records found at another offset than acknowledged.
    pub moved: u64,
    /// Records read back.
    pub read: u64,
}

/// Compare what the writer was told with the partition's records (read after healing).
pub fn check(acked: &[Acked], records: &[meshlog_protocol::batch::Record]) -> Check {
    let mut c = Check { read: records.len() as u64, ..Check::default() };
    let mut at: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut last: Option<u64> = None;
    for r in records {
        let text = crate::value_text(r);
        let Some(v) = text.strip_prefix('v').and_then(|s| s.parse::<u64>().ok()) else { continue };
        if last.is_some_and(|l| v <= l) {
            c.reordered += 1;
        }
        last = Some(last.map_or(v, |l| l.max(v)));
        at.entry(v).or_default().push(r.offset as u64);
    }
    c.duplicated = at.values().map(|o| o.len() as u64 - 1).sum();
    for a in acked {
        for j in 0..a.count {
            match at.get(&(a.first + j)) {
                None => c.lost += 1,
                Some(offsets) if !offsets.contains(&(a.offset + j)) => c.moved += 1,
                Some(_) => {}
            }
        }
    }
    c
}

/// p50 and p99 of durations, in milliseconds.
pub fn percentiles(mut d: Vec<Duration>) -> (u128, u128) {
    d.sort();
    let at = |q: f64| d.get(((d.len() as f64 - 1.0) * q).round() as usize).map_or(0, |x| x.as_millis());
    (at(0.5), at(0.99))
}

/// Count distinct leaders per epoch over a set of observed claims.
pub fn max_leaders_per_epoch(claims: &[(Epoch, usize)]) -> usize {
    let mut by_epoch: BTreeMap<Epoch, Vec<usize>> = BTreeMap::new();
    for (e, l) in claims {
        let v = by_epoch.entry(*e).or_default();
        if !v.contains(l) {
            v.push(*l);
        }
    }
    by_epoch.values().map(Vec::len).max().unwrap_or(0)
}

/// A writer running in the background, and how to stop it.
pub struct Background {
    /// Acknowledged batches so far.
    pub progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<WriterLog>,
}

impl Background {
    /// Start `writer` against `clients`.
    pub fn start(writer: Writer, clients: Clients) -> Background {
        let (progress, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let task = tokio::spawn(writer.run(clients, stop.clone(), progress.clone()));
        Background { progress, stop, task }
    }

    /// Acknowledged batches so far.
    pub fn acked(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Wait until `more` batches beyond now are acknowledged; returns how long it took.
    pub async fn wait_for_more(&self, more: u64, what: &str) -> Duration {
        let (from, started) = (self.acked(), Instant::now());
        wait_until(what, LONG_BUDGET, || async { (self.acked() >= from + more).then_some(()) }).await;
        started.elapsed()
    }

    /// Stop after the batch in hand and return the log.
    pub async fn stop(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}
