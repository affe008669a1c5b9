//! One consumer group as a value: members, generations, rebalances, session expiry and
//! the cooperative hand-over (Kafka's membership protocol).
//!
//! Pure: time comes in as `now_ms` (monotonic), a new member's id from a nonce the caller
//! drew. It must not decide what is written to the offsets log or when: the shard
//! (`super`) stages the records this value hands it ([`Group::record`],
//! [`Group::next_generation`]) and finishes a rebalance only once they are committed.

use super::{err, unknown_member};
use crate::group::assign::{self, Subscriber};
use crate::group::limits;
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupListing, GroupState, GroupValue, JoinGroup, StoredMember, TopicPartition,
};
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use std::collections::{BTreeMap, BTreeSet};

/// One group of an offsets partition.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: u32,
    pub(super) assignor: Assignor,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// When a rebalance gives up on members that have not rejoined (monotonic ms);
    /// set exactly while the group is `PreparingRebalance`.
    pub(super) deadline_ms: Option<u64>,
    /// Partition counts of the subscribed topics, as of the last join.
    pub(super) topics: BTreeMap<String, u32>,
    /// A partition was withheld from its new owner: rebalance again once every member
    /// that must give one up has its new assignment.
    pub(super) follow_up: bool,
    /// The initial rebalance delay of a group that was empty (Kafka's
    /// `group.initial.rebalance.delay.ms`): the generation waits for more members; set
    /// only while the group is `PreparingRebalance`.
    pub(super) hold: Option<Hold>,
}

/// A group that was empty waits this long for more members before its first generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hold {
    /// The generation forms no earlier (monotonic ms); each new member pushes it on.
    pub(super) until_ms: u64,
    /// No new member pushes `until_ms` past this: the first member's join plus its
    /// rebalance timeout.
    pub(super) limit_ms: u64,
}

/// One member of a group.
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) client_id: String,
    pub(super) topics: BTreeSet<String>,
    pub(super) session_ms: u64,
    pub(super) rebalance_ms: u64,
    /// Its last join, sync or heartbeat (monotonic ms).
    pub(super) last_seen_ms: u64,
    /// Rejoined during the current rebalance.
    pub(super) joined: bool,
    /// Fetched its assignment in the current generation.
    pub(super) synced: bool,
    /// Partitions it said it still consumes (its last join).
    pub(super) owned: Vec<TopicPartition>,
    /// Its partitions in the current generation.
    pub(super) assignment: Vec<TopicPartition>,
    /// Partitions it owns that were withheld from their new owner.
    pub(super) revoking: Vec<TopicPartition>,
}

impl Group {
    pub(super) fn new(assignor: Assignor) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            assignor,
            members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            deadline_ms: None,
            topics: BTreeMap::new(),
            follow_up: false,
            hold: None,
        }
    }

    /// Apply a join (validated by the caller): a new member is added, its id made of its
    /// client id and `nonce`, and starts a rebalance (held `delay_ms` for more members if
    /// the group was empty); a known one renews its session and reports what it owns.
    /// Returns the member id.
    pub(super) fn join(
        &mut self,
        name: &str,
        j: JoinGroup,
        nonce: u64,
        now: u64,
        delay_ms: u64,
    ) -> Result<String, WireError> {
        if self.members.is_empty() {
            self.assignor = j.assignor;
        } else if self.assignor != j.assignor {
            return Err(err(
                ErrorCode::InconsistentGroupProtocol,
                format!("group '{name}' uses the {} assignor, not {}", self.assignor, j.assignor),
            ));
        }
        let topics: BTreeSet<String> = j.topics.iter().cloned().collect();
        let member_id = match j.member_id {
            None => {
                limits::check_new_member(name, self.members.len())?;
                let id = format!("{}-{nonce:016x}", j.client_id);
                tracing::info!(group = %name, member = %id, "member joins");
                let member = Member {
                    client_id: j.client_id,
                    topics,
                    session_ms: u64::from(j.session_timeout_ms),
                    rebalance_ms: u64::from(j.rebalance_timeout_ms.max(j.session_timeout_ms)),
                    last_seen_ms: now,
                    joined: false,
                    synced: false,
                    owned: Vec::new(),
                    assignment: Vec::new(),
                    revoking: Vec::new(),
                };
                let rebalance_ms = member.rebalance_ms;
                let was_empty = self.members.is_empty();
                self.members.insert(id.clone(), member);
                self.rebalance(now);
                self.hold_for_more(was_empty, now, delay_ms, rebalance_ms);
                id
            }
            Some(id) => {
                let m = self.members.get_mut(&id).ok_or_else(|| unknown_member(name, &id))?;
                m.last_seen_ms = now;
                m.owned = j.owned;
                m.session_ms = u64::from(j.session_timeout_ms);
                if m.topics != topics {
                    m.topics = topics;
                    self.rebalance(now);
                }
                id
            }
        };
        if self.state == GroupState::PreparingRebalance {
            if let Some(m) = self.members.get_mut(&member_id) {
                m.joined = true;
            }
        }
        Ok(member_id)
    }

    /// Start a rebalance (if none is going on): every member must rejoin.
    pub(super) fn rebalance(&mut self, now: u64) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        self.state = GroupState::PreparingRebalance;
        self.follow_up = false;
        let wait_ms = self.members.values().map(|m| m.rebalance_ms).max().unwrap_or_default();
        self.deadline_ms = Some(now + wait_ms);
        for m in self.members.values_mut() {
            m.joined = false;
        }
    }

    /// The initial rebalance delay, as Kafka's: the first member of an empty group holds
    /// the generation `delay_ms`; each member joining meanwhile holds it `delay_ms` more,
    /// never past the first member's rebalance timeout.
    fn hold_for_more(&mut self, was_empty: bool, now: u64, delay_ms: u64, rebalance_ms: u64) {
        if delay_ms == 0 || self.state != GroupState::PreparingRebalance {
            return;
        }
        match &mut self.hold {
            None if was_empty => {
                let limit_ms = now + rebalance_ms;
                self.hold = Some(Hold { until_ms: (now + delay_ms).min(limit_ms), limit_ms });
            }
            None => {}
            Some(h) => h.until_ms = h.until_ms.max((now + delay_ms).min(h.limit_ms)),
        }
    }

    /// Drop members whose session lapsed; returns their ids.
    pub(super) fn expire(&mut self, now: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_sub(m.last_seen_ms) > m.session_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        gone
    }

    /// Whether the rebalance can end now (everyone rejoined, or the deadline passed).
    pub(super) fn ready(&self, now: u64) -> bool {
        self.state == GroupState::PreparingRebalance
            && self.hold.is_none_or(|h| now >= h.until_ms)
            && (self.members.values().all(|m| m.joined) || self.deadline_ms.is_some_and(|d| now >= d))
    }

    /// The next generation: drop members that did not rejoin, assign, withhold what
    /// other members still own. Returns the group record to persist.
    pub(super) fn next_generation(&mut self) -> GroupValue {
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        self.deadline_ms = None;
        self.hold = None;
        let subs: Vec<Subscriber> = self
            .members
            .iter()
            .map(|(id, m)| Subscriber {
                id: id.clone(),
                topics: m.topics.clone(),
                previous: m.assignment.clone(),
            })
            .collect();
        let mut target = assign::assign(self.assignor, &subs, &self.topics);
        let owner: BTreeMap<TopicPartition, String> = self
            .members
            .iter()
            .flat_map(|(id, m)| m.owned.iter().map(move |tp| (tp.clone(), id.clone())))
            .collect();
        self.follow_up = false;
        for (id, parts) in target.iter_mut() {
            let before = parts.len();
            parts.retain(|tp| owner.get(tp).is_none_or(|o| o == id));
            self.follow_up |= parts.len() != before;
        }
        for (id, m) in self.members.iter_mut() {
            m.assignment = target.remove(id).unwrap_or_default();
            m.revoking = m.owned.iter().filter(|tp| !m.assignment.contains(tp)).cloned().collect();
            m.synced = false;
            m.joined = false;
        }
        self.state =
            if self.members.is_empty() { GroupState::Empty } else { GroupState::CompletingRebalance };
        self.record()
    }

    /// After a generation that withheld partitions, start the next rebalance once every
    /// member that must give one up has fetched its assignment (and so stops reading
    /// those partitions, committed, before it rejoins). True if it started.
    pub(super) fn maybe_follow_up(&mut self, now: u64) -> bool {
        let pending = self.members.values().any(|m| !m.revoking.is_empty() && !m.synced);
        let due = self.follow_up && self.state == GroupState::Stable && !pending;
        if due {
            self.rebalance(now);
        }
        due
    }

    /// The group record of the current generation.
    pub(super) fn record(&self) -> GroupValue {
        GroupValue {
            generation: self.generation,
            assignor: self.assignor,
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    topics: m.topics.iter().cloned().collect(),
                    // Both were u32 milliseconds when the member joined.
                    session_timeout_ms: m.session_ms as u32,
                    rebalance_timeout_ms: m.rebalance_ms as u32,
                    partitions: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuild from a group record (a new coordinator): members keep their generation
    /// and assignment, and their sessions restart now.
    pub(super) fn restore(&mut self, v: GroupValue, now: u64) {
        self.generation = v.generation;
        self.assignor = v.assignor;
        self.deadline_ms = None;
        self.follow_up = false;
        self.hold = None;
        self.members = v
            .members
            .into_iter()
            .map(|m| {
                let member = Member {
                    client_id: m.client_id,
                    topics: m.topics.into_iter().collect(),
                    session_ms: u64::from(m.session_timeout_ms),
                    rebalance_ms: u64::from(m.rebalance_timeout_ms),
                    last_seen_ms: now,
                    joined: false,
                    synced: true,
                    owned: m.partitions.clone(),
                    assignment: m.partitions,
                    revoking: Vec::new(),
                };
                (m.member_id, member)
            })
            .collect();
        self.state = if self.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
    }

    pub(super) fn listing(&self, name: &str, coordinator: &NodeId) -> GroupListing {
        GroupListing {
            group: name.to_string(),
            state: self.state,
            members: self.members.len() as u32,
            coordinator: coordinator.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
