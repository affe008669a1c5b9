//! The request/response enums of meshlog's two APIs.
//!
//! - The **client API** (`/meshlog/client/1`): what the CLI and programs ask a node.
//!   Any node answers it.
//! - The **peer API** (`/meshlog/peer/1`): what nodes ask each other. Today it carries
//!   forwarded client requests; replication and elections join it later.
//!
//! Record data travels as Kafka v2 record batch bytes ([`crate::batch`]), never
//! re-encoded: `serde_bytes` keeps them a single length-prefixed blob.

use crate::error::WireError;
use crate::group::{GroupRequest, GroupResponse};
use crate::ids::Epoch;
use crate::mesh::{ClusterStatus, ServiceInstance, SignedRecord};
use crate::types::{Acks, OffsetSpec, PartitionStatus, TopicDescription, TopicInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request from a client to any node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Create a topic.
    CreateTopic {
        /// Topic name (see [`crate::types::validate_topic_name`]).
        name: String,
        /// Number of partitions.
        partitions: u32,
        /// Copies of each partition; [`AUTO_REPLICATION_FACTOR`] (0) for
        /// min(3, the nodes in the mesh at creation).
        replication_factor: u16,
        /// Kafka-style `k=v` configuration over the defaults.
        config: BTreeMap<String, String>,
    },
    /// List every topic.
    ListTopics,
    /// One topic with the state of each partition.
    DescribeTopic {
        /// Topic name.
        name: String,
    },
    /// Append one record batch to a partition.
    Produce(ProduceRequest),
    /// Read record batches from a partition.
    Fetch(FetchRequest),
    /// Look up an offset of a partition.
    ListOffsets {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: u32,
        /// Which offset.
        spec: OffsetSpec,
    },
    /// Register (or renew) a service endpoint, held by the node asked.
    RegisterService(ServiceRegistration),
    /// Remove a registration made through the node asked.
    DeregisterService {
        /// Service name.
        name: String,
        /// The instance to remove.
        instance_id: String,
    },
    /// The live endpoints of a service, from the whole mesh.
    DiscoverService {
        /// Service name.
        name: String,
    },
    /// Every live service instance in the mesh.
    ListServices,
    /// Members, their addresses and who owns which partition.
    ClusterStatus,
    /// A consumer-group request, served by the group's coordinator.
    Group(GroupRequest),
    /// Every consumer group in the mesh.
    ListGroups,
    /// Delete a topic: its data on every node, its offsets in every group. Served by
    /// the leader of its partition 0, which signs the tombstone.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Add partitions to a topic or change its config. Served by the leader of its
    /// partition 0, which signs the new version.
    AlterTopic(AlterTopic),
    /// Where leader epoch `epoch` ends in a partition's log, answered by its leader
    /// from its epoch history (Kafka's OffsetForLeaderEpoch: a consumer checks that the
    /// records it read were not truncated away by a leader change).
    EpochEnd {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: u32,
        /// The epoch asked about.
        epoch: Epoch,
        /// The leader epoch the client believes current, if it tracks one (checked as
        /// for a produce).
        leader_epoch: Option<Epoch>,
    },
}

/// `replication_factor` of a [`ClientRequest::CreateTopic`] that asks for min(3, the
/// nodes in the mesh when the topic is created).
pub const AUTO_REPLICATION_FACTOR: u16 = 0;

/// A change to a topic: more partitions, config values, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterTopic {
    /// Topic name.
    pub name: String,
    /// The partition count wanted (more than it has; partitions are never removed).
    pub partitions: Option<u32>,
    /// `k=v` config values to set over the topic's current ones (`min.insync.replicas`
    /// excepted).
    pub config: BTreeMap<String, String>,
    /// Check the change and answer with the topic it would make, without making it.
    pub validate_only: bool,
}

/// A service registration or renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRegistration {
    /// Service name (same rules as topic names).
    pub name: String,
    /// Instance id; the endpoint if not given.
    pub instance_id: Option<String>,
    /// Where to reach the instance.
    pub endpoint: String,
    /// Lapses this long after the last renewal.
    pub ttl_ms: u64,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
}

/// Append one Kafka v2 record batch to one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRequest {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// When to answer.
    pub acks: Acks,
    /// Give up (and say so) if the write is not acknowledged within this time.
    pub timeout_ms: u32,
    /// The leader epoch the client believes current, if it tracks one: a leader of a
    /// later epoch answers `FENCED_LEADER_EPOCH`, a replica of an earlier one
    /// `UNKNOWN_LEADER_EPOCH`, and nothing is written.
    pub leader_epoch: Option<Epoch>,
    /// One record batch, magic 2; its base offset is assigned by the leader.
    #[serde(with = "serde_bytes")]
    pub batch: Vec<u8>,
}

/// Read batches from `offset` on, waiting up to `max_wait_ms` for data if there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The first offset wanted.
    pub offset: u64,
    /// Stop adding batches past this many bytes (at least one batch is always returned).
    pub max_bytes: u32,
    /// Long-poll: how long to wait for new data when there is none yet.
    pub max_wait_ms: u32,
    /// The leader epoch the client believes current, if it tracks one (checked as for
    /// a produce).
    pub leader_epoch: Option<Epoch>,
}

/// A successful answer to a [`ClientRequest`]; errors travel as [`WireError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The topic was created.
    TopicCreated(TopicInfo),
    /// Every topic.
    Topics(Vec<TopicInfo>),
    /// One topic in detail.
    Topic(TopicDescription),
    /// A batch was appended.
    Produced(ProduceResponse),
    /// Batches read.
    Fetched(FetchResponse),
    /// An offset looked up.
    Offset {
        /// The offset found.
        offset: u64,
    },
    /// A service instance was registered or renewed.
    ServiceRegistered(ServiceInstance),
    /// A registration was removed.
    ServiceDeregistered,
    /// Live service instances.
    Services(Vec<ServiceInstance>),
    /// The mesh as the answering node sees it.
    Cluster(ClusterStatus),
    /// A coordinator's answer.
    Group(GroupResponse),
    /// A topic was deleted or altered: the topic as it is now (a deleted one as it was).
    TopicChanged(TopicInfo),
    /// Where an epoch ends; `None` if it is later than every epoch the leader knows.
    EpochEnd(Option<EpochEnd>),
}

/// The end of a leader epoch in a partition's log, as Kafka's OffsetForLeaderEpoch
/// answers: the largest epoch at or below the one asked that the log holds, and where it
/// ends (the first offset of the next later epoch, or the log end for the leader's
/// current one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEnd {
    /// The largest epoch at or below the one asked (the one asked if the log holds none
    /// at or below it).
    pub epoch: Epoch,
    /// One past its last offset.
    pub end_offset: u64,
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceResponse {
    /// Offset of the batch's first record (for `acks=0`: not yet known, `None`).
    pub base_offset: Option<u64>,
    /// Number of records in the batch.
    pub record_count: u32,
    /// `acks=local` only: stored in the answering node's outbox, not yet in the log.
    pub accepted_locally: bool,
    /// An idempotent producer's retry of a batch already in the log (`base_offset` is
    /// the original's).
    pub duplicate: bool,
}

/// Batches read from a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// Everything below this offset is committed and readable.
    pub high_watermark: u64,
    /// The oldest offset still kept.
    pub log_start_offset: u64,
    /// Whole record batches, concatenated, exactly as stored. The first batch may start
    /// before the requested offset; the reader skips records below it.
    #[serde(with = "serde_bytes")]
    pub records: Vec<u8>,
}

/// The answer to a client request as it travels.
pub type ClientResult = Result<ClientResponse, WireError>;

/// A request from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Serve this client request on the client's behalf (the mesh as API gateway).
    Forward(ClientRequest),
    /// Every topic record the asked node holds (anti-entropy on join).
    TopicRecords,
    /// Live service instances registered at the asked node (all, or of one name).
    LocalServices {
        /// Only this service, if given.
        name: Option<String>,
    },
    /// The state of the partitions of `topic` that the asked node holds a replica of.
    PartitionStatuses {
        /// Topic name.
        topic: String,
    },
    /// A message between two replicas of one partition (one way; answered with
    /// [`PeerResponse::Replicated`] on receipt). Nodes now send these on replication
    /// streams instead; a request is still accepted from an older node.
    Replicate(ReplicateMessage),
}

/// One replication message: the replica protocol's message, encoded by the node, and
/// for a fetch answer the stored batches it carries, concatenated in offset order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateMessage {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The replica protocol message.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// Record batches (Kafka v2, as stored), back to back.
    #[serde(with = "serde_bytes")]
    pub records: Vec<u8>,
}

/// Replication messages from one node to another, sent together as one frame on a
/// `/meshlog/replicate/2` stream: what every replica of the sender had for that peer
/// within one short window (heartbeats, fetches, fetch answers of many partitions),
/// in the order the replicas sent them. The receiver hands each to its replica as if it
/// had come alone. (A `/meshlog/replicate/1` stream carries single [`ReplicateMessage`]s.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateBundle {
    /// The messages, in the order they were sent.
    pub messages: Vec<ReplicateMessage>,
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// The forwarded request's result.
    Forwarded(ClientResult),
    /// Topic records, each signed by its creator.
    TopicRecords(Vec<SignedRecord>),
    /// Service instances.
    Services(Vec<ServiceInstance>),
    /// Partition states.
    Partitions(Vec<PartitionStatus>),
    /// A replication message was received (it is handled asynchronously).
    Replicated,
    /// The request could not be served.
    Error(WireError),
}
