//! What nodes tell each other about the mesh: membership heartbeats, topic records and
//! service instances. These are hints (DESIGN.md decision 2): they say who exists, who
//! holds what and where to dial; no safety property depends on them.

use crate::group::OFFSETS_TOPIC;
use crate::ids::{Epoch, NodeId};
pub use crate::revision::Revision;
use crate::types::{
    validate_topic_name, TopicInfo, MAX_PARTITIONS, MAX_PEER_ID_LEN, MAX_REPLICATION_FACTOR,
    MAX_REPLICA_SLOTS_PER_TOPIC,
};
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
    pub peer: NodeId,
    /// Addresses it listens on.
    pub addrs: Vec<String>,
    /// Increases with every heartbeat of one incarnation.
    pub seq: u64,
    /// Changes at every start (random), so a restart is told apart from a stale message.
    pub incarnation: u64,
    /// Partitions this node holds.
    pub partitions: u32,
    /// The `host:port` Kafka clients reach it at (its advertised Kafka listener), if it
    /// runs one: every node lists the live ones as brokers in Kafka's Metadata.
    pub kafka: Option<String>,
}

/// A topic as the mesh agrees on it: the topic, the replica set of each partition, and
/// who created it. Between two creations of one name, the lower `info.creation_id` wins
/// while they settle; later versions of one creation are ordered by [`Revision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic.
    pub info: TopicInfo,
    /// PeerIds holding each partition, in a fixed order (a replica's index in the set).
    pub replicas: Vec<Vec<NodeId>>,
    /// The node that created it (the signer of version 0).
    pub creator: NodeId,
    /// Which incarnation and version of the topic this is. Not part of the serde form:
    /// [`crate::revision::encode_record`] writes it after the record (and a record at
    /// `Revision::default()` exactly as a node before versioning did).
    #[serde(skip)]
    pub revision: Revision,
}

/// Why a topic record was refused: it can never be adopted, from any source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic record of '{topic}' refused: {reason}")]
pub struct InvalidRecord {
    /// The name the record claims.
    pub topic: String,
    /// What is wrong with it.
    pub reason: String,
}

impl TopicRecord {
    /// Whether `self` wins over `other` for the same name (deterministic on every node).
    /// Only applies while a creation settles; see `Topics::adopt` in the node.
    pub fn wins_over(&self, other: &TopicRecord) -> bool {
        (self.info.creation_id, &self.creator) < (other.info.creation_id, &other.creator)
    }

    /// Check the record's shape: a valid name (or a known internal one), partitions and
    /// replication factor within limits, one replica set per partition of exactly
    /// `replication_factor` distinct, well-formed members, and a config valid for that
    /// replication factor. PeerIds are only checked for form here; the node parses them.
    pub fn validate(&self) -> Result<(), InvalidRecord> {
        let info = &self.info;
        let bad = |reason: String| Err(InvalidRecord { topic: truncated(&info.name), reason });
        if info.name != OFFSETS_TOPIC {
            if let Err(e) = validate_topic_name(&info.name) {
                return bad(e.message);
            }
        }
        if info.partitions == 0 || info.partitions > MAX_PARTITIONS {
            return bad(format!("{} partitions (must be 1 to {MAX_PARTITIONS})", info.partitions));
        }
        let rf = info.replication_factor;
        if rf == 0 || rf > MAX_REPLICATION_FACTOR {
            return bad(format!("replication factor {rf} (must be 1 to {MAX_REPLICATION_FACTOR})"));
        }
        if info.partitions as u64 * rf as u64 > MAX_REPLICA_SLOTS_PER_TOPIC {
            return bad(format!("more than {MAX_REPLICA_SLOTS_PER_TOPIC} replicas in all"));
        }
        if let Err(e) = info.config.validate(rf) {
            return bad(e.message);
        }
        if !is_peer_id_shaped(self.creator.as_str()) {
            return bad("its creator is not a PeerId".into());
        }
        if self.replicas.len() != info.partitions as usize {
            return bad(format!(
                "{} replica sets for {} partitions",
                self.replicas.len(),
                info.partitions
            ));
        }
        for (p, set) in self.replicas.iter().enumerate() {
            if set.len() != rf as usize {
                return bad(format!("partition {p} has {} replicas, not {rf}", set.len()));
            }
            if let Some(r) = set.iter().find(|r| !is_peer_id_shaped(r.as_str())) {
                return bad(format!(
                    "partition {p} names '{}', which is not a PeerId",
                    truncated(r.as_str())
                ));
            }
            if set.iter().enumerate().any(|(i, r)| set[..i].contains(r)) {
                return bad(format!("partition {p} names one node twice"));
            }
        }
        self.revision
            .validate(&self.replicas[0])
            .map_err(|reason| InvalidRecord { topic: truncated(&info.name), reason })
    }

    /// The PeerId whose signature this record must carry: its creator for the version
    /// created, the author (partition 0's leader) for every later version.
    pub fn signer(&self) -> &NodeId {
        if self.revision.version == 0 {
            &self.creator
        } else {
            &self.revision.author
        }
    }
}

/// Whether `s` has the form of a PeerId's text (base58, bounded length).
pub(crate) fn is_peer_id_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PEER_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l'))
}

/// A name from an untrusted record, cut short for logs.
pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
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
    pub node: NodeId,
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
        peer: NodeId,
    },
    /// A node leads these partitions (an announcement of its leases; a routing hint).
    Leases(LeaderLeases),
}

/// The partitions a node leads, announced when elected and renewed while it leads.
/// Hints for routing only: safety never depends on them (a stale one costs a retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderLeases {
    /// The leader (must equal the authenticated gossip source).
    pub leader: NodeId,
    /// How long the announcement should be trusted, in milliseconds.
    pub lease_ms: u64,
    /// (topic, partition, epoch) of each partition it leads.
    pub partitions: Vec<(String, u32, Epoch)>,
}

/// One member of the mesh as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its PeerId.
    pub peer: NodeId,
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
    pub node: NodeId,
    /// Every member it knows, itself included.
    pub members: Vec<MemberStatus>,
    /// Topic name -> partition -> replica set.
    pub topics: BTreeMap<String, Vec<Vec<NodeId>>>,
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
    pub peer: NodeId,
    /// `closed`, `open` or `half-open`.
    pub state: String,
    /// For an open breaker, milliseconds until a probe may go through.
    pub retry_in_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TopicConfig;

    const A: &str = "12D3KooWA1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    const B: &str = "12D3KooWB2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

    fn record(partitions: u32, rf: u16, replicas: Vec<Vec<NodeId>>) -> TopicRecord {
        let config = TopicConfig::from_pairs(&BTreeMap::new(), rf.max(1)).unwrap();
        let info = TopicInfo {
            name: "orders".into(),
            partitions,
            replication_factor: rf,
            config,
            creation_id: 0,
            created_at_ms: 0,
        };
        TopicRecord { info, replicas, creator: A.into(), revision: Revision::default() }
    }

    fn sets(n: u32, set: &[&str]) -> Vec<Vec<NodeId>> {
        (0..n).map(|_| set.iter().map(|s| NodeId::new(*s)).collect()).collect()
    }

    #[test]
    fn a_well_formed_record_is_valid() {
        record(2, 2, sets(2, &[A, B])).validate().unwrap();
        let mut offsets = record(1, 1, sets(1, &[A]));
        offsets.info.name = OFFSETS_TOPIC.into();
        offsets.validate().unwrap();
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut cases = vec![
            ("repeated node", record(1, 2, sets(1, &[A, A]))),
            ("set smaller than rf", record(2, 2, vec![vec![A.into(), B.into()], vec![A.into()]])),
            ("set larger than rf", record(1, 1, sets(1, &[A, B]))),
            ("missing set", record(2, 1, sets(1, &[A]))),
            ("not a peer id", record(1, 1, sets(1, &["not a peer"]))),
            ("no partitions", record(0, 1, vec![])),
            ("too many partitions", record(MAX_PARTITIONS + 1, 1, sets(MAX_PARTITIONS + 1, &[A]))),
            ("rf zero", record(1, 0, vec![vec![]])),
        ];
        let mut reserved = record(1, 1, sets(1, &[A]));
        reserved.info.name = "__takeover".into();
        cases.push(("reserved name", reserved));
        let mut weak = record(1, 2, sets(1, &[A, B]));
        weak.info.config.min_insync_replicas = 1;
        cases.push(("min.insync below a majority", weak));
        let mut anon = record(1, 1, sets(1, &[A]));
        anon.creator = NodeId::none();
        cases.push(("no creator", anon));
        for (what, r) in cases {
            assert!(r.validate().is_err(), "{what} was accepted");
        }
    }
}
