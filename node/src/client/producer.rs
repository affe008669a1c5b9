//! A batching producer, like Kafka's: records are partitioned (murmur2 of the key, or
//! sticky spreading for records without a key), gathered into one v2 record batch per
//! partition, and sent when the batch is full or has lingered long enough.
//!
//! Ordering: an idempotent producer may keep up to `max_in_flight_per_partition`
//! batches of a partition in flight (at most 5, as Kafka's producer); the leader
//! appends a producer's batches in sequence order only, refusing without writing one
//! that overtook its predecessor on the way (a gap in the sequence, or a producer it
//! does not know yet), and such a batch is sent again once its predecessor is answered.
//! The default is one: on three nodes here, five did not raise a partition's
//! throughput (0.85-0.92 of one with 64 KiB batches, within noise with 256 KiB) and
//! raised its p99. Without idempotence nothing would catch an overtaking batch, so one
//! batch per partition is in flight. Either way records of a partition are stored in
//! the order they were sent, whichever node a batch goes through. Several partitions
//! are in flight at once (up to `max_in_flight`).
//!
//! Routing: as a Kafka client does, the producer sends each batch straight to its
//! partition's leader (learned from `cluster status` and connected to directly), so the
//! batch is not forwarded through the node the client dialled. A batch whose direct send
//! fails is retried through that node, which routes it wherever the leader is now, and
//! the producer looks the leaders up again (at most once per [`ROUTE_REFRESH`]). With
//! `acks=local` every batch goes to the dialled node, which keeps it if it must.
//!
//! Idempotence (`enable.idempotence`, on by default as in Kafka 3): the producer has a
//! random producer id and numbers each partition's records; the partition's leader keeps
//! the latest sequences in its replicated log, so a batch retried after a lost answer or
//! a leader change is recognised and not written twice. Only an idempotent producer
//! retries, on retriable errors, until `delivery_timeout`; without idempotence a retry
//! could write a batch twice, so the error goes to the caller.

use super::{unexpected, Client, ClientError};
use crate::network::{peer_of, PeerId};
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use meshlog_protocol::batch::{self, BatchBuilder};
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ProduceRequest, ProduceResponse};
use meshlog_protocol::partitioner;
use meshlog_protocol::types::Acks;
use meshlog_protocol::ErrorCode;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The least time between two lookups of the partitions' leaders.
pub const ROUTE_REFRESH: Duration = Duration::from_secs(1);

/// The most batches of one partition an idempotent producer keeps in flight: the leader
/// remembers a producer's last 5 batches to recognise a retried one (`RECENT_BATCHES` in
/// replica/producers.rs), as Kafka caps `max.in.flight.requests.per.connection` at 5.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

/// Producer settings (Kafka's names in brackets).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// When a batch counts as written (`acks`).
    pub acks: Acks,
    /// Seal a batch once it reaches this size (`batch.size`).
    pub batch_size_bytes: usize,
    /// Send a batch at the latest this long after its first record (`linger.ms`).
    pub linger: Duration,
    /// Batches in flight at once, across partitions.
    pub max_in_flight: usize,
    /// Batches of one partition in flight at once (`max.in.flight.requests.per.connection`),
    /// at most [`MAX_IN_FLIGHT_PER_PARTITION`]; 1 unless idempotent. Default 1.
    pub max_in_flight_per_partition: usize,
    /// Sealed-but-unsent bytes before `send` waits (`buffer.memory`).
    pub buffer_bytes: usize,
    /// How long the node may take to acknowledge (`request.timeout.ms`).
    pub timeout_ms: u32,
    /// Send every record to this partition instead of partitioning.
    pub partition: Option<u32>,
    /// Number batches so retries are never written twice (`enable.idempotence`). Off
    /// with `acks=local`, where the node numbers what it forwards.
    pub idempotent: bool,
    /// How long an idempotent producer keeps retrying a batch (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Pause before a retry, doubled each time up to a second (`retry.backoff.ms`).
    pub retry_backoff: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            batch_size_bytes: 64 << 10,
            linger: Duration::from_millis(5),
            max_in_flight: 16,
            max_in_flight_per_partition: 1,
            buffer_bytes: 32 << 20,
            timeout_ms: 30_000,
            partition: None,
            idempotent: true,
            delivery_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(50),
        }
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    first_at: Instant,
}

struct Sealed {
    bytes: Vec<u8>,
    records: u32,
    first_at: Instant,
}

struct Outcome {
    partition: u32,
    records: u32,
    bytes: usize,
    first_at: Instant,
    result: Result<ProduceResponse, ClientError>,
    /// The direct send to the leader failed (the batch may have gone another way).
    misrouted: bool,
}

/// Totals of acknowledged data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProducerStats {
    /// Records acknowledged.
    pub records: u64,
    /// Batch bytes acknowledged.
    pub bytes: u64,
    /// Batches acknowledged.
    pub batches: u64,
}

/// Sends records of one topic.
pub struct Producer {
    client: Client,
    topic: String,
    partitions: u32,
    cfg: ProducerConfig,
    open: Vec<Option<OpenBatch>>,
    queued: Vec<VecDeque<Sealed>>,
    queued_bytes: usize,
    /// Each partition's batches in flight, and the last one's "done" signal (fired or
    /// dropped when its send ends), which the partition's next batch may wait for.
    busy: Vec<usize>,
    last_sent: Vec<Option<Shared<oneshot::Receiver<()>>>>,
    inflight: FuturesUnordered<BoxFuture<'static, Outcome>>,
    sticky: u32,
    /// This producer's id (random, positive) and each partition's next sequence.
    producer_id: i64,
    next_seq: Vec<i32>,
    stats: ProducerStats,
    latency_us: Option<Histogram<u64>>,
    /// Each partition's leader, where a batch is sent first (None: the dialled node).
    routes: Vec<Option<PeerId>>,
    /// When the leaders were last looked up, and whether they must be again.
    routed_at: Option<Instant>,
    reroute: bool,
}

impl Producer {
    /// A producer for `topic`, which must exist (its partition count is looked up).
    pub async fn new(client: Client, topic: &str, cfg: ProducerConfig) -> Result<Producer, ClientError> {
        let partitions = client.topic_info(topic).await?.partitions;
        if let Some(p) = cfg.partition {
            if p >= partitions {
                return Err(ClientError::Server(meshlog_protocol::WireError::new(
                    meshlog_protocol::ErrorCode::UnknownTopicOrPartition,
                    format!("topic '{topic}' has {partitions} partition(s); partition {p} does not exist"),
                )));
            }
        }
        let n = partitions as usize;
        let mut cfg = cfg;
        // With acks=local the edge node numbers the batches it forwards, on its own behalf.
        cfg.idempotent &= cfg.acks != Acks::Local;
        // Only an idempotent producer may send a batch again another way, or let a
        // partition's batches overtake each other on the way (the leader refuses them).
        let direct = cfg.idempotent;
        cfg.max_in_flight_per_partition = if cfg.idempotent {
            cfg.max_in_flight_per_partition.clamp(1, MAX_IN_FLIGHT_PER_PARTITION)
        } else {
            1
        };
        let mut producer = Producer {
            client,
            topic: topic.to_string(),
            partitions,
            cfg,
            open: (0..n).map(|_| None).collect(),
            queued: (0..n).map(|_| VecDeque::new()).collect(),
            queued_bytes: 0,
            busy: vec![0; n],
            last_sent: vec![None; n],
            inflight: FuturesUnordered::new(),
            sticky: rand::random::<u32>() % partitions.max(1),
            producer_id: rand::random::<i64>() & i64::MAX,
            next_seq: vec![0; n],
            stats: ProducerStats::default(),
            latency_us: None,
            routes: vec![None; n],
            routed_at: None,
            reroute: direct,
        };
        producer.refresh_routes().await;
        Ok(producer)
    }

    /// Look up each partition's leader and connect to it; a partition whose leader is
    /// the dialled node, unknown or unreachable is sent to the dialled node. Best effort.
    async fn refresh_routes(&mut self) {
        if !self.reroute {
            return;
        }
        self.reroute = false;
        self.routed_at = Some(Instant::now());
        let status = match self.client.cluster_status().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look up the leaders; batches go through the dialled node");
                return;
            }
        };
        let addrs: HashMap<&str, &[String]> = status
            .members
            .iter()
            .filter(|m| m.state == "up")
            .map(|m| (m.peer.as_str(), &m.addrs[..]))
            .collect();
        let mut reachable: HashMap<PeerId, bool> = HashMap::new();
        for (topic, ps) in &status.partitions {
            let Some(route) = self.routes.get_mut(ps.partition as usize) else { continue };
            if *topic != self.topic {
                continue;
            }
            *route = None;
            let Some(leader) = peer_of(&ps.leader) else { continue };
            if leader == self.client.server() {
                continue;
            }
            let ok = match reachable.get(&leader) {
                Some(ok) => *ok,
                None => {
                    let at = addrs.get(ps.leader.as_str()).copied().unwrap_or(&[]);
                    let ok = self.client.connect_node(leader, at).await;
                    reachable.insert(leader, ok);
                    ok
                }
            };
            if ok {
                *route = Some(leader);
            }
        }
    }

    /// The partitions whose batches go straight to their leader (another node than the
    /// dialled one) right now.
    pub fn direct_partitions(&self) -> Vec<u32> {
        (0..self.partitions).filter(|p| self.routes[*p as usize].is_some()).collect()
    }

    /// Record ack latencies (from a batch's first record to its ack) in a histogram.
    pub fn record_latencies(&mut self) {
        self.latency_us = Histogram::new_with_bounds(1, 600_000_000, 3).ok();
    }

    /// The latency histogram, in microseconds, if enabled.
    pub fn latencies(&self) -> Option<&Histogram<u64>> {
        self.latency_us.as_ref()
    }

    /// Acknowledged totals so far.
    pub fn stats(&self) -> ProducerStats {
        self.stats
    }

    /// The partition a record goes to.
    pub fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        match (self.cfg.partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partitioner::partition_for_key(k, self.partitions),
            (None, None) => self.sticky,
        }
    }

    /// Queue one record; waits only when the in-flight window and buffer are full.
    pub async fn send(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp_ms: i64,
    ) -> Result<(), ClientError> {
        let p = self.partition_for(key) as usize;
        let open = self.open[p]
            .get_or_insert_with(|| OpenBatch { builder: BatchBuilder::new(), first_at: Instant::now() });
        open.builder.push(timestamp_ms, key, Some(value), &[]);
        if open.builder.size_bytes() >= self.cfg.batch_size_bytes {
            self.seal(p);
        }
        self.pump().await
    }

    /// Seal batches older than the linger time and start what can be started.
    pub async fn tick(&mut self) -> Result<(), ClientError> {
        let linger = self.cfg.linger;
        for p in 0..self.open.len() {
            if self.open[p].as_ref().is_some_and(|b| b.first_at.elapsed() >= linger) {
                self.seal(p);
            }
        }
        self.pump().await
    }

    /// Send everything queued and wait until all of it is acknowledged.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        for p in 0..self.open.len() {
            self.seal(p);
        }
        loop {
            self.start_ready();
            match self.inflight.next().await {
                Some(o) => self.complete(o)?,
                None => return Ok(()),
            }
        }
    }

    fn seal(&mut self, p: usize) {
        let Some(open) = self.open[p].take() else {
            return;
        };
        let records = open.builder.len() as u32;
        if let Some(mut bytes) = open.builder.build() {
            if self.cfg.idempotent {
                // Sequences wrap at i32::MAX, as Kafka's do.
                let seq = self.next_seq[p];
                let _ = batch::set_producer(&mut bytes, self.producer_id, 0, seq);
                self.next_seq[p] = ((seq as i64 + records as i64) % (i32::MAX as i64 + 1)) as i32;
            }
            self.queued_bytes += bytes.len();
            self.queued[p].push_back(Sealed { bytes, records, first_at: open.first_at });
        }
        if self.cfg.partition.is_none() && p as u32 == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
    }

    /// Start sends, collect finished ones without waiting, and wait only while the
    /// buffer is over its limit.
    async fn pump(&mut self) -> Result<(), ClientError> {
        if self.reroute && self.routed_at.is_none_or(|t| t.elapsed() >= ROUTE_REFRESH) {
            self.refresh_routes().await;
        }
        loop {
            self.start_ready();
            while let Some(Some(o)) = self.inflight.next().now_or_never() {
                self.complete(o)?;
                self.start_ready();
            }
            if self.queued_bytes <= self.cfg.buffer_bytes || self.inflight.is_empty() {
                return Ok(());
            }
            if let Some(o) = self.inflight.next().await {
                self.complete(o)?;
            }
        }
    }

    /// Start queued batches, a partition's oldest first, one per partition per round so
    /// the window is shared fairly, within both in-flight limits.
    fn start_ready(&mut self) {
        let mut started = true;
        while started {
            started = false;
            for p in 0..self.queued.len() {
                if self.inflight.len() >= self.cfg.max_in_flight {
                    return;
                }
                if self.busy[p] >= self.cfg.max_in_flight_per_partition {
                    continue;
                }
                let Some(batch) = self.queued[p].pop_front() else { continue };
                self.queued_bytes -= batch.bytes.len();
                self.busy[p] += 1;
                let (done, rx) = oneshot::channel();
                let before = self.last_sent[p].replace(rx.shared());
                self.inflight.push(self.send_batch(p as u32, batch, before, done).boxed());
                started = true;
            }
        }
    }

    /// Send one batch (retrying as the config allows). `before` is the partition's
    /// previous batch's "done" signal: if that batch was still in flight when this one
    /// left, this one may have overtaken it, and a refusal saying so (see [`overtaken`])
    /// sends it again once that batch is answered. `done` fires when this send ends.
    fn send_batch(
        &self,
        partition: u32,
        batch: Sealed,
        before: Option<Shared<oneshot::Receiver<()>>>,
        done: oneshot::Sender<()>,
    ) -> impl std::future::Future<Output = Outcome> + 'static {
        let client = self.client.clone();
        let bytes = batch.bytes.len();
        let req = ClientRequest::Produce(ProduceRequest {
            topic: self.topic.clone(),
            partition,
            acks: self.cfg.acks,
            timeout_ms: self.cfg.timeout_ms,
            leader_epoch: None,
            batch: batch.bytes,
        });
        let (retry, deadline) = (self.cfg.idempotent, Instant::now() + self.cfg.delivery_timeout);
        let mut backoff = self.cfg.retry_backoff;
        let mut route = self.routes[partition as usize];
        let mut before = before.filter(|b| b.peek().is_none());
        async move {
            let mut misrouted = false;
            let result = loop {
                let direct = route.take();
                let sent = match direct {
                    Some(leader) => client.request_to(leader, req.clone()).await,
                    None => client.request(req.clone()).await,
                };
                let result = match sent {
                    Ok(ClientResponse::Produced(r)) => Ok(r),
                    Ok(other) => Err(unexpected(other)),
                    Err(e) => Err(e),
                };
                match result {
                    // Ahead of its predecessor: again, the same way, once that is answered.
                    Err(ClientError::Server(e)) if overtaken(e.code) && before.is_some() => {
                        if let Some(b) = before.take() {
                            let _ = b.await;
                        }
                        route = direct;
                    }
                    // The leader moved or is gone: again at once, through the dialled node.
                    Err(e) if direct.is_some() && retry && e.is_retriable() => {
                        tracing::debug!(partition, error = %e, "direct send to the leader failed; sent through the dialled node");
                        misrouted = true;
                    }
                    Err(e) if retry && e.is_retriable() && Instant::now() + backoff < deadline => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    other => break other,
                }
            };
            drop(done);
            Outcome { partition, records: batch.records, bytes, first_at: batch.first_at, result, misrouted }
        }
    }

    fn complete(&mut self, o: Outcome) -> Result<(), ClientError> {
        self.busy[o.partition as usize] -= 1;
        if o.misrouted {
            self.routes[o.partition as usize] = None;
            self.reroute = true;
        }
        o.result?;
        self.stats.records += o.records as u64;
        self.stats.bytes += o.bytes as u64;
        self.stats.batches += 1;
        if let Some(h) = &mut self.latency_us {
            let us = o.first_at.elapsed().as_micros() as u64;
            let _ = h.record_n(us.max(1), o.records as u64);
        }
        Ok(())
    }
}

/// The refusals a batch gets when it reached the leader before the batch it follows:
/// nothing was written, so sending it again after that batch is safe.
fn overtaken(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId)
}
