//! The classic group APIs onto meshlog's group coordinator (`GroupRequest` through the
//! gateway). meshlog's coordinator computes assignments itself from the assignor the
//! members name (range, roundrobin, cooperative-sticky), so every Kafka member is told
//! it is a follower (the JoinGroup `leader` is [`COORDINATOR_LEADER`], never a member):
//! it sends an empty SyncGroup and gets the coordinator's assignment, encoded in the
//! consumer protocol. Kafka and meshlog consumers can share a group.
//!
//! FindCoordinator names this node ("route through me": the gateway routes each group
//! request to the leader of the group's `__consumer_offsets` partition). A JoinGroup
//! waits here, asking again every [`JOIN_POLL`], until the generation forms (meshlog's
//! join answers at once; Kafka's blocks).

use super::consumer_protocol::{encode_assignment, parse_subscription};
use super::{kafka_code, Kafka};
use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupRequest, GroupResponse, JoinGroup, OffsetCommit, TopicPartition,
};
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The JoinGroup `leader` every member is given: no member runs an assignor.
pub const COORDINATOR_LEADER: &str = "meshlog-coordinator";
/// How often a waiting JoinGroup asks the coordinator again.
pub const JOIN_POLL: Duration = Duration::from_millis(100);
/// The longest a JoinGroup waits for its generation (then REBALANCE_IN_PROGRESS).
pub const JOIN_WAIT_MAX: Duration = Duration::from_secs(300);
/// FindCoordinator key type of a transactional id (no transactions yet).
const KEY_TYPE_TRANSACTION: i8 = 1;

fn unexpected(other: &GroupResponse) -> WireError {
    WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}"))
}

impl Kafka {
    async fn group(&self, req: GroupRequest) -> Result<GroupResponse, WireError> {
        match self.ask(ClientRequest::Group(req)).await? {
            ClientResponse::Group(g) => Ok(g),
            other => Err(WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}"))),
        }
    }

    /// FindCoordinator: the leader of the group's offsets partition (this node in
    /// `through-me` mode); transactions have no coordinator.
    pub(super) async fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        let transactional = req.key_type == KEY_TYPE_TRANSACTION;
        let find = |key: StrBytes| async move {
            if transactional {
                return Err(ErrorCode::CoordinatorNotAvailable.as_i16());
            }
            self.coordinator(&key).await
        };
        let mut r = FindCoordinatorResponse::default();
        if version < 4 {
            match find(req.key).await {
                Ok((id, host, port)) => {
                    r.node_id = BrokerId(id);
                    r.host = StrBytes::from_string(host);
                    r.port = i32::from(port);
                }
                Err(code) => (r.error_code, r.node_id) = (code, BrokerId(-1)),
            }
            return r;
        }
        for key in req.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            r.coordinators.push(match find(key).await {
                Ok((id, host, port)) => c
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(i32::from(port)),
                Err(code) => c.with_error_code(code).with_node_id(BrokerId(-1)),
            });
        }
        r
    }

    /// JoinGroup: join through the coordinator and wait until the generation forms.
    pub(super) async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
    ) -> JoinGroupResponse {
        let mut out = JoinGroupResponse::default().with_leader(StrBytes::from_static_str(COORDINATOR_LEADER));
        if version >= 7 {
            out.protocol_type = Some(StrBytes::from_static_str("consumer"));
        }
        match self.join(req, client_id).await {
            Ok((member_id, generation, protocol)) => {
                out.member_id = StrBytes::from_string(member_id);
                out.generation_id = generation as i32;
                out.protocol_name = Some(protocol);
            }
            Err((code, member_id)) => {
                out.error_code = code;
                out.member_id = StrBytes::from_string(member_id.unwrap_or_default());
            }
        }
        out
    }

    async fn join(
        &self,
        req: JoinGroupRequest,
        client_id: &str,
    ) -> Result<(String, u32, StrBytes), (i16, Option<String>)> {
        let inconsistent = (ErrorCode::InconsistentGroupProtocol.as_i16(), None);
        if &*req.protocol_type != "consumer" {
            return Err(inconsistent);
        }
        let known: Vec<(Assignor, StrBytes, &Bytes)> = req
            .protocols
            .iter()
            .filter_map(|p| p.name.parse::<Assignor>().ok().map(|a| (a, p.name.clone(), &p.metadata)))
            .collect();
        let in_use = if known.len() > 1 { self.assignor_in_use(&req.group_id.0).await } else { None };
        let (assignor, protocol, metadata) = known
            .iter()
            .find(|(a, _, _)| Some(*a) == in_use)
            .or(known.first())
            .cloned()
            .ok_or(inconsistent.clone())?;
        let sub = parse_subscription(metadata).map_err(|_| inconsistent)?;
        let session_timeout_ms = u32::try_from(req.session_timeout_ms).unwrap_or(0);
        let rebalance_timeout_ms = u32::try_from(req.rebalance_timeout_ms).unwrap_or(session_timeout_ms);
        let wait = Duration::from_millis(u64::from(rebalance_timeout_ms) + u64::from(session_timeout_ms));
        let deadline = Instant::now() + wait.min(JOIN_WAIT_MAX);
        let mut member_id = (!req.member_id.is_empty()).then(|| req.member_id.to_string());
        loop {
            let ask = GroupRequest::Join(JoinGroup {
                group: req.group_id.0.to_string(),
                member_id: member_id.clone(),
                client_id: client_id.to_string(),
                topics: sub.topics.clone(),
                assignor,
                session_timeout_ms,
                rebalance_timeout_ms,
                owned: sub.owned.clone(),
            });
            match self.group(ask).await {
                Ok(GroupResponse::Joined(j)) => match j.generation {
                    Some(g) => return Ok((j.member_id, g, protocol)),
                    None => member_id = Some(j.member_id),
                },
                Ok(other) => return Err((kafka_code(&unexpected(&other)), member_id)),
                Err(e) => return Err((kafka_code(&e), member_id)),
            }
            if Instant::now() >= deadline {
                return Err((ErrorCode::RebalanceInProgress.as_i16(), member_id));
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
    }

    /// The assignor of a group with members: a Kafka member listing several joins with
    /// that one (as Kafka picks the protocol every member supports), so it can share a
    /// group with `meshlog consume --group` members, which name exactly one.
    async fn assignor_in_use(&self, group: &str) -> Option<Assignor> {
        match self.group(GroupRequest::Describe { group: group.to_string() }).await {
            Ok(GroupResponse::Group(d)) if !d.members.is_empty() => Some(d.assignor),
            _ => None,
        }
    }

    /// SyncGroup: the coordinator's assignment for the member (what it sends is ignored).
    pub(super) async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let mut out = SyncGroupResponse::default();
        if version >= 5 {
            out.protocol_type = Some(StrBytes::from_static_str("consumer"));
            out.protocol_name = req.protocol_name.clone();
        }
        let Ok(generation) = u32::try_from(req.generation_id) else {
            out.error_code = ErrorCode::IllegalGeneration.as_i16();
            return out;
        };
        let ask = GroupRequest::Sync {
            group: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            generation,
        };
        match self.group(ask).await {
            Ok(GroupResponse::Assignment(a)) => out.assignment = encode_assignment(&a),
            Ok(other) => out.error_code = kafka_code(&unexpected(&other)),
            Err(e) => out.error_code = kafka_code(&e),
        }
        out
    }

    /// Heartbeat: REBALANCE_IN_PROGRESS tells the member to rejoin.
    pub(super) async fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let mut out = HeartbeatResponse::default();
        let Ok(generation) = u32::try_from(req.generation_id) else {
            return out.with_error_code(ErrorCode::IllegalGeneration.as_i16());
        };
        let ask = GroupRequest::Heartbeat {
            group: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            generation,
        };
        if let Err(e) = self.group(ask).await {
            out.error_code = kafka_code(&e);
        }
        out
    }

    /// LeaveGroup: one member (v0-2) or several (v3+).
    pub(super) async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group = req.group_id.0.to_string();
        let leave = |member_id: String| {
            let group = group.clone();
            async move {
                self.group(GroupRequest::Leave { group, member_id }).await.err().map_or(0, |e| kafka_code(&e))
            }
        };
        let mut out = LeaveGroupResponse::default();
        if version < 3 {
            out.error_code = leave(req.member_id.to_string()).await;
            return out;
        }
        for m in req.members {
            let code = leave(m.member_id.to_string()).await;
            out.members.push(MemberResponse::default().with_member_id(m.member_id).with_error_code(code));
        }
        out
    }
}

impl Kafka {
    /// OffsetCommit: all partitions in one commit (it is all or nothing); partitions of
    /// topics the mesh does not know fail with UNKNOWN_TOPIC_OR_PARTITION first.
    pub(super) async fn offset_commit(&self, req: OffsetCommitRequest) -> OffsetCommitResponse {
        let known = self.partition_counts().await;
        let member_id = req.member_id.to_string();
        let member = match (member_id.is_empty(), u32::try_from(req.generation_id_or_member_epoch)) {
            (true, Err(_)) => Ok(None),
            (false, Ok(g)) => Ok(Some((member_id, g))),
            _ => Err(ErrorCode::IllegalGeneration.as_i16()),
        };
        let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
        let mut offsets = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let name = t.name.0.to_string();
                let valid =
                    known.get(&name).is_some_and(|&n| (0..n as i64).contains(&i64::from(p.partition_index)));
                let offset = u64::try_from(p.committed_offset);
                let code = match (valid, &offset) {
                    (false, _) => ErrorCode::UnknownTopicOrPartition.as_i16(),
                    (true, Err(_)) => ErrorCode::InvalidRequest.as_i16(),
                    (true, Ok(o)) => {
                        let metadata = p.committed_metadata.as_deref().unwrap_or_default().to_string();
                        let tp = TopicPartition::new(name.clone(), p.partition_index as u32);
                        offsets.push((tp, CommittedOffset { offset: *o, metadata }));
                        0
                    }
                };
                codes.insert((name, p.partition_index), code);
            }
        }
        let outcome = match member {
            Err(code) => code,
            Ok(_) if offsets.is_empty() => 0,
            Ok(member) => {
                let commit = OffsetCommit { group: req.group_id.0.to_string(), member, offsets };
                self.group(GroupRequest::Commit(commit)).await.err().map_or(0, |e| kafka_code(&e))
            }
        };
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let own = codes.get(&(name.clone(), p.partition_index)).copied().unwrap_or(0);
                        let code = if own != 0 { own } else { outcome };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Every topic's partition count, from the mesh's registry.
    async fn partition_counts(&self) -> BTreeMap<String, u32> {
        match self.ask(ClientRequest::ListTopics).await {
            Ok(ClientResponse::Topics(ts)) => ts.into_iter().map(|t| (t.name, t.partitions)).collect(),
            _ => BTreeMap::new(),
        }
    }

    /// OffsetFetch (v1-7): the partitions asked (-1 where nothing is committed), or with
    /// no list every committed partition of the group.
    pub(super) async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let wanted: Option<Vec<TopicPartition>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .flat_map(|t| {
                    let name = t.name.0.to_string();
                    t.partition_indexes
                        .iter()
                        .filter_map(move |&p| Some(TopicPartition::new(name.clone(), u32::try_from(p).ok()?)))
                })
                .collect()
        });
        let ask =
            GroupRequest::FetchOffsets { group: req.group_id.0.to_string(), partitions: wanted.clone() };
        let mut out = OffsetFetchResponse::default();
        let committed: BTreeMap<TopicPartition, CommittedOffset> = match self.group(ask).await {
            Ok(GroupResponse::Offsets(v)) => v.into_iter().collect(),
            Ok(other) => return offset_fetch_failed(out, kafka_code(&unexpected(&other)), version),
            Err(e) if e.code == ErrorCode::GroupIdNotFound => BTreeMap::new(),
            Err(e) => return offset_fetch_failed(out, kafka_code(&e), version),
        };
        let rows: Vec<TopicPartition> = wanted.unwrap_or_else(|| committed.keys().cloned().collect());
        let mut by_topic: BTreeMap<String, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
        for tp in rows {
            let mut p = OffsetFetchResponsePartition::default().with_partition_index(tp.partition as i32);
            match committed.get(&tp) {
                Some(c) => {
                    p.committed_offset = c.offset as i64;
                    p.metadata = Some(StrBytes::from_string(c.metadata.clone()));
                }
                None => p.committed_offset = -1,
            }
            by_topic.entry(tp.topic).or_default().push(p);
        }
        out.topics = by_topic
            .into_iter()
            .map(|(name, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(ps)
            })
            .collect();
        out
    }
}

/// A failed OffsetFetch: the error is top-level from v2 (v1 has no place for it: the
/// member sees nothing committed and resets per its policy).
fn offset_fetch_failed(mut out: OffsetFetchResponse, code: i16, version: i16) -> OffsetFetchResponse {
    if version >= 2 {
        out.error_code = code;
    }
    out
}
