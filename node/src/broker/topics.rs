//! The topic registry of this node: topic records persisted in the store's metadata,
//! and the open partitions of each topic.

use super::partition::Partition;
use crate::storage::{GroupCommit, StorageError, Store};
use meshlog_protocol::codec;
use meshlog_protocol::types::{
    self, TopicConfig, TopicInfo, MAX_PARTITIONS, MAX_REPLICATION_FACTOR,
};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

const TOPIC_KEY_PREFIX: &str = "topic/";

/// A topic and its open partitions.
pub struct Topic {
    /// The topic record.
    pub info: TopicInfo,
    /// Partitions, indexed by number.
    pub partitions: Vec<Arc<Partition>>,
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
}

/// All topics this node holds.
pub struct Topics {
    store: Arc<Store>,
    commit: GroupCommit,
    map: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises creations so that check-then-create is atomic.
    create_lock: tokio::sync::Mutex<()>,
}

impl Topics {
    /// Load every topic record from the store and open their partitions.
    pub fn load(store: Arc<Store>, commit: GroupCommit) -> Result<Topics, StorageError> {
        let mut map = BTreeMap::new();
        for (key, bytes) in store.meta_scan(TOPIC_KEY_PREFIX)? {
            let info: TopicInfo = match codec::decode(&bytes) {
                Ok(info) => info,
                Err(e) => {
                    tracing::error!(%key, error = %e, "unreadable topic record skipped");
                    continue;
                }
            };
            let topic = open_topic(&store, &commit, info)?;
            map.insert(topic.info.name.clone(), Arc::new(topic));
        }
        Ok(Topics {
            store,
            commit,
            map: RwLock::new(map),
            create_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The topic named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, WireError> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| {
                WireError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("unknown topic '{name}'"),
                )
            })
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Validate and create a topic; durable before it returns. `live_nodes` bounds the
    /// replication factor.
    pub async fn create(&self, req: NewTopic, live_nodes: usize) -> Result<TopicInfo, WireError> {
        types::validate_topic_name(&req.name)?;
        if req.partitions == 0 || req.partitions > MAX_PARTITIONS {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "partitions must be between 1 and {MAX_PARTITIONS}, not {}",
                    req.partitions
                ),
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
        let _guard = self.create_lock.lock().await;
        if self.get(&req.name).is_ok() {
            return Err(WireError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{}' already exists", req.name),
            ));
        }
        let info = TopicInfo {
            name: req.name,
            partitions: req.partitions,
            replication_factor: rf,
            config,
            creation_id: rand::random(),
            created_at_ms: now_ms() as u64,
        };
        let storage = |e: StorageError| WireError::new(ErrorCode::StorageError, e.to_string());
        let bytes =
            codec::encode(&info).map_err(|e| WireError::new(ErrorCode::Unknown, e.to_string()))?;
        let topic = open_topic(&self.store, &self.commit, info.clone()).map_err(storage)?;
        self.store
            .meta_put(&format!("{TOPIC_KEY_PREFIX}{}", info.name), &bytes)
            .map_err(storage)?;
        self.commit.flush().await.map_err(storage)?;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.name.clone(), Arc::new(topic));
        tracing::info!(topic = %info.name, partitions = info.partitions, "topic created");
        Ok(info)
    }
}

fn open_topic(
    store: &Arc<Store>,
    commit: &GroupCommit,
    info: TopicInfo,
) -> Result<Topic, StorageError> {
    let partitions = (0..info.partitions)
        .map(|p| Partition::open(store.clone(), commit.clone(), &info.name, p).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic { info, partitions })
}

impl Topic {
    /// Partition `p`, or a clear error naming the valid range.
    pub fn partition(&self, p: u32) -> Result<&Arc<Partition>, WireError> {
        self.partitions.get(p as usize).ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!(
                    "topic '{}' has {} partition(s) (0..={}); partition {p} does not exist",
                    self.info.name,
                    self.info.partitions,
                    self.info.partitions.saturating_sub(1)
                ),
            )
        })
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
