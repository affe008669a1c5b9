//! The group admin APIs onto meshlog's group coordinator: DescribeGroups, ListGroups and
//! DeleteGroups (what `kafka-consumer-groups`, confluent_kafka.admin and librdkafka's
//! admin API send).
//!
//! Every group is described as a "consumer" group whose protocol is its assignor
//! (meshlog's coordinator assigns, so members' metadata is their subscription re-encoded
//! in the consumer protocol and their assignment what the coordinator gave them). A
//! group the mesh does not know is `Dead`, as Kafka answers up to DescribeGroups v5.
//! ListGroups lists the groups this node coordinates, as a Kafka broker does (clients
//! ask every broker); in `through-me` mode, where FindCoordinator names this node for
//! every group, it lists the whole mesh's groups.

use super::consumer_protocol::{encode_assignment, encode_subscription};
use super::{kafka_code, Kafka};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::group::{GroupDescription, GroupRequest, GroupResponse};
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use meshlog_protocol::{ErrorCode, WireError};

/// The protocol type of every group served (Kafka consumers' embedded protocol).
pub const PROTOCOL_TYPE: &str = "consumer";
/// What a member's host is given as: the coordinator does not keep where members
/// connect from (a member may reach it through any node).
const UNKNOWN_HOST: &str = "";

impl Kafka {
    /// DescribeGroups: each group's state, protocol and members, one answer per group.
    pub(super) async fn describe_groups(&self, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let mut out = DescribeGroupsResponse::default();
        for group_id in req.groups {
            let ask = GroupRequest::Describe { group: group_id.0.to_string() };
            let described = match self.ask(ClientRequest::Group(ask)).await {
                Ok(ClientResponse::Group(GroupResponse::Group(d))) => described(d),
                Ok(_) => failed(ErrorCode::Unknown.as_i16()),
                Err(e) if e.code == ErrorCode::GroupIdNotFound => dead(),
                Err(e) => failed(kafka_code(&e)),
            };
            out.groups.push(described.with_group_id(group_id));
        }
        out
    }

    /// ListGroups: every group of the mesh (v4+: only the states asked for).
    pub(super) async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let mut out = ListGroupsResponse::default();
        let listings = match self.ask(ClientRequest::ListGroups).await {
            Ok(ClientResponse::Group(GroupResponse::Groups(v))) => v,
            Ok(_) => return out.with_error_code(ErrorCode::Unknown.as_i16()),
            Err(e) => return out.with_error_code(kafka_code(&e)),
        };
        let wanted =
            |state: &str| req.states_filter.is_empty() || req.states_filter.iter().any(|s| &**s == state);
        // As in Kafka, a broker lists the groups it coordinates (every group in
        // `through-me` mode): clients ask every broker and describe each group where
        // it was listed.
        for l in listings.into_iter().filter(|l| wanted(l.state.name()) && self.coordinates(&l.group)) {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(l.group)))
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE));
            if version >= 4 {
                g.group_state = StrBytes::from_static_str(l.state.name());
            }
            out.groups.push(g);
        }
        out
    }

    /// DeleteGroups: each group without members loses its offsets and record;
    /// NON_EMPTY_GROUP for one with members, GROUP_ID_NOT_FOUND for one unknown.
    pub(super) async fn delete_groups(&self, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut out = DeleteGroupsResponse::default();
        for group_id in req.groups_names {
            let ask = GroupRequest::Delete { group: group_id.0.to_string() };
            let code = match self.ask(ClientRequest::Group(ask)).await {
                Ok(ClientResponse::Group(GroupResponse::Ok)) => 0,
                Ok(other) => kafka_code(&WireError::new(ErrorCode::Unknown, format!("unexpected {other:?}"))),
                Err(e) => kafka_code(&e),
            };
            out.results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(code));
        }
        out
    }
}

fn described(d: GroupDescription) -> DescribedGroup {
    let members = d
        .members
        .iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(StrBytes::from_string(m.member_id.clone()))
                .with_client_id(StrBytes::from_string(m.client_id.clone()))
                .with_client_host(StrBytes::from_static_str(UNKNOWN_HOST))
                .with_member_metadata(encode_subscription(&m.topics))
                .with_member_assignment(encode_assignment(&m.partitions))
        })
        .collect();
    // An empty group has no protocol (Kafka describes it with an empty one).
    let protocol = if d.members.is_empty() { "" } else { d.assignor.name() };
    DescribedGroup::default()
        .with_group_state(StrBytes::from_static_str(d.state.name()))
        .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
        .with_protocol_data(StrBytes::from_static_str(protocol))
        .with_members(members)
}

/// A group nobody knows, as Kafka describes it (no error up to v5).
fn dead() -> DescribedGroup {
    DescribedGroup::default().with_group_state(StrBytes::from_static_str("Dead"))
}

fn failed(code: i16) -> DescribedGroup {
    DescribedGroup::default().with_error_code(code)
}
