//! The topic registry of this node: every topic record the mesh agreed on (persisted in
//! the store's metadata), and the open partitions this node owns.
//!
//! Records arrive from local creation, gossip, peers and the DHT; [`Topics::adopt`]
//! applies the mesh's rule for concurrent creations of one name (the lower creation id
//! wins) so every node converges on the same record.

use super::driver::{DriverContext, ReplicaHandle};
use crate::storage::StorageError;
use meshlog_protocol::codec;
use meshlog_protocol::mesh::{SignedRecord, TopicRecord};
use meshlog_protocol::types::{self, TopicConfig, TopicInfo, MAX_PARTITIONS, MAX_REPLICATION_FACTOR};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

const TOPIC_KEY_PREFIX: &str = "topic/";

/// A topic and the replicas of its partitions this node holds.
pub struct Topic {
    /// The agreed record.
    pub record: TopicRecord,
    /// The record as its creator signed it (what peers are sent).
    pub signed: SignedRecord,
    /// `record.info`, for convenience.
    pub info: TopicInfo,
    /// Partitions by number; `Some` for the ones this node holds a replica of.
    partitions: Vec<Option<Arc<ReplicaHandle>>>,
}

/// What a create request asks for.
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: u16,
    /// `k=v` config.
    pub config: BTreeMap<String, String>,
    /// An internal topic the node creates itself (its name starts with `__`).
    pub internal: bool,
}

/// What [`Topics::adopt`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The name was new here.
    New,
    /// The record won over a different one for the same name.
    Replaced,
    /// This node already had this record, or one that wins over it.
    Kept,
}

/// All topics this node knows.
pub struct Topics {
    ctx: DriverContext,
    local_peer: String,
    map: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises adoptions so that compare-and-replace is atomic.
    adopt_lock: std::sync::Mutex<()>,
}

impl Topics {
    /// Load every topic record from the store and start the replicas held here.
    pub fn load(ctx: DriverContext, local_peer: String) -> Result<Topics, StorageError> {
        let mut map = BTreeMap::new();
        for (key, bytes) in ctx.store.meta_scan(TOPIC_KEY_PREFIX)? {
            let decoded = codec::decode::<SignedRecord>(&bytes)
                .and_then(|signed| Ok((codec::decode::<TopicRecord>(&signed.payload)?, signed)));
            let (record, signed) = match decoded {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(%key, error = %e, "unreadable topic record skipped");
                    continue;
                }
            };
            let topic = open_topic(&ctx, &local_peer, record, signed)?;
            map.insert(topic.info.name.clone(), Arc::new(topic));
        }
        Ok(Topics { ctx, local_peer, map: RwLock::new(map), adopt_lock: std::sync::Mutex::new(()) })
    }

    /// The topic named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, WireError> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| {
            WireError::new(ErrorCode::UnknownTopicOrPartition, format!("unknown topic '{name}'"))
        })
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Check a create request and return the topic's effective config. `live_nodes`
    /// bounds the replication factor.
    pub fn validate_new(&self, req: &NewTopic, live_nodes: usize) -> Result<TopicConfig, WireError> {
        if !(req.internal && req.name == meshlog_protocol::group::OFFSETS_TOPIC) {
            types::validate_topic_name(&req.name)?;
        }
        if req.partitions == 0 || req.partitions > MAX_PARTITIONS {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!("partitions must be between 1 and {MAX_PARTITIONS}, not {}", req.partitions),
            ));
        }
        let rf = req.replication_factor;
        if rf == 0 || rf > MAX_REPLICATION_FACTOR || rf as usize > live_nodes {
            return Err(WireError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {rf} is not possible: it must be between 1 and \
                     {MAX_REPLICATION_FACTOR} and at most the {live_nodes} live node(s) of the mesh"
                ),
            ));
        }
        let config = TopicConfig::from_pairs(&req.config, rf)?;
        if self.get(&req.name).is_ok() {
            return Err(already_exists(&req.name));
        }
        Ok(config)
    }

    /// Apply a topic record (already verified against its signature): keep the winner
    /// between it and any record held for the same name, persist it, and open the
    /// partitions this node owns. Durable after the next [`Topics::flush`].
    pub fn adopt(&self, record: TopicRecord, signed: SignedRecord) -> Result<Adopted, StorageError> {
        let _guard = self.adopt_lock.lock().unwrap_or_else(|p| p.into_inner());
        let name = record.info.name.clone();
        let outcome = match self.get(&name) {
            Err(_) => Adopted::New,
            Ok(cur) if record.wins_over(&cur.record) => Adopted::Replaced,
            Ok(_) => return Ok(Adopted::Kept),
        };
        let bytes = codec::encode(&signed)
            .map_err(|e| StorageError::Io { op: "encode topic", reason: e.to_string() })?;
        let topic = open_topic(&self.ctx, &self.local_peer, record, signed)?;
        self.ctx.store.meta_put(&format!("{TOPIC_KEY_PREFIX}{name}"), &bytes)?;
        if outcome == Adopted::Replaced {
            tracing::warn!(topic = %name, "a concurrently created record for this topic won; replaced");
        } else {
            tracing::info!(topic = %name, partitions = topic.info.partitions, "topic adopted");
        }
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(topic));
        Ok(outcome)
    }

    /// Make adopted records durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.ctx.commit.flush().await
    }
}

/// The error for a name that is taken.
pub fn already_exists(name: &str) -> WireError {
    WireError::new(ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists"))
}

fn open_topic(
    ctx: &DriverContext,
    local: &str,
    record: TopicRecord,
    signed: SignedRecord,
) -> Result<Topic, StorageError> {
    let mut partitions = Vec::with_capacity(record.info.partitions as usize);
    let min_insync = record.info.config.min_insync_replicas as usize;
    for p in 0..record.info.partitions {
        let set = record.replicas.get(p as usize).cloned().unwrap_or_default();
        partitions.push(match set.iter().position(|r| r == local) {
            Some(me) => Some(Arc::new(ReplicaHandle::open(ctx, &record.info.name, p, set, me, min_insync)?)),
            None => None,
        });
    }
    Ok(Topic { info: record.info.clone(), record, signed, partitions })
}

impl Topic {
    /// Check that partition `p` exists.
    pub fn check_partition(&self, p: u32) -> Result<(), WireError> {
        if p < self.info.partitions {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!(
                "topic '{}' has {} partition(s) (0..={}); partition {p} does not exist",
                self.info.name,
                self.info.partitions,
                self.info.partitions.saturating_sub(1)
            ),
        ))
    }

    /// The replica set of partition `p`, in the record's order.
    pub fn replicas(&self, p: u32) -> &[String] {
        self.record.replicas.get(p as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// This node's replica of partition `p`, or a `NOT_LEADER_OR_FOLLOWER` error naming
    /// the replica set.
    pub fn local(&self, p: u32) -> Result<&Arc<ReplicaHandle>, WireError> {
        self.check_partition(p)?;
        self.partitions.get(p as usize).and_then(Option::as_ref).ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "{}-{p} is held by {}, not by this node",
                    self.info.name,
                    self.replicas(p).join(", ")
                ),
            )
        })
    }

    /// The replicas this node holds, with their partition numbers.
    pub fn held(&self) -> impl Iterator<Item = (u32, &Arc<ReplicaHandle>)> {
        self.partitions.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i as u32, p)))
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Spread `partitions` x `rf` replicas over `nodes` (sorted, deterministic): partition
/// `p`'s owner is `nodes[(start + p) % n]`, followed by the next `rf - 1` nodes, with
/// `start` derived from the name so that different topics start on different nodes.
pub fn place_replicas(name: &str, partitions: u32, rf: u16, nodes: &[String]) -> Vec<Vec<String>> {
    let mut nodes = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    let n = nodes.len().max(1);
    let start = meshlog_protocol::partitioner::partition_for_key(name.as_bytes(), n as u32) as usize;
    (0..partitions as usize)
        .map(|p| (0..rf as usize).filter_map(|i| nodes.get((start + p + i) % n).cloned()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::place_replicas;

    #[test]
    fn placement_spreads_owners_and_never_repeats_a_node_in_a_set() {
        let nodes: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        let r = place_replicas("orders", 6, 2, &nodes);
        assert_eq!(r.len(), 6);
        for set in &r {
            assert_eq!(set.len(), 2);
            assert_ne!(set[0], set[1]);
        }
        let mut owners: Vec<&String> = r.iter().map(|s| &s[0]).collect();
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), 3, "every node owns some partitions");
        assert_eq!(r, place_replicas("orders", 6, 2, &["b".into(), "a".into(), "c".into()]), "deterministic");
    }
}
