//! What nodes tell each other about the mesh: membership heartbeats, topic records and
//! service instances. These are hints (DESIGN.md decision 2): they say who exists, who
//! holds what and where to dial; no safety property depends on them.

use crate::types::TopicInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The gossipsub topic every node publishes heartbeats and topic records on.
pub const MESH_GOSSIP_TOPIC: &str = "meshlog/mesh/1";
/// Kademlia key prefix of topic records (`/meshlog/topic/<name>`).
pub const TOPIC_KEY_PREFIX: &str = "/meshlog/topic/";
/// Kademlia provider key prefix for partitions (`/meshlog/partition/<topic>/<p>`).
pub const PARTITION_KEY_PREFIX: &str = "/meshlog/partition/";
/// Kademlia provider key prefix for services (`/meshlog/service/<name>`).
pub const SERVICE_KEY_PREFIX: &str = "/meshlog/service/";

/// A node announcing that it is alive and where it can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's PeerId (must equal the authenticated gossip source).
    pub peer: String,
    /// Addresses it listens on.
    pub addrs: Vec<String>,
    /// Increases with every heartbeat of one incarnation.
    pub seq: u64,
    /// Changes at every start (random), so a restart is told apart from a stale message.
    pub incarnation: u64,
    /// Partitions this node holds.
    pub partitions: u32,
}

/// A topic as the mesh agrees on it: the topic, the replica set of each partition, and
/// who created it. Between two records for one name, the lower `info.creation_id` wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic.
    pub info: TopicInfo,
    /// PeerIds holding each partition, in a fixed order (a replica's index in the set).
    pub replicas: Vec<Vec<String>>,
    /// The node that created it (must equal the record's signer).
    pub creator: String,
}

impl TopicRecord {
    /// Whether `self` wins over `other` for the same name (deterministic on every node).
    pub fn wins_over(&self, other: &TopicRecord) -> bool {
        (self.info.creation_id, &self.creator) < (other.info.creation_id, &other.creator)
    }
}

/// A record signed by the node that wrote it, so it can be relayed and stored by any
/// node and still be checked: the signer's PeerId is derived from `public_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The encoded record.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The signer's public key (libp2p protobuf encoding).
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// The signature over `payload`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// One registered endpoint of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// Service name.
    pub name: String,
    /// Unique per instance (defaults to the endpoint).
    pub instance_id: String,
    /// Where to reach it (a URL).
    pub endpoint: String,
    /// Free-form `k=v` metadata.
    pub meta: BTreeMap<String, String>,
    /// The registration lapses this long after its last renewal.
    pub ttl_ms: u64,
    /// The node that holds the registration.
    pub node: String,
    /// Time left before it lapses, as seen by `node` when asked.
    pub expires_in_ms: u64,
}

/// Everything published on [`MESH_GOSSIP_TOPIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMessage {
    /// A node is alive.
    Heartbeat(Heartbeat),
    /// A topic was created (or is being re-announced).
    Topic(SignedRecord),
    /// A node is leaving on purpose.
    Leave {
        /// The leaving node (must equal the gossip source).
        peer: String,
    },
    /// A node leads these partitions (an announcement of its leases; a routing hint).
    Leases(LeaderLeases),
}

/// The partitions a node leads, announced when elected and renewed while it leads.
/// Hints for routing only: safety never depends on them (a stale one costs a retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderLeases {
    /// The leader (must equal the authenticated gossip source).
    pub leader: String,
    /// How long the announcement should be trusted, in milliseconds.
    pub lease_ms: u64,
    /// (topic, partition, epoch) of each partition it leads.
    pub partitions: Vec<(String, u32, u64)>,
}

/// One member of the mesh as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its PeerId.
    pub peer: String,
    /// Its addresses.
    pub addrs: Vec<String>,
    /// `up` or `down` (missed heartbeats) or `left`.
    pub state: String,
    /// Milliseconds since it was last heard from (0 for this node).
    pub last_seen_ms_ago: u64,
    /// Partitions it holds.
    pub partitions: u32,
}

/// `cluster status`: members and who owns which partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    /// Every member it knows, itself included.
    pub members: Vec<MemberStatus>,
    /// Topic name -> partition -> replica set.
    pub topics: BTreeMap<String, Vec<Vec<String>>>,
    /// Circuit breakers of the answering node that are not closed.
    pub breakers: Vec<BreakerStatus>,
    /// The answering node's store-and-forward outbox, per partition with queued batches.
    pub outbox: Vec<OutboxDepth>,
    /// Every partition as the answering node sees it: for a replica it holds, its own
    /// state (leader, epoch, ISR, offsets); for the others, the leader announced on
    /// gossip, with offsets unknown (`online` false).
    pub partitions: Vec<(String, crate::types::PartitionStatus)>,
}

/// Batches waiting in a node's outbox for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxDepth {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Batches queued.
    pub batches: u64,
    /// Bytes queued.
    pub bytes: u64,
}

/// A circuit breaker's state, for `cluster status` and errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerStatus {
    /// The peer.
    pub peer: String,
    /// `closed`, `open` or `half-open`.
    pub state: String,
    /// For an open breaker, milliseconds until a probe may go through.
    pub retry_in_ms: u64,
}
