//! Small value types shared by requests and responses: acks levels, offset specs, topic
//! configuration (with its validation, so every program agrees on what is valid), and
//! topic and partition descriptions.

use crate::error::{ErrorCode, WireError};
use crate::ids::{Epoch, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The longest topic name, as in Kafka.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// The largest replication factor.
pub const MAX_REPLICATION_FACTOR: u16 = 16;
/// The most topics one node holds records of. Every record is kept in memory, persisted
/// and sent whole to each new connection, so the registry must stay small; Kafka's own
/// guidance is a few thousand topics per cluster.
pub const MAX_TOPICS: usize = 10_000;
/// The most partitions, summed over every topic, a node accepts records for. Each is a
/// replica set in memory and, where this node is a member, an open replica at every start
/// (the "victim in 100,000 replica sets"). Kafka's KRaft guidance is ~200,000 per
/// cluster on large machines; meshlog nodes are small.
pub const MAX_TOTAL_PARTITIONS: u64 = 100_000;
/// The most replica slots (partitions x replication factor) of one topic: bounds a
/// record's size (a PeerId is ~52 bytes, so ~3 MiB at most), well below the peer frame.
pub const MAX_REPLICA_SLOTS_PER_TOPIC: u64 = 60_000;
/// The longest PeerId text accepted in a record (base58 of a 38-byte multihash is 52).
pub const MAX_PEER_ID_LEN: usize = 128;
/// Default `max.message.bytes`: the largest record batch a topic accepts (Kafka's default).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1_048_588;
/// Hard ceiling on `max.message.bytes`; storage keeps batches this large inline.
pub const MAX_MESSAGE_BYTES_CEILING: u32 = 1 << 21;

/// When a produce request is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// `acks=0`: answered as soon as the request is read; nothing is promised.
    None,
    /// `acks=1`: the leader has flushed the batch to its disk.
    Leader,
    /// `acks=all`: every in-sync replica has flushed it (on one node: the node has).
    All,
    /// `acks=local`: like `all` when the partition's leader can be reached; when it
    /// cannot, the node the client talks to stores the batch durably in its outbox,
    /// answers "accepted locally", and delivers it (in order, exactly once) when the
    /// leader is reachable again.
    Local,
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            "local" => Ok(Acks::Local),
            other => Err(format!("acks must be 0, 1, all or local, not '{other}'")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
            Acks::Local => "local",
        })
    }
}

/// Which offset a `ListOffsets` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetSpec {
    /// The log start offset (the oldest record still kept).
    Earliest,
    /// The next offset to be written (the high watermark).
    Latest,
    /// The first offset whose batch's max timestamp is at or after this time (ms).
    Timestamp(i64),
}

/// Default `delete.retention.ms`: how long a tombstone is kept once it is the latest
/// record of its key (Kafka's default, one day).
pub const DEFAULT_DELETE_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// `cleanup.policy`: what happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CleanupPolicy {
    /// `delete`: batches past `retention.ms` or `retention.bytes` are deleted.
    #[default]
    Delete,
    /// `compact`: only the latest record of each key is kept (and a tombstone, the
    /// latest record with a null value, only for `delete.retention.ms`); time and size
    /// retention do not apply.
    Compact,
}

impl CleanupPolicy {
    /// The config value, as Kafka spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

impl std::str::FromStr for CleanupPolicy {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delete" => Ok(CleanupPolicy::Delete),
            "compact" => Ok(CleanupPolicy::Compact),
            _ => Err("must be delete or compact"),
        }
    }
}

/// A topic's configuration. Keys follow Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// `retention.ms`: delete batches older than this; `None` keeps them forever.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: per partition, delete oldest batches past this size.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: u32,
    /// `min.insync.replicas`: replicas that must hold an `acks=all` write.
    pub min_insync_replicas: u16,
    /// `cleanup.policy`: delete old batches, or compact by key.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: with `compact`, how long a tombstone is kept once it is
    /// the latest record of its key (so consumers that are behind still see it).
    pub delete_retention_ms: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            min_insync_replicas: 1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
        }
    }
}

impl TopicConfig {
    /// The keys `topic create --config k=v` accepts.
    pub const KEYS: [&'static str; 6] = [
        "retention.ms",
        "retention.bytes",
        "max.message.bytes",
        "min.insync.replicas",
        "cleanup.policy",
        "delete.retention.ms",
    ];

    /// Build a config from `k=v` pairs over the defaults, then validate it against the
    /// replication factor. Unknown keys and bad values are `InvalidConfig` errors.
    pub fn from_pairs(
        pairs: &BTreeMap<String, String>,
        replication_factor: u16,
    ) -> Result<TopicConfig, WireError> {
        let mut cfg = TopicConfig::default();
        if replication_factor > 1 {
            cfg.min_insync_replicas = replication_factor / 2 + 1;
        }
        for (k, v) in pairs {
            cfg.set(k, v)?;
        }
        cfg.validate(replication_factor)?;
        Ok(cfg)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), WireError> {
        let bad = |why: &str| {
            WireError::new(ErrorCode::InvalidConfig, format!("config {key}={value}: {why}"))
        };
        let num = || value.parse::<i64>().map_err(|_| bad("not an integer"));
        match key {
            "retention.ms" => self.retention_ms = non_negative_or_forever(num()?).map_err(&bad)?,
            "retention.bytes" => {
                self.retention_bytes = non_negative_or_forever(num()?).map_err(&bad)?
            }
            "max.message.bytes" => {
                self.max_message_bytes = u32::try_from(num()?).map_err(|_| bad("out of range"))?
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = u16::try_from(num()?).map_err(|_| bad("out of range"))?
            }
            "cleanup.policy" => self.cleanup_policy = value.parse().map_err(bad)?,
            "delete.retention.ms" => {
                self.delete_retention_ms =
                    u64::try_from(num()?).map_err(|_| bad("must not be negative"))?
            }
            _ => {
                return Err(bad(&format!("unknown key; known keys are {}", Self::KEYS.join(", "))))
            }
        }
        Ok(())
    }

    /// Check the relations between values and the replication factor.
    pub fn validate(&self, replication_factor: u16) -> Result<(), WireError> {
        let err = |m: String| Err(WireError::new(ErrorCode::InvalidConfig, m));
        if self.max_message_bytes < 128 || self.max_message_bytes > MAX_MESSAGE_BYTES_CEILING {
            return err(format!(
                "max.message.bytes={} must be between 128 and {MAX_MESSAGE_BYTES_CEILING}",
                self.max_message_bytes
            ));
        }
        let majority = replication_factor / 2 + 1;
        if self.min_insync_replicas < majority || self.min_insync_replicas > replication_factor {
            return err(format!(
                "min.insync.replicas={} must be at least a majority ({majority}) of the \
                 replication factor {replication_factor} and at most {replication_factor}, so \
                 that every acks=all write survives any election",
                self.min_insync_replicas
            ));
        }
        Ok(())
    }

    /// The config as `k=v` pairs, for display.
    pub fn to_pairs(&self) -> BTreeMap<String, String> {
        let forever = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        BTreeMap::from([
            ("retention.ms".to_string(), forever(self.retention_ms)),
            ("retention.bytes".to_string(), forever(self.retention_bytes)),
            ("max.message.bytes".to_string(), self.max_message_bytes.to_string()),
            ("min.insync.replicas".to_string(), self.min_insync_replicas.to_string()),
            ("cleanup.policy".to_string(), self.cleanup_policy.as_str().to_string()),
            ("delete.retention.ms".to_string(), self.delete_retention_ms.to_string()),
        ])
    }
}

/// Kafka's convention: -1 means "no limit".
fn non_negative_or_forever(v: i64) -> Result<Option<u64>, &'static str> {
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err("must be -1 (no limit) or a non-negative integer"),
    }
}

/// Check a new topic's partitions and replication factor against the bounds and the
/// `live_nodes` of the mesh (every path that creates or validates a topic uses this).
pub fn validate_topic_shape(partitions: u32, rf: u16, live_nodes: usize) -> Result<(), WireError> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(WireError::new(
            ErrorCode::InvalidPartitions,
            format!("partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}"),
        ));
    }
    if rf == 0 || rf > MAX_REPLICATION_FACTOR || rf as usize > live_nodes {
        return Err(WireError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "replication factor {rf} is not possible: it must be between 1 and \
                 {MAX_REPLICATION_FACTOR} and at most the {live_nodes} live node(s) of the mesh"
            ),
        ));
    }
    if partitions as u64 * rf as u64 > MAX_REPLICA_SLOTS_PER_TOPIC {
        return Err(WireError::new(
            ErrorCode::PolicyViolation,
            format!(
                "{partitions} partitions x replication factor {rf} is more than the \
                 {MAX_REPLICA_SLOTS_PER_TOPIC} replicas one topic may have"
            ),
        ));
    }
    Ok(())
}

/// Check a topic name: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`, not
/// starting with `__` (reserved for internal topics).
pub fn validate_topic_name(name: &str) -> Result<(), WireError> {
    let err = |why: &str| {
        Err(WireError::new(ErrorCode::InvalidTopic, format!("invalid topic name '{name}': {why}")))
    };
    if name.is_empty() || name.len() > MAX_TOPIC_NAME_LEN {
        return err("must be 1 to 249 characters");
    }
    if name == "." || name == ".." {
        return err("'.' and '..' are not allowed");
    }
    if name.starts_with("__") {
        return err("names starting with '__' are reserved for internal topics");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A topic as the mesh knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Number of partitions, numbered `0..partitions`.
    pub partitions: u32,
    /// Copies kept of each partition.
    pub replication_factor: u16,
    /// The topic's configuration.
    pub config: TopicConfig,
    /// A unique id of this creation; deciding between concurrent creations.
    pub creation_id: u64,
    /// When it was created (wall clock, ms since the Unix epoch; informational only).
    pub created_at_ms: u64,
}

/// The state of one partition, for `topic describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// Partition number.
    pub partition: u32,
    /// The node that leads it (its PeerId as text; none if no leader is known).
    pub leader: NodeId,
    /// The leader's epoch (0: none elected yet).
    pub epoch: Epoch,
    /// The replica set, in the topic record's order.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas, as the leader sees them.
    pub isr: Vec<NodeId>,
    /// The oldest offset still kept.
    pub log_start_offset: u64,
    /// The next offset a consumer can see (everything below it is committed).
    pub high_watermark: u64,
    /// The next offset to be written.
    pub log_end_offset: u64,
    /// Bytes of stored batches.
    pub size_bytes: u64,
    /// False when the owner did not answer: the offsets above are unknown (zero).
    pub online: bool,
    /// Nodes the DHT lists as holding this partition (provider records; hints).
    pub holders: Vec<NodeId>,
}

impl PartitionStatus {
    /// A partition whose state is not known here: no leader, offsets unknown (`online`
    /// false).
    pub fn unknown(partition: u32, replicas: &[NodeId]) -> PartitionStatus {
        PartitionStatus {
            partition,
            leader: NodeId::none(),
            epoch: Epoch::ZERO,
            replicas: replicas.to_vec(),
            isr: Vec::new(),
            log_start_offset: 0,
            high_watermark: 0,
            log_end_offset: 0,
            size_bytes: 0,
            online: false,
            holders: Vec::new(),
        }
    }
}

/// A topic and the state of each of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// The topic.
    pub topic: TopicInfo,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn config_typos_are_named() {
        let e = TopicConfig::from_pairs(&pairs(&[("retention.mss", "5")]), 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.message.contains("retention.mss"), "{e}");
    }

    #[test]
    fn min_insync_must_be_a_majority() {
        assert!(TopicConfig::from_pairs(&pairs(&[("min.insync.replicas", "1")]), 3).is_err());
        let cfg = TopicConfig::from_pairs(&pairs(&[]), 3).unwrap();
        assert_eq!(cfg.min_insync_replicas, 2);
        assert!(TopicConfig::from_pairs(&pairs(&[("min.insync.replicas", "4")]), 3).is_err());
    }

    #[test]
    fn retention_minus_one_means_forever() {
        let cfg = TopicConfig::from_pairs(&pairs(&[("retention.ms", "-1")]), 1).unwrap();
        assert_eq!(cfg.retention_ms, None);
        assert!(TopicConfig::from_pairs(&pairs(&[("retention.ms", "-2")]), 1).is_err());
    }

    #[test]
    fn cleanup_policy_and_delete_retention() {
        let cfg = TopicConfig::from_pairs(&pairs(&[]), 1).unwrap();
        assert_eq!(cfg.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(cfg.delete_retention_ms, DEFAULT_DELETE_RETENTION_MS);
        let kv = [("cleanup.policy", "compact"), ("delete.retention.ms", "1000")];
        let cfg = TopicConfig::from_pairs(&pairs(&kv), 1).unwrap();
        assert_eq!(cfg.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(cfg.delete_retention_ms, 1000);
        // to_pairs reads back as the same config.
        assert_eq!(TopicConfig::from_pairs(&cfg.to_pairs(), 1).unwrap(), cfg);
        for bad in [("cleanup.policy", "compact,delete"), ("delete.retention.ms", "-1")] {
            let e = TopicConfig::from_pairs(&pairs(&[bad]), 1).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(e.message.contains(bad.0), "{e}");
        }
    }

    #[test]
    fn config_survives_bincode() {
        let cfg = TopicConfig { cleanup_policy: CleanupPolicy::Compact, ..TopicConfig::default() };
        let bytes = crate::codec::encode(&cfg).unwrap();
        assert_eq!(crate::codec::decode::<TopicConfig>(&bytes).unwrap(), cfg);
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "__offsets", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
