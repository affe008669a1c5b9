//! The classic group protocol's requests, as a librdkafka consumer sends them.

use super::{at, s, tags, topic};
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::*;
use kafka_protocol::messages::leave_group_request::*;
use kafka_protocol::messages::offset_commit_request::*;
use kafka_protocol::messages::offset_fetch_request::*;
use kafka_protocol::messages::sync_group_request::*;
use kafka_protocol::messages::*;

pub fn build(key: ApiKey, v: i16) -> Option<RequestKind> {
    Some(match key {
        ApiKey::FindCoordinator => find_coordinator(v).into(),
        ApiKey::JoinGroup => join_group(v).into(),
        ApiKey::SyncGroup => sync_group(v).into(),
        ApiKey::Heartbeat => heartbeat(v).into(),
        ApiKey::LeaveGroup => leave_group(v).into(),
        ApiKey::OffsetCommit => offset_commit(v).into(),
        ApiKey::OffsetFetch => offset_fetch(v).into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s("g1")), GroupId(s("g2"))])
            .with_include_authorized_operations(v >= 3)
            .with_unknown_tagged_fields(tags(v >= 5))
            .into(),
        ApiKey::ListGroups => ListGroupsRequest::default()
            .with_states_filter(at(v >= 4, vec![s("Stable"), s("Empty")]))
            .with_unknown_tagged_fields(tags(v >= 3))
            .into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("g1")), GroupId(s("g2"))])
            .with_unknown_tagged_fields(tags(v >= 2))
            .into(),
        _ => return None,
    })
}

fn find_coordinator(v: i16) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default()
        .with_key(at(v <= 3, s("my-group")))
        .with_key_type(at(v >= 1, 0))
        .with_coordinator_keys(at(v >= 4, vec![s("my-group"), s("other")]))
        .with_unknown_tagged_fields(tags(v >= 3))
}

fn join_group(v: i16) -> JoinGroupRequest {
    let protocols = vec![
        JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\0\x01\0\0\0\x01\0\x06orders\0\0\0\0"))
            .with_unknown_tagged_fields(tags(v >= 6)),
        JoinGroupRequestProtocol::default().with_name(s("roundrobin")).with_metadata(Bytes::new()),
    ];
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("my-group")))
        .with_session_timeout_ms(45_000)
        .with_rebalance_timeout_ms(if v >= 1 { 300_000 } else { -1 })
        .with_member_id(s("rdkafka-1b2c"))
        .with_group_instance_id(at(v >= 5, Some(s("static-1"))))
        .with_protocol_type(s("consumer"))
        .with_protocols(protocols)
        .with_unknown_tagged_fields(tags(v >= 6))
}

fn sync_group(v: i16) -> SyncGroupRequest {
    let assignments = vec![
        SyncGroupRequestAssignment::default()
            .with_member_id(s("rdkafka-1b2c"))
            .with_assignment(Bytes::from_static(b"\0\x01\0\0\0\x01\0\x06orders"))
            .with_unknown_tagged_fields(tags(v >= 4)),
        SyncGroupRequestAssignment::default().with_member_id(s("rdkafka-9f8e")),
    ];
    SyncGroupRequest::default()
        .with_group_id(GroupId(s("my-group")))
        .with_generation_id(4)
        .with_member_id(s("rdkafka-1b2c"))
        .with_group_instance_id(at(v >= 3, Some(s("static-1"))))
        .with_protocol_type(at(v >= 5, Some(s("consumer"))))
        .with_protocol_name(at(v >= 5, Some(s("range"))))
        .with_assignments(assignments)
        .with_unknown_tagged_fields(tags(v >= 4))
}

fn heartbeat(v: i16) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s("my-group")))
        .with_generation_id(4)
        .with_member_id(s("rdkafka-1b2c"))
        .with_group_instance_id(at(v >= 3, Some(s("static-1"))))
        .with_unknown_tagged_fields(tags(v >= 4))
}

fn leave_group(v: i16) -> LeaveGroupRequest {
    let members = vec![
        MemberIdentity::default()
            .with_member_id(s("rdkafka-1b2c"))
            .with_group_instance_id(Some(s("static-1")))
            .with_reason(at(v >= 5, Some(s("shutting down"))))
            .with_unknown_tagged_fields(tags(v >= 4)),
        MemberIdentity::default().with_member_id(s("rdkafka-9f8e")),
    ];
    LeaveGroupRequest::default()
        .with_group_id(GroupId(s("my-group")))
        .with_member_id(at(v <= 2, s("rdkafka-1b2c")))
        .with_members(at(v >= 3, members))
        .with_unknown_tagged_fields(tags(v >= 4))
}

fn offset_commit(v: i16) -> OffsetCommitRequest {
    let partitions = vec![
        OffsetCommitRequestPartition::default()
            .with_partition_index(0)
            .with_committed_offset(42)
            .with_committed_leader_epoch(if v >= 6 { 3 } else { -1 })
            .with_committed_metadata(Some(s("app state")))
            .with_unknown_tagged_fields(tags(v >= 8)),
        OffsetCommitRequestPartition::default()
            .with_partition_index(1)
            .with_committed_offset(7)
            .with_committed_metadata(None),
    ];
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s("my-group")))
        .with_generation_id_or_member_epoch(4)
        .with_member_id(s("rdkafka-1b2c"))
        .with_group_instance_id(at(v >= 7, Some(s("static-1"))))
        .with_retention_time_ms(if v <= 4 { 86_400_000 } else { -1 })
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic("orders"))
            .with_partitions(partitions)])
        .with_unknown_tagged_fields(tags(v >= 8))
}

fn offset_fetch(v: i16) -> OffsetFetchRequest {
    let topics = vec![
        OffsetFetchRequestTopic::default()
            .with_name(topic("orders"))
            .with_partition_indexes(vec![0, 1, 2])
            .with_unknown_tagged_fields(tags(v >= 6)),
        OffsetFetchRequestTopic::default().with_name(topic("payments")),
    ];
    OffsetFetchRequest::default()
        .with_group_id(GroupId(s("my-group")))
        .with_topics(if v % 2 == 0 && v >= 2 { None } else { Some(topics) })
        .with_require_stable(v >= 7)
        .with_unknown_tagged_fields(tags(v >= 6))
}
