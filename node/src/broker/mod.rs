//! The broker: the partition replicas this node holds (each run by its replication
//! driver), the data requests served against them (produce through the leader's core,
//! fetch and offsets up to the high watermark), and the topic registry.
//!
//! It owns request semantics (validation, offsets, acks, retention) and nothing about
//! routing: the gateway decides which node serves a request.

pub mod driver;
mod partition;
mod recent;
pub mod stats;
mod ticker;
mod tombstones;
mod topics;

pub use driver::{DriverContext, Member, Outbound, ReplicaHandle, ReplicaSettings, ReplicaView};
pub use partition::{CompactStats, Partition};
pub use recent::RecentBudget;
pub use stats::BrokerStats;
pub use ticker::Ticker;
pub use topics::{already_exists, open_signed, place_replicas, AdoptError, Adopted, NewTopic, Topic, Topics};

use crate::network::PeerId;
use crate::storage::{GroupCommit, StorageError, Store};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, ClientResult, FetchRequest, ProduceRequest, ReplicateMessage,
};
use meshlog_protocol::revision;
use meshlog_protocol::types::{CleanupPolicy, PartitionStatus, TopicConfig};
use meshlog_protocol::{Epoch, ErrorCode, NodeId, WireError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Limits the broker enforces on requests, from the node's config.
#[derive(Debug, Clone)]
pub struct BrokerLimits {
    /// Longest long-poll a fetch may ask for.
    pub fetch_max_wait_ms: u32,
    /// Largest fetch response.
    pub fetch_max_bytes: u32,
    /// Longest a produce may wait for its ack.
    pub produce_max_timeout_ms: u32,
}

/// This node's broker.
pub struct Broker {
    node_id: NodeId,
    commit: GroupCommit,
    topics: Topics,
    limits: BrokerLimits,
    stats: BrokerStats,
}

impl Broker {
    /// Open the broker over a store: load topics and start every replica held here.
    /// Replication messages and lease announcements go to `outbound`.
    pub fn open(
        node_id: NodeId,
        store: Arc<Store>,
        limits: BrokerLimits,
        settings: ReplicaSettings,
        outbound: mpsc::Sender<Outbound>,
    ) -> Result<Broker, StorageError> {
        // Whatever survived a crash is made durable before anything is served from it.
        store.flush()?;
        let commit = GroupCommit::start(store.clone())?;
        let store_lost = store.meta_get(crate::storage::keys::STORE_LOST)?.is_some();
        let stats = BrokerStats::default();
        let ticker = Ticker::start(Ticker::period(settings.heartbeat_ms));
        let ctx = DriverContext {
            store,
            commit: commit.clone(),
            outbound,
            settings,
            store_lost,
            recent: RecentBudget::default(),
            stats: stats.clone(),
            ticker,
        };
        let topics = Topics::load(ctx, node_id.clone())?;
        Ok(Broker { node_id, commit, topics, limits, stats })
    }

    /// The data path's counters and histograms (the admin port serves them).
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// The group commit shared by everything this node stores.
    pub fn group_commit(&self) -> GroupCommit {
        self.commit.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The topic registry.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Serve a produce or an epoch's end (through this node's replica, which must lead),
    /// a fetch or an offset lookup (any replica, up to its high watermark) on a
    /// partition held here.
    pub async fn handle_local(&self, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::Produce(p) => self.produce(p).await,
            ClientRequest::Fetch(f) => self.fetch(f).await,
            ClientRequest::ListOffsets { topic, partition, spec } => {
                let t = self.topics.get(&topic)?;
                let offset = t.local(partition)?.part.list_offset(spec)?;
                Ok(ClientResponse::Offset { offset })
            }
            ClientRequest::EpochEnd { topic, partition, epoch, leader_epoch } => {
                let t = self.topics.get(&topic)?;
                let replica = t.local(partition)?;
                check_epoch(replica, leader_epoch)?;
                Ok(ClientResponse::EpochEnd(replica.epoch_end(epoch).await?))
            }
            other => Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "not a partition request: {}",
                    format!("{other:?}").chars().take(40).collect::<String>()
                ),
            )),
        }
    }

    /// The state of the partitions of `topic` held here, as each replica sees it.
    pub fn local_statuses(&self, topic: &str) -> Result<Vec<PartitionStatus>, WireError> {
        let t = self.topics.get(topic)?;
        Ok(t.held().map(|(_, r)| r.status()).collect())
    }

    /// This node's replica of `topic`-`p`, if it holds one.
    pub fn replica(&self, topic: &str, p: u32) -> Option<Arc<ReplicaHandle>> {
        let t = self.topics.get(topic).ok()?;
        t.local(p).ok().cloned()
    }

    /// Hand a replication message from peer `from` to its replica (dropped if this
    /// node holds none: the sender's view of the topic is ahead, and it will retry).
    /// Messages name a partition by its stored name ([`revision::replica_name`]), so a
    /// message about another incarnation of the topic (a node that has not yet learnt
    /// of a delete) reaches no replica of this one.
    pub fn deliver(&self, from: &PeerId, m: ReplicateMessage) {
        let held = revision::parse_replica_name(&m.topic).and_then(|(name, incarnation)| {
            let t = self.topics.get(name).ok()?;
            (t.record.revision.incarnation == incarnation).then(|| t.local(m.partition).ok().cloned())?
        });
        match held {
            Some(r) => r.deliver(from, m),
            None => {
                tracing::debug!(%from, topic = %m.topic, partition = m.partition, "replication message for a replica not held here")
            }
        }
    }

    /// (stored name, partition, epoch) of every partition this node leads (the stored
    /// name is the topic's for its first incarnation: [`revision::replica_name`]).
    pub fn leaderships(&self) -> Vec<(String, u32, Epoch)> {
        let mut out = Vec::new();
        for t in self.topics.all() {
            for (p, r) in t.held() {
                let v = r.view();
                if v.is_leader {
                    out.push((t.storage_name(), p, v.epoch));
                }
            }
        }
        out
    }

    async fn produce(&self, p: ProduceRequest) -> ClientResult {
        let t = self.topics.get(&p.topic)?;
        let replica = t.local(p.partition)?;
        check_epoch(replica, p.leader_epoch)?;
        let timeout_ms = p.timeout_ms.clamp(1, self.limits.produce_max_timeout_ms);
        let timeout = Duration::from_millis(timeout_ms as u64);
        let (started, bytes) = (std::time::Instant::now(), p.batch.len());
        let resp = replica.append(p.batch, p.acks, &t.info.config, timeout).await?;
        self.stats.produced(&p.topic, p.partition, resp.record_count, bytes, p.acks, started.elapsed());
        Ok(ClientResponse::Produced(resp))
    }

    async fn fetch(&self, f: FetchRequest) -> ClientResult {
        let t = self.topics.get(&f.topic)?;
        let replica = t.local(f.partition)?;
        check_epoch(replica, f.leader_epoch)?;
        let part = &replica.part;
        if f.max_bytes == 0 {
            return Err(WireError::new(ErrorCode::InvalidRequest, "fetch max_bytes must be > 0"));
        }
        let max_bytes = f.max_bytes.min(self.limits.fetch_max_bytes) as usize;
        let wait = Duration::from_millis(f.max_wait_ms.min(self.limits.fetch_max_wait_ms) as u64);
        // A follower behind the reader (its HW lags the leader's) has not got the
        // offset yet: that is not the reader's mistake, and another replica may have it.
        let hw = part.high_watermark();
        if f.offset > hw && !replica.is_leader() && f.offset >= part.offsets().0 {
            return Err(WireError::new(
                ErrorCode::OffsetNotAvailable,
                format!(
                    "{}-{}: this follower's high watermark is {hw}, behind offset {}; ask the leader",
                    f.topic, f.partition, f.offset
                ),
            ));
        }
        let fetched = part.fetch(f.offset, max_bytes, wait).await?;
        self.stats.fetched(&f.topic, f.partition, &fetched.records);
        Ok(ClientResponse::Fetched(fetched))
    }

    /// Apply retention to every replica held here once (each below its own HW): time
    /// and size retention, or compaction for a topic with `cleanup.policy=compact`.
    pub fn enforce_retention(&self) {
        let now = crate::time::unix_ms();
        for t in self.topics.all() {
            for (_, r) in t.held() {
                match t.info.config.cleanup_policy {
                    CleanupPolicy::Delete => delete_old(&r.part, &t.info.config, now),
                    CleanupPolicy::Compact => compact(&r.part, &t.info.config, now),
                }
            }
        }
    }

    /// Partition replicas held here.
    pub fn held_partition_count(&self) -> u32 {
        self.topics.all().iter().map(|t| t.held().count() as u32).sum()
    }
}

fn delete_old(part: &Partition, config: &TopicConfig, now: i64) {
    let (topic, partition) = (part.topic(), part.id());
    match part.enforce_retention(config, now) {
        Ok(0) => {}
        Ok(n) => tracing::info!(topic, partition, removed = n, "retention removed batches"),
        Err(e) => tracing::warn!(topic, partition, error = %e, "retention failed"),
    }
}

fn compact(part: &Partition, config: &TopicConfig, now: i64) {
    let (topic, partition) = (part.topic(), part.id());
    match part.compact(config, now) {
        Ok(s) if s.changed() => tracing::info!(
            topic,
            partition,
            rewritten = s.batches_rewritten,
            removed = s.batches_removed,
            records_removed = s.records_removed,
            bytes_before = s.bytes_before,
            bytes_after = s.bytes_after,
            "compaction removed records"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(topic, partition, error = %e, "compaction failed"),
    }
}

/// Refuse a request whose client believes in another leader epoch than this replica:
/// an older one is fenced (the client's view is stale), a newer one is unknown here
/// (this replica is behind). Nothing is written or read.
fn check_epoch(replica: &ReplicaHandle, client_epoch: Option<Epoch>) -> Result<(), WireError> {
    let Some(theirs) = client_epoch else { return Ok(()) };
    let ours = replica.view().epoch;
    let tp = format!("{}-{}", replica.part.topic(), replica.part.id());
    match theirs.cmp(&ours) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(WireError::new(
            ErrorCode::FencedLeaderEpoch,
            format!("{tp}: leader epoch {theirs} is stale; the current epoch is {ours}"),
        )),
        std::cmp::Ordering::Greater => Err(WireError::new(
            ErrorCode::UnknownLeaderEpoch,
            format!("{tp}: this replica is at epoch {ours} and does not know epoch {theirs} yet"),
        )),
    }
}
