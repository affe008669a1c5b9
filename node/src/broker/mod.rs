//! The broker: serves data requests (produce, fetch, offsets) against the partitions this
//! node owns, and keeps the topic registry.
//!
//! It owns request semantics (validation, offsets, acks, retention) and nothing about
//! transport or routing: the gateway decides which node serves a request.

mod partition;
mod topics;

pub use partition::Partition;
pub use topics::{already_exists, now_ms, place_replicas, Adopted, NewTopic, Topic, Topics};

use crate::storage::{GroupCommit, StorageError, Store};
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ClientResult, FetchRequest, ProduceRequest};
use meshlog_protocol::types::PartitionStatus;
use meshlog_protocol::{ErrorCode, WireError};
use std::sync::Arc;
use std::time::Duration;

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
    node_id: String,
    commit: GroupCommit,
    topics: Topics,
    limits: BrokerLimits,
}

impl Broker {
    /// Open the broker over a store: load topics and recover every owned partition.
    pub fn open(node_id: String, store: Arc<Store>, limits: BrokerLimits) -> Result<Broker, StorageError> {
        // Whatever survived a crash is made durable before anything is served from it.
        store.flush()?;
        let commit = GroupCommit::start(store.clone())?;
        let topics = Topics::load(store, commit.clone(), node_id.clone())?;
        Ok(Broker { node_id, commit, topics, limits })
    }

    /// The group commit shared by everything this node stores.
    pub fn group_commit(&self) -> GroupCommit {
        self.commit.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The topic registry.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Serve a produce, fetch or offset lookup on a partition owned here.
    pub async fn handle_local(&self, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::Produce(p) => self.produce(p).await,
            ClientRequest::Fetch(f) => self.fetch(f).await,
            ClientRequest::ListOffsets { topic, partition, spec } => {
                let t = self.topics.get(&topic)?;
                let offset = t.local(partition)?.list_offset(spec)?;
                Ok(ClientResponse::Offset { offset })
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

    /// The state of the partitions of `topic` owned here.
    pub fn local_statuses(&self, topic: &str) -> Result<Vec<PartitionStatus>, WireError> {
        let t = self.topics.get(topic)?;
        Ok(t.owned().map(|(p, part)| part.status(t.replicas(p))).collect())
    }

    async fn produce(&self, p: ProduceRequest) -> ClientResult {
        let t = self.topics.get(&p.topic)?;
        let part = t.local(p.partition)?;
        let timeout_ms = p.timeout_ms.clamp(1, self.limits.produce_max_timeout_ms);
        let resp =
            part.append(p.batch, p.acks, &t.info.config, Duration::from_millis(timeout_ms as u64)).await?;
        Ok(ClientResponse::Produced(resp))
    }

    async fn fetch(&self, f: FetchRequest) -> ClientResult {
        let t = self.topics.get(&f.topic)?;
        let part = t.local(f.partition)?;
        if f.max_bytes == 0 {
            return Err(WireError::new(ErrorCode::InvalidRequest, "fetch max_bytes must be > 0"));
        }
        let max_bytes = f.max_bytes.min(self.limits.fetch_max_bytes) as usize;
        let wait = Duration::from_millis(f.max_wait_ms.min(self.limits.fetch_max_wait_ms) as u64);
        Ok(ClientResponse::Fetched(part.fetch(f.offset, max_bytes, wait).await?))
    }

    /// Apply retention to every owned partition once.
    pub fn enforce_retention(&self) {
        let now = now_ms();
        for t in self.topics.all() {
            for (_, p) in t.owned() {
                match p.enforce_retention(&t.info.config, now) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(topic = %t.info.name, removed = n, "retention removed batches"),
                    Err(e) => tracing::warn!(topic = %t.info.name, error = %e, "retention failed"),
                }
            }
        }
    }

    /// Partitions owned here.
    pub fn owned_partition_count(&self) -> u32 {
        self.topics.all().iter().map(|t| t.owned().count() as u32).sum()
    }
}
