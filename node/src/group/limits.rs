//! The caps of the group coordinator: every collection a client can grow in it is
//! bounded, and a request over a cap is refused with a stable code before it changes
//! anything (DESIGN decision 15). The offsets log is not checked on load: only this
//! coordinator writes it, within these caps.

use meshlog_protocol::group::{CommittedOffset, JoinGroup, OffsetCommit, TopicPartition};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;

/// Groups one offsets partition (one coordinator shard) holds.
pub const MAX_GROUPS_PER_PARTITION: usize = 4096;
/// Members of one group (Kafka's `group.max.size`).
pub const MAX_MEMBERS_PER_GROUP: usize = 1000;
/// Topics one member may subscribe to.
pub const MAX_TOPICS_PER_MEMBER: usize = 1000;
/// Partitions one member may report owning in a join.
pub const MAX_OWNED_PER_MEMBER: usize = 10_000;
/// What a member's join may ask the coordinator to keep: its client id, subscribed
/// topic names and owned partitions' topic names (each owned partition counted at
/// least 8 bytes), in bytes.
pub const MAX_MEMBER_METADATA_BYTES: usize = 256 << 10;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 255;
/// Committed offsets one group keeps (distinct partitions).
pub const MAX_OFFSETS_PER_GROUP: usize = 100_000;
/// Longest commit metadata text, in bytes (Kafka's `offset.metadata.max.bytes`).
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

fn limit(msg: String) -> WireError {
    WireError::new(ErrorCode::LimitExceeded, msg)
}

/// Bytes a member's join asks the coordinator to keep (see [`MAX_MEMBER_METADATA_BYTES`]).
pub fn member_metadata_bytes(j: &JoinGroup) -> usize {
    let topics: usize = j.topics.iter().map(String::len).sum();
    let owned: usize = j.owned.iter().map(|tp| tp.topic.len().max(8)).sum();
    j.client_id.len() + topics + owned
}

/// Check a join's own size: client id, subscription, owned partitions.
pub fn check_join(j: &JoinGroup) -> Result<(), WireError> {
    if j.client_id.len() > MAX_CLIENT_ID_BYTES {
        return Err(limit(format!(
            "client id of {} bytes is longer than {MAX_CLIENT_ID_BYTES} bytes",
            j.client_id.len()
        )));
    }
    if j.topics.len() > MAX_TOPICS_PER_MEMBER {
        return Err(limit(format!(
            "a member may subscribe to at most {MAX_TOPICS_PER_MEMBER} topics, not {}",
            j.topics.len()
        )));
    }
    if j.owned.len() > MAX_OWNED_PER_MEMBER {
        return Err(limit(format!(
            "a member may own at most {MAX_OWNED_PER_MEMBER} partitions, not {}",
            j.owned.len()
        )));
    }
    let bytes = member_metadata_bytes(j);
    if bytes > MAX_MEMBER_METADATA_BYTES {
        return Err(limit(format!(
            "a member's subscription and owned partitions take {bytes} bytes, more than {MAX_MEMBER_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// Check one more member for a group of `members`.
pub fn check_new_member(group: &str, members: usize) -> Result<(), WireError> {
    if members >= MAX_MEMBERS_PER_GROUP {
        return Err(WireError::new(
            ErrorCode::GroupMaxSizeReached,
            format!("group '{group}' already has {members} members, the most a group may have"),
        ));
    }
    Ok(())
}

/// Check one more group for an offsets partition holding `groups`.
pub fn check_new_group(group: &str, groups: usize) -> Result<(), WireError> {
    if groups >= MAX_GROUPS_PER_PARTITION {
        return Err(limit(format!(
            "cannot create group '{group}': its coordinator already holds {groups} groups, \
             the most one offsets partition may hold (delete unused groups or add offsets partitions)"
        )));
    }
    Ok(())
}

/// Check a commit's own size: its metadata texts and its number of offsets.
pub fn check_commit(c: &OffsetCommit) -> Result<(), WireError> {
    if c.offsets.len() > MAX_OFFSETS_PER_GROUP {
        return Err(limit(format!(
            "a commit may carry at most {MAX_OFFSETS_PER_GROUP} offsets, not {}",
            c.offsets.len()
        )));
    }
    if let Some((tp, o)) = c.offsets.iter().find(|(_, o)| o.metadata.len() > MAX_OFFSET_METADATA_BYTES) {
        return Err(WireError::new(
            ErrorCode::OffsetMetadataTooLarge,
            format!(
                "commit metadata for {tp} is {} bytes, longer than {MAX_OFFSET_METADATA_BYTES} bytes",
                o.metadata.len()
            ),
        ));
    }
    Ok(())
}

/// Check that a group holding `held` offsets can take `new` ones (partitions it already
/// holds an offset for do not count again).
pub fn check_offsets(
    group: &str,
    held: &BTreeMap<TopicPartition, CommittedOffset>,
    new: &[(TopicPartition, CommittedOffset)],
) -> Result<(), WireError> {
    let mut added: Vec<&TopicPartition> =
        new.iter().map(|(tp, _)| tp).filter(|tp| !held.contains_key(tp)).collect();
    added.sort();
    added.dedup();
    let total = held.len() + added.len();
    if total > MAX_OFFSETS_PER_GROUP {
        return Err(limit(format!(
            "group '{group}' would hold {total} committed offsets, more than {MAX_OFFSETS_PER_GROUP}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlog_protocol::group::Assignor;

    fn join_req(owned: &[u32]) -> JoinGroup {
        JoinGroup {
            group: "g".into(),
            member_id: None,
            client_id: "c".into(),
            topics: vec!["t".into()],
            assignor: Assignor::Range,
            session_timeout_ms: 3_000,
            rebalance_timeout_ms: 10_000,
            owned: owned.iter().map(|&p| TopicPartition::new("t", p)).collect(),
        }
    }

    #[test]
    fn oversized_joins_are_refused_with_limit_exceeded() {
        let ok = join_req(&[0, 1]);
        check_join(&ok).unwrap();
        let mut topics = ok.clone();
        topics.topics = (0..=MAX_TOPICS_PER_MEMBER).map(|i| format!("t{i}")).collect();
        let mut owned = ok.clone();
        owned.owned = (0..=MAX_OWNED_PER_MEMBER as u32).map(|p| TopicPartition::new("t", p)).collect();
        let mut client = ok.clone();
        client.client_id = "c".repeat(MAX_CLIENT_ID_BYTES + 1);
        // Few topics, but long names: the byte cap.
        let mut bytes = ok.clone();
        bytes.topics = (0..MAX_TOPICS_PER_MEMBER).map(|i| format!("{i}-{}", "x".repeat(300))).collect();
        for (what, j) in [("topics", topics), ("owned", owned), ("client id", client), ("bytes", bytes)] {
            let e = check_join(&j).unwrap_err();
            assert_eq!(e.code, ErrorCode::LimitExceeded, "{what}: {e}");
        }
    }

    #[test]
    fn groups_per_partition_are_capped() {
        check_new_group("g", MAX_GROUPS_PER_PARTITION - 1).unwrap();
        let e = check_new_group("g", MAX_GROUPS_PER_PARTITION).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("cannot create group 'g'"), "{e}");
    }

    #[test]
    fn commits_are_capped_in_metadata_and_offsets_per_group() {
        let offset = |p: u32, metadata: &str| {
            (TopicPartition::new("t", p), CommittedOffset { offset: 1, metadata: metadata.into() })
        };
        let commit = |offsets| OffsetCommit { group: "g".into(), member: None, offsets };
        check_commit(&commit(vec![offset(0, &"m".repeat(MAX_OFFSET_METADATA_BYTES))])).unwrap();
        let e =
            check_commit(&commit(vec![offset(0, &"m".repeat(MAX_OFFSET_METADATA_BYTES + 1))])).unwrap_err();
        assert_eq!(e.code, ErrorCode::OffsetMetadataTooLarge);

        let max = MAX_OFFSETS_PER_GROUP as u32;
        let held: BTreeMap<TopicPartition, CommittedOffset> = (0..max - 1).map(|p| offset(p, "")).collect();
        // Re-committing held partitions, and one new one twice, fits.
        check_offsets("g", &held, &[offset(0, ""), offset(max - 1, ""), offset(max - 1, "")]).unwrap();
        let e = check_offsets("g", &held, &[offset(max - 1, ""), offset(max, "")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("would hold 100001 committed offsets"), "{e}");
    }
}
