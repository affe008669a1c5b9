//! Consumer groups on the wire: the requests a group member and an operator send, and
//! the records the coordinator keeps in the internal offsets topic.
//!
//! A group's coordinator is the leader of partition `murmur2(group) % N` of
//! [`OFFSETS_TOPIC`] (DESIGN decision 12). Membership follows Kafka's group protocol
//! (join, sync, heartbeat, leave, generations), with the assignment computed by the
//! coordinator (as in Kafka's KIP-848) from the assignor the members name.

use crate::error::{ErrorCode, WireError};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The internal, replicated, compacted topic holding committed offsets and group state.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Longest group name.
pub const MAX_GROUP_NAME_LEN: usize = 249;

/// Check a group name: 1..=249 characters of `[a-zA-Z0-9._-]`.
pub fn validate_group_name(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_GROUP_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::InvalidGroupId,
            format!("invalid group name '{name}': 1 to 249 ASCII letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// The offsets-topic partition (and so the coordinator) of a group.
pub fn coordinator_partition(group: &str, partitions: u32) -> u32 {
    crate::partitioner::partition_for_key(group.as_bytes(), partitions)
}

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

impl TopicPartition {
    /// Build one.
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// How a group's partitions are spread over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Assignor {
    /// Kafka's `range`: per topic, contiguous runs of partitions (eager).
    Range,
    /// Kafka's `roundrobin`: all partitions dealt in turn (eager).
    RoundRobin,
    /// Kafka's `cooperative-sticky`: balanced, members keep what they own, and a
    /// partition that moves is first given up by its owner (incremental).
    #[default]
    CooperativeSticky,
}

impl Assignor {
    /// Every assignor, for help texts.
    pub const ALL: [Assignor; 3] =
        [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky];

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether members keep consuming what they own through a rebalance (else they give
    /// up everything before rejoining).
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }
}

impl fmt::Display for Assignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Assignor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Assignor::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Assignor::ALL.iter().map(|a| a.name()).collect();
            format!("unknown assignor '{s}'; known: {}", names.join(", "))
        })
    }
}

/// A request about one consumer group, served by its coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRequest {
    /// Join (or rejoin) the group. Answered at once: while a rebalance is in progress
    /// the answer has no generation and the member asks again shortly (each ask counts
    /// as a heartbeat).
    Join(JoinGroup),
    /// The member's assignment in a generation.
    Sync {
        /// Group name.
        group: String,
        /// The member.
        member_id: String,
        /// The generation the member joined.
        generation: u32,
    },
    /// "Still here": renews the member's session; the answer says if a rebalance began.
    Heartbeat {
        /// Group name.
        group: String,
        /// The member.
        member_id: String,
        /// The member's generation.
        generation: u32,
    },
    /// Leave at once (the member's partitions move without waiting for its session).
    Leave {
        /// Group name.
        group: String,
        /// The member.
        member_id: String,
    },
    /// Commit offsets: acknowledged once committed in the offsets topic.
    Commit(OffsetCommit),
    /// The committed offsets of a group (all, or the partitions named).
    FetchOffsets {
        /// Group name.
        group: String,
        /// Only these partitions, if given.
        partitions: Option<Vec<TopicPartition>>,
    },
    /// Members, assignment and committed offsets.
    Describe {
        /// Group name.
        group: String,
    },
    /// The groups coordinated by one offsets-topic partition (the gateway asks every
    /// partition's leader and merges).
    List {
        /// The offsets-topic partition.
        shard: u32,
    },
    /// Delete a group without members: its committed offsets and its record (Kafka's
    /// DeleteGroups; a group with members is refused with NON_EMPTY_GROUP).
    Delete {
        /// Group name.
        group: String,
    },
}

impl GroupRequest {
    /// The offsets-topic partition (of `partitions`) whose leader serves the request.
    pub fn offsets_partition(&self, partitions: u32) -> u32 {
        match (self, self.group()) {
            (GroupRequest::List { shard }, _) => *shard,
            (_, Some(name)) => coordinator_partition(name, partitions),
            (_, None) => 0,
        }
    }

    /// The group the request is about (`None` for a listing).
    pub fn group(&self) -> Option<&str> {
        match self {
            GroupRequest::Join(j) => Some(&j.group),
            GroupRequest::Commit(c) => Some(&c.group),
            GroupRequest::Sync { group, .. }
            | GroupRequest::Heartbeat { group, .. }
            | GroupRequest::Leave { group, .. }
            | GroupRequest::FetchOffsets { group, .. }
            | GroupRequest::Describe { group }
            | GroupRequest::Delete { group } => Some(group),
            GroupRequest::List { .. } => None,
        }
    }
}

/// A join request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroup {
    /// Group name.
    pub group: String,
    /// The id the coordinator gave this member; `None` on a first join.
    pub member_id: Option<String>,
    /// A free-form name of the consuming program (shown by `group describe`).
    pub client_id: String,
    /// Topics the member reads.
    pub topics: Vec<String>,
    /// The assignor; every member of a group must name the same one.
    pub assignor: Assignor,
    /// The member is removed this long after its last heartbeat.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for this member to rejoin.
    pub rebalance_timeout_ms: u32,
    /// Partitions the member still consumes (cooperative assignors): they are not
    /// given to anyone else until the member gives them up.
    pub owned: Vec<TopicPartition>,
}

/// An offset commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    /// Group name.
    pub group: String,
    /// The committing member and its generation; `None` for an administrative commit,
    /// which only a group without members accepts.
    pub member: Option<(String, u32)>,
    /// What to commit: the next offset to read, per partition.
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
}

/// A committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset the group reads.
    pub offset: u64,
    /// Free-form text the committer attached.
    pub metadata: String,
}

/// A successful answer from a coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    /// The member's state after a join.
    Joined(JoinResult),
    /// The member's assignment.
    Assignment(Vec<TopicPartition>),
    /// A heartbeat or leave was taken.
    Ok,
    /// Offsets were committed (in the offsets log).
    Committed,
    /// Committed offsets.
    Offsets(Vec<(TopicPartition, CommittedOffset)>),
    /// One group.
    Group(GroupDescription),
    /// Groups.
    Groups(Vec<GroupListing>),
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResult {
    /// The member's id (new on a first join).
    pub member_id: String,
    /// The generation the member is part of; `None` while the rebalance goes on.
    pub generation: Option<u32>,
    /// Members in the group.
    pub members: u32,
}

/// A group's lifecycle state (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    /// No members; committed offsets may remain.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// The new generation is being written to the offsets log.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// One member, as `group describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// The program's name.
    pub client_id: String,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assigned partitions in the current generation.
    pub partitions: Vec<TopicPartition>,
}

/// A group in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// Group name.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Current generation (0 before the first rebalance).
    pub generation: u32,
    /// The assignor in use.
    pub assignor: Assignor,
    /// The coordinator's node id.
    pub coordinator: NodeId,
    /// Members.
    pub members: Vec<MemberDescription>,
    /// Committed offsets.
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListing {
    /// Group name.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Members.
    pub members: u32,
    /// The coordinator's node id.
    pub coordinator: NodeId,
}

/// The key of a record in the offsets topic (compaction keeps the latest per key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OffsetsKey {
    /// A committed offset.
    Offset {
        /// Group.
        group: String,
        /// Partition.
        tp: TopicPartition,
    },
    /// A group's membership as of its last completed rebalance.
    Group {
        /// Group.
        group: String,
    },
}

/// The value of an offset record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    /// The committed position.
    pub committed: CommittedOffset,
    /// When it was committed (ms since the epoch).
    pub commit_ms: i64,
}

/// The value of a group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    /// Generation.
    pub generation: u32,
    /// Assignor.
    pub assignor: Assignor,
    /// Members and their assignments.
    pub members: Vec<StoredMember>,
}

/// A member in a group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// The program's name.
    pub client_id: String,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Session timeout.
    pub session_timeout_ms: u32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u32,
    /// Assignment in `generation`.
    pub partitions: Vec<TopicPartition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        assert!(validate_group_name("orders-workers.v2_a").is_ok());
        for bad in ["", "a b", "x/y", &"g".repeat(250)] {
            let e = validate_group_name(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidGroupId, "{bad:?}");
        }
    }

    #[test]
    fn assignor_names_round_trip() {
        for a in Assignor::ALL {
            assert_eq!(a.name().parse::<Assignor>(), Ok(a));
        }
        assert!("sticky".parse::<Assignor>().unwrap_err().contains("cooperative-sticky"));
    }

    #[test]
    fn coordinator_partition_is_stable_and_in_range() {
        for g in ["a", "workers", "payments-eu"] {
            let p = coordinator_partition(g, 8);
            assert!(p < 8);
            assert_eq!(p, coordinator_partition(g, 8));
        }
    }
}
