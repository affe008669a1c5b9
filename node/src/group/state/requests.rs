//! The shard's answer to each client request: checks against the group's state and the
//! caps, the change to make, and what to stage for the offsets log.
//!
//! Part of the pure core: it stages records and replies, and never appends, waits or
//! reads a clock itself ([`Shard::finish`](super::Shard) turns what it staged into an
//! append).

use super::group::Group;
use super::{err, illegal_generation, rebalancing, unknown_group, unknown_member};
use super::{Context, Record, Reply, Shard, Value};
use crate::group::limits;
use meshlog_protocol::group::{
    GroupDescription, GroupRequest, GroupResponse, GroupState, JoinGroup, MemberDescription, OffsetCommit,
    OffsetValue, OffsetsKey, TopicPartition,
};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;

impl Shard {
    /// Serve one request: change the state, stage records, say how to answer.
    pub(super) fn serve(&mut self, request: GroupRequest, context: Context) -> Result<Reply, WireError> {
        let respond = |r: GroupResponse| Ok(Reply::Response(r));
        match request {
            GroupRequest::Join(j) => self.join(j, context),
            GroupRequest::Sync { group, member_id, generation } => self.sync(&group, &member_id, generation),
            GroupRequest::Heartbeat { group, member_id, generation } => {
                self.heartbeat(&group, &member_id, generation)
            }
            GroupRequest::Leave { group, member_id } => self.leave(&group, &member_id),
            GroupRequest::Commit(c) => self.commit(c, context.unix_ms),
            GroupRequest::FetchOffsets { group, partitions } => respond(self.fetch(&group, partitions)),
            GroupRequest::Describe { group } => self.describe(group),
            GroupRequest::List { .. } => {
                let me = &self.cfg.coordinator;
                respond(GroupResponse::Groups(self.groups.iter().map(|(n, g)| g.listing(n, me)).collect()))
            }
            GroupRequest::Delete { group } => self.delete(group),
        }
    }

    /// Delete a group without members: a tombstone for each committed offset and for
    /// the group's record; the group is forgotten once they are committed.
    fn delete(&mut self, group: String) -> Result<Reply, WireError> {
        let g = self.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
        if !g.members.is_empty() {
            return Err(err(
                ErrorCode::NonEmptyGroup,
                format!("group '{group}' has {} active member(s); stop its consumers first", g.members.len()),
            ));
        }
        let offsets = g.offsets.keys().map(|tp| OffsetsKey::Offset { group: group.clone(), tp: tp.clone() });
        let keys: Vec<OffsetsKey> = offsets.chain([OffsetsKey::Group { group: group.clone() }]).collect();
        self.staged.records.extend(keys.into_iter().map(|key| Record { key, value: Value::Deleted }));
        self.staged.deleted = Some(group);
        Ok(Reply::Response(GroupResponse::Ok))
    }

    fn join(&mut self, j: JoinGroup, context: Context) -> Result<Reply, WireError> {
        let (lo, hi) = (self.cfg.min_session_timeout_ms, self.cfg.max_session_timeout_ms);
        if j.session_timeout_ms < lo || j.session_timeout_ms > hi {
            return Err(err(
                ErrorCode::InvalidSessionTimeout,
                format!("session timeout {} ms is outside {lo}..={hi} ms", j.session_timeout_ms),
            ));
        }
        if j.topics.is_empty() {
            return Err(err(ErrorCode::InvalidRequest, "a member must subscribe to at least one topic"));
        }
        let name = j.group.clone();
        if !self.groups.contains_key(&name) {
            limits::check_new_group(&name, self.groups.len())?;
        }
        let g = self.groups.entry(name.clone()).or_insert_with(|| Group::new(j.assignor));
        g.topics.extend(context.partitions);
        let delay_ms = self.cfg.initial_rebalance_delay_ms;
        let member_id = g.join(&name, j, context.member_nonce, self.now, delay_ms)?;
        self.settle(&name);
        Ok(Reply::Joined { group: name, member_id })
    }

    fn sync(&mut self, group: &str, member_id: &str, generation: u32) -> Result<Reply, WireError> {
        let now = self.now;
        let g = self.groups.get_mut(group).ok_or_else(|| unknown_group(group))?;
        let m = g.members.get_mut(member_id).ok_or_else(|| unknown_member(group, member_id))?;
        m.last_seen_ms = now;
        if generation != g.generation {
            return Err(illegal_generation(group, generation, g.generation));
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(rebalancing(group));
        }
        m.synced = true;
        let assignment = m.assignment.clone();
        if g.maybe_follow_up(now) {
            tracing::debug!(%group, "rebalancing again to hand over revoked partitions");
        }
        Ok(Reply::Response(GroupResponse::Assignment(assignment)))
    }

    fn heartbeat(&mut self, group: &str, member_id: &str, generation: u32) -> Result<Reply, WireError> {
        let g = self.groups.get_mut(group).ok_or_else(|| unknown_group(group))?;
        let m = g.members.get_mut(member_id).ok_or_else(|| unknown_member(group, member_id))?;
        m.last_seen_ms = self.now;
        if g.state == GroupState::PreparingRebalance || g.state == GroupState::CompletingRebalance {
            return Err(rebalancing(group));
        }
        if generation != g.generation {
            return Err(illegal_generation(group, generation, g.generation));
        }
        Ok(Reply::Response(GroupResponse::Ok))
    }

    fn leave(&mut self, group: &str, member_id: &str) -> Result<Reply, WireError> {
        let g = self.groups.get_mut(group).ok_or_else(|| unknown_group(group))?;
        if g.members.remove(member_id).is_none() {
            return Err(unknown_member(group, member_id));
        }
        tracing::info!(%group, member = %member_id, "member left");
        g.rebalance(self.now);
        self.settle(group);
        Ok(Reply::Response(GroupResponse::Ok))
    }

    /// A commit: checked against the committer's generation and assignment (or, from
    /// outside the group, against its having no members) and the caps, then staged.
    fn commit(&mut self, c: OffsetCommit, unix_ms: i64) -> Result<Reply, WireError> {
        self.check_committer(&c)?;
        let group = c.group.clone();
        match self.groups.get(&group) {
            Some(g) => limits::check_offsets(&group, &g.offsets, &c.offsets)?,
            None if c.offsets.is_empty() => {}
            None => {
                limits::check_new_group(&group, self.groups.len())?;
                limits::check_offsets(&group, &BTreeMap::new(), &c.offsets)?;
            }
        }
        if c.offsets.is_empty() {
            return Ok(Reply::Response(GroupResponse::Committed));
        }
        for (tp, committed) in &c.offsets {
            let key = OffsetsKey::Offset { group: group.clone(), tp: tp.clone() };
            let value = Value::Offset(OffsetValue { committed: committed.clone(), commit_ms: unix_ms });
            self.staged.records.push(Record { key, value });
        }
        self.staged.offsets = Some((group, c.offsets));
        Ok(Reply::Response(GroupResponse::Committed))
    }

    fn check_committer(&self, c: &OffsetCommit) -> Result<(), WireError> {
        let group = &c.group;
        let Some((member_id, generation)) = &c.member else {
            return match self.groups.get(group) {
                Some(g) if !g.members.is_empty() => Err(err(
                    ErrorCode::NonEmptyGroup,
                    format!(
                        "group '{group}' has {} active member(s); offsets can be set from outside only \
                         while it has none (stop its consumers first)",
                        g.members.len()
                    ),
                )),
                _ => Ok(()),
            };
        };
        let g = self.groups.get(group).ok_or_else(|| unknown_group(group))?;
        let m = g.members.get(member_id).ok_or_else(|| unknown_member(group, member_id))?;
        if *generation != g.generation {
            return Err(illegal_generation(group, *generation, g.generation));
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(rebalancing(group));
        }
        match c.offsets.iter().find(|(tp, _)| !m.assignment.contains(tp) && !m.revoking.contains(tp)) {
            Some((tp, _)) => Err(err(
                ErrorCode::PartitionNotAssigned,
                format!(
                    "member '{member_id}' of group '{group}' does not own {tp} in generation {generation}"
                ),
            )),
            None => Ok(()),
        }
    }

    fn fetch(&self, group: &str, partitions: Option<Vec<TopicPartition>>) -> GroupResponse {
        let Some(g) = self.groups.get(group) else { return GroupResponse::Offsets(Vec::new()) };
        let offsets = match partitions {
            None => g.offsets.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect(),
            Some(want) => {
                want.into_iter().filter_map(|tp| g.offsets.get(&tp).map(|o| (tp, o.clone()))).collect()
            }
        };
        GroupResponse::Offsets(offsets)
    }

    fn describe(&self, group: String) -> Result<Reply, WireError> {
        let g = self.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
        let members = g
            .members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                client_id: m.client_id.clone(),
                topics: m.topics.iter().cloned().collect(),
                partitions: m.assignment.clone(),
            })
            .collect();
        Ok(Reply::Response(GroupResponse::Group(GroupDescription {
            state: g.state,
            generation: g.generation,
            assignor: g.assignor,
            coordinator: self.cfg.coordinator.clone(),
            members,
            offsets: g.offsets.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect(),
            group,
        })))
    }
}
