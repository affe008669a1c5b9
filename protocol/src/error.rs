//! Stable numeric error codes and the error value that travels over the wire.
//!
//! Codes reuse Apache Kafka's numbers where Kafka has the same error, so that a Kafka
//! wire-protocol front door can pass them through unchanged. meshlog-only errors use
//! codes from 1000 up. A code, once published, never changes meaning.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a request failed. The numeric value is part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// An error the server could not classify (Kafka: UNKNOWN_SERVER_ERROR).
    Unknown = -1,
    /// The requested offset is outside the partition's log.
    OffsetOutOfRange = 1,
    /// A record batch failed its CRC or structural checks.
    CorruptMessage = 2,
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 3,
    /// This node does not lead the partition; the error message names the leader if known.
    NotLeaderOrFollower = 6,
    /// The request did not complete in time.
    RequestTimedOut = 7,
    /// A record batch is larger than the topic's `max.message.bytes`.
    MessageTooLarge = 10,
    /// The topic name is not valid.
    InvalidTopic = 17,
    /// Fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas = 19,
    /// The request names a wire version this node does not speak.
    UnsupportedVersion = 35,
    /// A topic with this name already exists.
    TopicAlreadyExists = 36,
    /// The partition count is not valid.
    InvalidPartitions = 37,
    /// The replication factor is not valid.
    InvalidReplicationFactor = 38,
    /// A topic configuration key or value is not valid.
    InvalidConfig = 40,
    /// The request is malformed or inconsistent.
    InvalidRequest = 42,
    /// The node's storage failed (disk full, I/O error); nothing was acknowledged.
    StorageError = 56,
    /// The partition's owner cannot be reached right now; retry later.
    LeaderNotAvailable = 5,
    /// An idempotent producer skipped sequence numbers.
    OutOfOrderSequenceNumber = 45,
    /// An idempotent producer's epoch is older than one already seen.
    InvalidProducerEpoch = 47,
    /// The request names a leader epoch older than the replica's: the client's view of
    /// the partition is stale (refresh it and retry).
    FencedLeaderEpoch = 74,
    /// The request names a leader epoch newer than the replica knows: this replica is
    /// behind (retry, or ask another replica).
    UnknownLeaderEpoch = 75,
    /// The group coordinator is reading its state from the offsets log; retry shortly.
    CoordinatorLoadInProgress = 14,
    /// No node coordinates the group right now (the offsets partition has no leader).
    CoordinatorNotAvailable = 15,
    /// This node does not coordinate the group.
    NotCoordinator = 16,
    /// The member's generation is not the group's current one: rejoin.
    IllegalGeneration = 22,
    /// The member names another assignor than the group uses.
    InconsistentGroupProtocol = 23,
    /// The group name is not valid.
    InvalidGroupId = 24,
    /// The coordinator does not know this member (its session lapsed, or it left): rejoin.
    UnknownMemberId = 25,
    /// The session timeout is outside the coordinator's bounds.
    InvalidSessionTimeout = 26,
    /// The group is rebalancing: rejoin.
    RebalanceInProgress = 27,
    /// The operation needs a group without members.
    NonEmptyGroup = 68,
    /// A follower asked for an offset above its high watermark: it is behind the
    /// leader (retry, or ask another replica).
    OffsetNotAvailable = 78,
    /// No such group.
    GroupIdNotFound = 69,
    /// The sender is not admitted for this request: a client (or an unproven peer) used
    /// a node's protocol, or a closed mesh refused its credential.
    ClusterAuthorizationFailed = 31,
    /// The node is shutting down or overloaded; retry elsewhere or later.
    Unavailable = 1000,
    /// No such service registration.
    UnknownService = 1001,
    /// The store-and-forward outbox is at its size bound.
    OutboxFull = 1002,
    /// A member committed an offset for a partition that is not assigned to it.
    PartitionNotAssigned = 1003,
    /// The request breaks a limit of the mesh (topics, partitions, services held), not a
    /// rate: retrying the same request will fail again.
    PolicyViolation = 44,
    /// The client created topics or partitions faster than its quota allows; retry after
    /// the quota window.
    ThrottlingQuotaExceeded = 89,
    /// The service instance was registered by another client or node: only the principal
    /// that registered it may overwrite or remove it.
    NotOwner = 1004,
    /// A bounded collection is full (groups per coordinator, committed offsets per
    /// group, topics or owned partitions per member): the request changed nothing.
    LimitExceeded = 1005,
    /// The group has as many members as its coordinator allows (Kafka:
    /// GROUP_MAX_SIZE_REACHED).
    GroupMaxSizeReached = 81,
    /// A commit's metadata text is longer than the coordinator allows (Kafka:
    /// OFFSET_METADATA_TOO_LARGE).
    OffsetMetadataTooLarge = 12,
    /// The partition holds no state for this idempotent producer and the batch does not
    /// start its sequence at 0 (its state was deleted with old log entries, or its first
    /// batch has not arrived yet): Kafka's UNKNOWN_PRODUCER_ID; the producer bumps its
    /// epoch and starts again at sequence 0.
    UnknownProducerId = 59,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 45] = [
        ErrorCode::Unknown,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::RequestTimedOut,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidTopic,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidRequest,
        ErrorCode::StorageError,
        ErrorCode::Unavailable,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::UnknownService,
        ErrorCode::OutOfOrderSequenceNumber,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::OutboxFull,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::IllegalGeneration,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidGroupId,
        ErrorCode::UnknownMemberId,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::RebalanceInProgress,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::PartitionNotAssigned,
        ErrorCode::OffsetNotAvailable,
        ErrorCode::ClusterAuthorizationFailed,
        ErrorCode::PolicyViolation,
        ErrorCode::ThrottlingQuotaExceeded,
        ErrorCode::NotOwner,
        ErrorCode::LimitExceeded,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::UnknownProducerId,
    ];

    /// The stable number of this code.
    pub fn as_i16(self) -> i16 {
        self as i16
    }

    /// The code for a number; numbers this build does not know map to `Unknown`.
    pub fn from_i16(n: i16) -> ErrorCode {
        Self::ALL.iter().copied().find(|c| c.as_i16() == n).unwrap_or(ErrorCode::Unknown)
    }

    /// A short, stable, human name (Kafka's spelling where shared).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Unknown => "UNKNOWN_SERVER_ERROR",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::CorruptMessage => "CORRUPT_MESSAGE",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::InvalidTopic => "INVALID_TOPIC",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::UnknownService => "UNKNOWN_SERVICE",
            ErrorCode::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::OutboxFull => "OUTBOX_FULL",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::PartitionNotAssigned => "PARTITION_NOT_ASSIGNED",
            ErrorCode::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
            ErrorCode::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
            ErrorCode::PolicyViolation => "POLICY_VIOLATION",
            ErrorCode::ThrottlingQuotaExceeded => "THROTTLING_QUOTA_EXCEEDED",
            ErrorCode::NotOwner => "NOT_OWNER",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            ErrorCode::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            ErrorCode::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::Unavailable
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::OffsetNotAvailable
                | ErrorCode::ThrottlingQuotaExceeded
        )
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i16(self.as_i16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i16::deserialize(d).map(ErrorCode::from_i16)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_i16())
    }
}

/// A failed request as the server reports it: a stable code and a message naming the
/// problem ("topic 'orders' has 3 partitions; partition 7 does not exist").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct WireError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl WireError {
    /// A wire error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_i16()), "duplicate code {c}");
            assert_eq!(ErrorCode::from_i16(c.as_i16()), c);
        }
        assert_eq!(ErrorCode::from_i16(12345), ErrorCode::Unknown);
    }

    #[test]
    fn codes_match_kafka_numbers() {
        assert_eq!(ErrorCode::OffsetOutOfRange.as_i16(), 1);
        assert_eq!(ErrorCode::UnknownTopicOrPartition.as_i16(), 3);
        assert_eq!(ErrorCode::MessageTooLarge.as_i16(), 10);
        assert_eq!(ErrorCode::NotEnoughReplicas.as_i16(), 19);
        assert_eq!(ErrorCode::TopicAlreadyExists.as_i16(), 36);
        assert_eq!(ErrorCode::IllegalGeneration.as_i16(), 22);
        assert_eq!(ErrorCode::UnknownMemberId.as_i16(), 25);
        assert_eq!(ErrorCode::RebalanceInProgress.as_i16(), 27);
        assert_eq!(ErrorCode::GroupIdNotFound.as_i16(), 69);
        assert_eq!(ErrorCode::ClusterAuthorizationFailed.as_i16(), 31);
        assert_eq!(ErrorCode::PolicyViolation.as_i16(), 44);
        assert_eq!(ErrorCode::ThrottlingQuotaExceeded.as_i16(), 89);
        assert_eq!(ErrorCode::NotOwner.as_i16(), 1004);
        assert!(ErrorCode::ThrottlingQuotaExceeded.is_retriable());
        assert!(!ErrorCode::PolicyViolation.is_retriable());
        assert_eq!(ErrorCode::GroupMaxSizeReached.as_i16(), 81);
        assert_eq!(ErrorCode::OffsetMetadataTooLarge.as_i16(), 12);
        assert_eq!(ErrorCode::OutOfOrderSequenceNumber.as_i16(), 45);
        assert_eq!(ErrorCode::InvalidProducerEpoch.as_i16(), 47);
        assert_eq!(ErrorCode::UnknownProducerId.as_i16(), 59);
    }

    #[test]
    fn meshlog_codes_are_stable() {
        // A busy node's answer: retriable, since the request was never started.
        assert_eq!(ErrorCode::Unavailable.as_i16(), 1000);
        assert!(ErrorCode::Unavailable.is_retriable());
        assert_eq!(ErrorCode::LimitExceeded.as_i16(), 1005);
        assert!(!ErrorCode::LimitExceeded.is_retriable());
        assert!(!ErrorCode::GroupMaxSizeReached.is_retriable());
    }
}
