//! The group coordinator: consumer groups served by the leader of their partition of
//! the internal offsets topic (DESIGN decision 12).
//!
//! - **State lives in the log.** Every committed offset and every completed rebalance
//!   (generation, members, assignment) is a record of `__consumer_offsets`, appended
//!   with `acks=all`; a commit is acknowledged only once it is committed there. The
//!   topic is compacted by key, so it holds about one record per live key.
//! - **Failover is a reload.** A node serves a group only while its replica of the
//!   group's offsets partition leads. The first request in a new leader epoch waits
//!   until everything in the leader's log is committed (its HW passes the log end it
//!   saw), then rebuilds the partition's groups from the log. Members keep their
//!   generation and assignment across a coordinator change; their sessions restart.
//! - **One lock per offsets partition** orders every change, so the in-memory state is
//!   always the log read up to the last append made here. An append whose outcome is
//!   unknown (a timeout, a lost leadership) drops the state, and the next request
//!   reloads it from the log.
//! - **Membership** follows Kafka: join (polled), sync, heartbeat, leave, generations,
//!   session and rebalance timeouts. The coordinator computes the assignment
//!   ([`assign`]); a partition a member still owns (cooperative assignor) is given to
//!   no one else until that member has rejoined without it.
//! - **Bounded** ([`limits`]): groups per offsets partition, members per group, each
//!   member's subscription, committed offsets per group and their metadata are capped;
//!   a request over a cap changes nothing and gets a stable error code.

pub mod assign;
pub mod limits;

use crate::broker::{Broker, ReplicaHandle};
use crate::mesh::Mesh;
use assign::Subscriber;
use meshlog_protocol::batch::{self, BatchBuilder};
use meshlog_protocol::codec;
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupDescription, GroupListing, GroupRequest, GroupResponse, GroupState,
    GroupValue, JoinGroup, JoinResult, MemberDescription, OffsetCommit, OffsetValue, OffsetsKey,
    StoredMember, TopicPartition, OFFSETS_TOPIC,
};
use meshlog_protocol::messages::{ClientResponse, ClientResult};
use meshlog_protocol::types::Acks;
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds and budgets of the coordinator, from the node's config.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout_ms: u32,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout_ms: u32,
    /// How long an append to the offsets log may take.
    pub append_timeout: Duration,
    /// How long a new coordinator waits for its log to be committed before it loads.
    pub load_wait: Duration,
}

/// How long an append to the offsets log may take before the coordinator gives up.
pub const APPEND_TIMEOUT: Duration = crate::resilience::COMMIT_TIMEOUT;

/// How often the coordinator expires sessions and ends rebalances past their deadline.
pub const TICK: Duration = Duration::from_millis(100);

/// The coordinator of the groups whose offsets partitions this node leads.
pub struct Coordinator {
    broker: Arc<Broker>,
    mesh: Arc<Mesh>,
    settings: GroupSettings,
    shards: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<Shard>>>>,
}

/// The groups of one offsets partition, as loaded in one leader epoch.
#[derive(Default)]
struct Shard {
    /// The leader epoch the state was loaded in; `None`: not loaded (or dropped).
    epoch: Option<u64>,
    groups: BTreeMap<String, Group>,
    /// Where each live key's latest record is in the log, both ways: the oldest ones
    /// are written again when they would keep compaction from freeing the log's head.
    live: BTreeMap<u64, OffsetsKey>,
    at: HashMap<OffsetsKey, u64>,
}

impl Shard {
    fn clear(&mut self) {
        self.epoch = None;
        self.groups.clear();
        self.live.clear();
        self.at.clear();
    }

    /// Note that `key`'s latest record is at `offset` (`None`: deleted).
    fn place(&mut self, key: OffsetsKey, offset: Option<u64>) {
        if let Some(old) = self.at.remove(&key) {
            self.live.remove(&old);
        }
        if let Some(o) = offset {
            self.live.insert(o, key.clone());
            self.at.insert(key, o);
        }
    }

    /// The current value of a live key, re-encoded (a group mid-rebalance: none yet).
    fn current(&self, key: &OffsetsKey) -> Option<Vec<u8>> {
        match key {
            OffsetsKey::Offset { group, tp } => {
                let committed = self.groups.get(group)?.offsets.get(tp)?.clone();
                codec::encode(&OffsetValue { committed, commit_ms: crate::time::unix_ms() }).ok()
            }
            OffsetsKey::Group { group } => {
                let g = self.groups.get(group)?;
                matches!(g.state, GroupState::Stable | GroupState::Empty)
                    .then(|| codec::encode(&g.record()).ok())?
            }
        }
    }
}

/// Offsets a partition may hold beyond four per live key before the oldest live
/// records are written again (so compaction can free the head of the log).
const REFRESH_SLACK: u64 = 1_000;
/// Live records written again per tick at most.
const REFRESH_BATCH: usize = 256;

struct Group {
    state: GroupState,
    generation: u32,
    assignor: Assignor,
    members: BTreeMap<String, Member>,
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// When a rebalance gives up on members that have not rejoined.
    deadline: Option<Instant>,
    /// Partition counts of the subscribed topics, as of the last join.
    topics: BTreeMap<String, u32>,
    /// A partition was withheld from its new owner: rebalance again once every member
    /// that must give one up has its new assignment.
    follow_up: bool,
}

struct Member {
    client_id: String,
    topics: BTreeSet<String>,
    session: Duration,
    rebalance: Duration,
    last_seen: Instant,
    /// Rejoined during the current rebalance.
    joined: bool,
    /// Fetched its assignment in the current generation.
    synced: bool,
    /// Partitions it said it still consumes (its last join).
    owned: Vec<TopicPartition>,
    /// Its partitions in the current generation.
    assignment: Vec<TopicPartition>,
    /// Partitions it owns that were withheld from their new owner.
    revoking: Vec<TopicPartition>,
}

impl Group {
    fn new(assignor: Assignor) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            assignor,
            members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            deadline: None,
            topics: BTreeMap::new(),
            follow_up: false,
        }
    }

    /// Apply a join (validated by the caller): a new member is added and starts a
    /// rebalance; a known one renews its session and reports what it owns. Returns the
    /// member id.
    fn join(&mut self, name: &str, j: JoinGroup, now: Instant) -> Result<String, WireError> {
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
                let id = format!("{}-{:016x}", j.client_id, rand::random::<u64>());
                tracing::info!(group = %name, member = %id, "member joins");
                self.members.insert(
                    id.clone(),
                    Member {
                        client_id: j.client_id,
                        topics,
                        session: Duration::from_millis(j.session_timeout_ms as u64),
                        rebalance: Duration::from_millis(
                            j.rebalance_timeout_ms.max(j.session_timeout_ms) as u64
                        ),
                        last_seen: now,
                        joined: false,
                        synced: false,
                        owned: Vec::new(),
                        assignment: Vec::new(),
                        revoking: Vec::new(),
                    },
                );
                self.rebalance(now);
                id
            }
            Some(id) => {
                let m = self.members.get_mut(&id).ok_or_else(|| unknown_member(name, &id))?;
                m.last_seen = now;
                m.owned = j.owned;
                m.session = Duration::from_millis(j.session_timeout_ms as u64);
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
    fn rebalance(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        self.state = GroupState::PreparingRebalance;
        self.follow_up = false;
        let wait = self.members.values().map(|m| m.rebalance).max().unwrap_or_default();
        self.deadline = Some(now + wait);
        for m in self.members.values_mut() {
            m.joined = false;
        }
    }

    /// Drop members whose session lapsed; true if any was dropped.
    fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) > m.session)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        gone
    }

    /// Whether the rebalance can end now (everyone rejoined, or the deadline passed).
    fn ready(&self, now: Instant) -> bool {
        self.state == GroupState::PreparingRebalance
            && (self.members.values().all(|m| m.joined) || self.deadline.is_some_and(|d| now >= d))
    }

    /// The next generation: drop members that did not rejoin, assign, withhold what
    /// other members still own. Returns the group record to persist.
    fn next_generation(&mut self) -> GroupValue {
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        self.deadline = None;
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
    fn maybe_follow_up(&mut self, now: Instant) -> bool {
        let pending = self.members.values().any(|m| !m.revoking.is_empty() && !m.synced);
        let due = self.follow_up && self.state == GroupState::Stable && !pending;
        if due {
            self.rebalance(now);
        }
        due
    }

    fn record(&self) -> GroupValue {
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
                    session_timeout_ms: m.session.as_millis() as u32,
                    rebalance_timeout_ms: m.rebalance.as_millis() as u32,
                    partitions: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuild from a group record (a new coordinator): members keep their generation
    /// and assignment, and their sessions restart now.
    fn restore(&mut self, v: GroupValue, now: Instant) {
        self.generation = v.generation;
        self.assignor = v.assignor;
        self.deadline = None;
        self.follow_up = false;
        self.members = v
            .members
            .into_iter()
            .map(|m| {
                let member = Member {
                    client_id: m.client_id,
                    topics: m.topics.into_iter().collect(),
                    session: Duration::from_millis(m.session_timeout_ms as u64),
                    rebalance: Duration::from_millis(m.rebalance_timeout_ms as u64),
                    last_seen: now,
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

    fn listing(&self, name: &str, coordinator: &str) -> GroupListing {
        GroupListing {
            group: name.to_string(),
            state: self.state,
            members: self.members.len() as u32,
            coordinator: coordinator.to_string(),
        }
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> WireError {
    WireError::new(code, msg)
}

fn unknown_group(group: &str) -> WireError {
    err(ErrorCode::GroupIdNotFound, format!("consumer group '{group}' does not exist"))
}

fn unknown_member(group: &str, member: &str) -> WireError {
    err(
        ErrorCode::UnknownMemberId,
        format!("group '{group}' has no member '{member}' (its session lapsed or it left): rejoin"),
    )
}

fn ok(r: GroupResponse) -> ClientResult {
    Ok(ClientResponse::Group(r))
}

impl Coordinator {
    /// A coordinator over this node's replicas of the offsets topic.
    pub fn new(broker: Arc<Broker>, mesh: Arc<Mesh>, settings: GroupSettings) -> Coordinator {
        Coordinator { broker, mesh, settings, shards: Mutex::new(HashMap::new()) }
    }

    fn shard(&self, p: u32) -> Arc<tokio::sync::Mutex<Shard>> {
        let mut map = crate::sync::lock(&self.shards);
        map.entry(p).or_default().clone()
    }

    /// This node's replica of offsets partition `p`, which must lead.
    fn leading_replica(&self, p: u32) -> Result<(Arc<ReplicaHandle>, u64), WireError> {
        let not_here = || {
            err(
                ErrorCode::NotLeaderOrFollower,
                format!("this node does not coordinate the groups of {OFFSETS_TOPIC}-{p}"),
            )
        };
        let r = self.broker.replica(OFFSETS_TOPIC, p).ok_or_else(not_here)?;
        let v = r.view();
        if !v.is_leader {
            return Err(not_here());
        }
        Ok((r, v.epoch))
    }

    /// Serve a group request whose offsets partition is `p` (the gateway routed it to
    /// this node because its replica of `p` leads).
    pub async fn handle(&self, p: u32, req: GroupRequest) -> ClientResult {
        if let Some(g) = req.group() {
            meshlog_protocol::group::validate_group_name(g)?;
        }
        match &req {
            GroupRequest::Join(j) => limits::check_join(j)?,
            GroupRequest::Commit(c) => limits::check_commit(c)?,
            _ => {}
        }
        // Topic lookups may ask the DHT: done before the partition's lock is taken.
        let partitions = match &req {
            GroupRequest::Join(j) => Some(self.partition_counts(&j.topics).await?),
            GroupRequest::Commit(c) => {
                let topics: Vec<String> = c.offsets.iter().map(|(tp, _)| tp.topic.clone()).collect();
                let counts = self.partition_counts(&topics).await?;
                for (tp, _) in &c.offsets {
                    if tp.partition >= counts[&tp.topic] {
                        return Err(err(
                            ErrorCode::UnknownTopicOrPartition,
                            format!("topic '{}' has no partition {}", tp.topic, tp.partition),
                        ));
                    }
                }
                None
            }
            _ => None,
        };
        let (replica, _) = self.leading_replica(p)?;
        let shard = self.shard(p);
        let mut s = shard.lock().await;
        self.ensure_loaded(p, &mut s).await?;
        let now = Instant::now();
        match req {
            GroupRequest::Join(j) => {
                self.join(&mut s, &replica, j, partitions.unwrap_or_default(), now).await
            }
            GroupRequest::Sync { group, member_id, generation } => {
                let g = s.groups.get_mut(&group).ok_or_else(|| unknown_group(&group))?;
                let m = g.members.get_mut(&member_id).ok_or_else(|| unknown_member(&group, &member_id))?;
                m.last_seen = now;
                if generation != g.generation {
                    return Err(illegal_generation(&group, generation, g.generation));
                }
                if g.state == GroupState::CompletingRebalance {
                    return Err(rebalancing(&group));
                }
                m.synced = true;
                let assignment = m.assignment.clone();
                if g.maybe_follow_up(now) {
                    tracing::debug!(%group, "rebalancing again to hand over revoked partitions");
                }
                ok(GroupResponse::Assignment(assignment))
            }
            GroupRequest::Heartbeat { group, member_id, generation } => {
                let g = s.groups.get_mut(&group).ok_or_else(|| unknown_group(&group))?;
                let m = g.members.get_mut(&member_id).ok_or_else(|| unknown_member(&group, &member_id))?;
                m.last_seen = now;
                if g.state == GroupState::PreparingRebalance || g.state == GroupState::CompletingRebalance {
                    return Err(rebalancing(&group));
                }
                if generation != g.generation {
                    return Err(illegal_generation(&group, generation, g.generation));
                }
                ok(GroupResponse::Ok)
            }
            GroupRequest::Leave { group, member_id } => {
                let g = s.groups.get_mut(&group).ok_or_else(|| unknown_group(&group))?;
                if g.members.remove(&member_id).is_none() {
                    return Err(unknown_member(&group, &member_id));
                }
                tracing::info!(%group, member = %member_id, "member left");
                g.rebalance(now);
                self.settle(&mut s, &replica, &group, now).await?;
                ok(GroupResponse::Ok)
            }
            GroupRequest::Commit(c) => self.commit(&mut s, &replica, c).await,
            GroupRequest::FetchOffsets { group, partitions } => {
                let Some(g) = s.groups.get(&group) else { return ok(GroupResponse::Offsets(Vec::new())) };
                let offsets = match partitions {
                    None => g.offsets.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect(),
                    Some(want) => want
                        .into_iter()
                        .filter_map(|tp| g.offsets.get(&tp).map(|o| (tp, o.clone())))
                        .collect(),
                };
                ok(GroupResponse::Offsets(offsets))
            }
            GroupRequest::Describe { group } => {
                let g = s.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
                ok(GroupResponse::Group(GroupDescription {
                    group: group.clone(),
                    state: g.state,
                    generation: g.generation,
                    assignor: g.assignor,
                    coordinator: self.broker.node_id().to_string(),
                    members: g
                        .members
                        .iter()
                        .map(|(id, m)| MemberDescription {
                            member_id: id.clone(),
                            client_id: m.client_id.clone(),
                            topics: m.topics.iter().cloned().collect(),
                            partitions: m.assignment.clone(),
                        })
                        .collect(),
                    offsets: g.offsets.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect(),
                }))
            }
            GroupRequest::List { .. } => {
                let me = self.broker.node_id();
                ok(GroupResponse::Groups(s.groups.iter().map(|(n, g)| g.listing(n, me)).collect()))
            }
        }
    }

    async fn partition_counts(&self, topics: &[String]) -> Result<BTreeMap<String, u32>, WireError> {
        let mut out = BTreeMap::new();
        for t in topics {
            if !out.contains_key(t) {
                out.insert(t.clone(), self.mesh.topic(t).await?.info.partitions);
            }
        }
        Ok(out)
    }

    async fn join(
        &self,
        s: &mut Shard,
        replica: &ReplicaHandle,
        j: JoinGroup,
        partitions: BTreeMap<String, u32>,
        now: Instant,
    ) -> ClientResult {
        let (lo, hi) = (self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms);
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
        if !s.groups.contains_key(&name) {
            limits::check_new_group(&name, s.groups.len())?;
        }
        let g = s.groups.entry(name.clone()).or_insert_with(|| Group::new(j.assignor));
        g.topics.extend(partitions);
        let member_id = g.join(&name, j, now)?;
        self.settle(s, replica, &name, now).await?;
        let g = s.groups.get(&name).ok_or_else(|| unknown_group(&name))?;
        let generation = match g.state {
            GroupState::Stable if g.members.contains_key(&member_id) => Some(g.generation),
            _ => None,
        };
        ok(GroupResponse::Joined(JoinResult { member_id, generation, members: g.members.len() as u32 }))
    }

    /// End the group's rebalance if it can end now, writing the new generation to the
    /// offsets log before any member sees it.
    async fn settle(
        &self,
        s: &mut Shard,
        replica: &ReplicaHandle,
        group: &str,
        now: Instant,
    ) -> Result<(), WireError> {
        let Some(g) = s.groups.get_mut(group) else { return Ok(()) };
        if g.state == GroupState::PreparingRebalance && g.members.is_empty() {
            g.state = GroupState::Empty;
            g.deadline = None;
            g.generation += 1;
        } else if !g.ready(now) {
            return Ok(());
        }
        let value = if g.state == GroupState::Empty { g.record() } else { g.next_generation() };
        let generation = value.generation;
        let members = value.members.len();
        let key = OffsetsKey::Group { group: group.to_string() };
        self.append(s, replica, vec![(key, encode(&value)?)]).await?;
        if let Some(g) = s.groups.get_mut(group) {
            if g.state == GroupState::CompletingRebalance && g.generation == generation {
                g.state = GroupState::Stable;
            }
            tracing::info!(%group, generation, members, follow_up = g.follow_up, "rebalance done");
        }
        Ok(())
    }

    async fn commit(&self, s: &mut Shard, replica: &ReplicaHandle, c: OffsetCommit) -> ClientResult {
        let group = c.group.clone();
        match &c.member {
            Some((member_id, generation)) => {
                let g = s.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
                let m = g.members.get(member_id).ok_or_else(|| unknown_member(&group, member_id))?;
                if *generation != g.generation {
                    return Err(illegal_generation(&group, *generation, g.generation));
                }
                if g.state == GroupState::CompletingRebalance {
                    return Err(rebalancing(&group));
                }
                for (tp, _) in &c.offsets {
                    if !m.assignment.contains(tp) && !m.revoking.contains(tp) {
                        return Err(err(
                            ErrorCode::PartitionNotAssigned,
                            format!(
                                "member '{member_id}' of group '{group}' does not own {tp} in generation {generation}"
                            ),
                        ));
                    }
                }
            }
            None => {
                if let Some(g) = s.groups.get(&group) {
                    if !g.members.is_empty() {
                        return Err(err(
                            ErrorCode::NonEmptyGroup,
                            format!(
                                "group '{group}' has {} active member(s); offsets can be set from outside only \
                                 while it has none (stop its consumers first)",
                                g.members.len()
                            ),
                        ));
                    }
                }
            }
        }
        match s.groups.get(&group) {
            Some(g) => limits::check_offsets(&group, &g.offsets, &c.offsets)?,
            None if c.offsets.is_empty() => {}
            None => {
                limits::check_new_group(&group, s.groups.len())?;
                limits::check_offsets(&group, &BTreeMap::new(), &c.offsets)?;
            }
        }
        let commit_ms = crate::time::unix_ms();
        let mut records = Vec::with_capacity(c.offsets.len());
        for (tp, committed) in &c.offsets {
            let key = OffsetsKey::Offset { group: group.clone(), tp: tp.clone() };
            records.push((key, encode(&OffsetValue { committed: committed.clone(), commit_ms })?));
        }
        if records.is_empty() {
            return ok(GroupResponse::Committed);
        }
        self.append(s, replica, records).await?;
        let g = s.groups.entry(group).or_insert_with(|| Group::new(Assignor::default()));
        g.offsets.extend(c.offsets);
        if g.members.is_empty() && g.generation == 0 {
            g.state = GroupState::Empty;
        }
        ok(GroupResponse::Committed)
    }

    /// Append records to the offsets partition and wait until they are committed. If
    /// the outcome is unknown the partition's state is dropped, to be reloaded.
    async fn append(
        &self,
        s: &mut Shard,
        replica: &ReplicaHandle,
        records: Vec<(OffsetsKey, Vec<u8>)>,
    ) -> Result<(), WireError> {
        let ts = crate::time::unix_ms();
        let mut b = BatchBuilder::new();
        for (key, value) in &records {
            b.push(ts, Some(&encode(key)?), Some(value), &[]);
        }
        let bytes = b.build().ok_or_else(|| err(ErrorCode::Unknown, "empty offsets batch"))?;
        let topic = self.broker.topics().get(OFFSETS_TOPIC)?;
        match replica.append(bytes, Acks::All, &topic.info.config, self.settings.append_timeout).await {
            Ok(r) => {
                let base = r.base_offset.unwrap_or_default();
                for (i, (key, _)) in records.into_iter().enumerate() {
                    s.place(key, Some(base + i as u64));
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(partition = replica.part.id(), error = %e, "offsets append failed; state will be reloaded");
                s.clear();
                Err(e)
            }
        }
    }

    /// Load the partition's groups from its log if this is a new leader epoch.
    async fn ensure_loaded(&self, p: u32, s: &mut Shard) -> Result<(), WireError> {
        let (replica, epoch) = self.leading_replica(p)?;
        if s.epoch == Some(epoch) {
            return Ok(());
        }
        // Everything in a leader's log becomes committed once its epoch's first entry
        // is: wait for the HW to pass the log end as it is now.
        let (_, log_end, _) = replica.part.offsets();
        let deadline = Instant::now() + self.settings.load_wait;
        while replica.part.high_watermark() < log_end {
            if Instant::now() >= deadline || !replica.view().is_leader {
                return Err(err(
                    ErrorCode::CoordinatorLoadInProgress,
                    format!("the coordinator of {OFFSETS_TOPIC}-{p} is still loading; retry"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hw = replica.part.high_watermark();
        let (mut next, _, _) = replica.part.offsets();
        let started = Instant::now();
        let now = Instant::now();
        s.clear();
        let mut count = 0u64;
        let load_err = |e: String| {
            err(ErrorCode::CoordinatorLoadInProgress, format!("loading {OFFSETS_TOPIC}-{p}: {e}"))
        };
        while next < hw {
            let batches =
                replica.part.read_batches(next, hw, 1 << 20).map_err(|e| load_err(e.to_string()))?;
            if batches.is_empty() {
                break;
            }
            for (base, bytes) in batches {
                let h = batch::parse_header(&bytes).map_err(|e| load_err(e.to_string()))?;
                next = base + h.last_offset_delta as u64 + 1;
                if h.is_control() {
                    continue;
                }
                for r in batch::records(&bytes).map_err(|e| load_err(e.to_string()))? {
                    if r.offset as u64 >= hw {
                        continue;
                    }
                    apply(s, &r, now);
                    count += 1;
                }
            }
        }
        s.epoch = Some(epoch);
        tracing::info!(
            partition = p,
            epoch,
            records = count,
            groups = s.groups.len(),
            ms = started.elapsed().as_millis() as u64,
            "coordinator loaded"
        );
        Ok(())
    }

    /// The oldest live records, to be written again, once they keep more than half of
    /// the partition's log from being compacted away (and the log is well past the
    /// live keys' size).
    fn stale_records(&self, s: &Shard, replica: &ReplicaHandle) -> Vec<(OffsetsKey, Vec<u8>)> {
        let (start, end, _) = replica.part.offsets();
        let held = end.saturating_sub(start);
        let Some((&oldest, _)) = s.live.iter().next() else { return Vec::new() };
        if held <= 4 * s.live.len() as u64 + REFRESH_SLACK || oldest >= start + held / 2 {
            return Vec::new();
        }
        s.live.values().take(REFRESH_BATCH).filter_map(|k| s.current(k).map(|v| (k.clone(), v))).collect()
    }

    /// Expire sessions and end rebalances past their deadline, in every offsets
    /// partition this node leads; drop the state of those it no longer leads.
    pub async fn tick(&self) {
        let shards: Vec<(u32, Arc<tokio::sync::Mutex<Shard>>)> = self
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, s)| (*p, s.clone()))
            .collect();
        let now = Instant::now();
        for (p, shard) in shards {
            let Ok(mut s) = shard.try_lock() else { continue };
            let replica = match self.leading_replica(p) {
                Ok((r, epoch)) if s.epoch == Some(epoch) => r,
                _ => {
                    s.clear();
                    continue;
                }
            };
            let stale = self.stale_records(&s, &replica);
            if !stale.is_empty() {
                tracing::debug!(
                    partition = p,
                    records = stale.len(),
                    "writing the oldest live records again"
                );
                if let Err(e) = self.append(&mut s, &replica, stale).await {
                    tracing::warn!(partition = p, error = %e, "cannot write live records again");
                    continue;
                }
            }
            let names: Vec<String> = s.groups.keys().cloned().collect();
            for name in names {
                let Some(g) = s.groups.get_mut(&name) else { continue };
                let gone = g.expire(now);
                if !gone.is_empty() {
                    tracing::info!(group = %name, members = ?gone, "session timeout: members removed");
                    g.rebalance(now);
                }
                if let Err(e) = self.settle(&mut s, &replica, &name, now).await {
                    tracing::warn!(group = %name, error = %e, "cannot end a rebalance");
                    break;
                }
            }
        }
    }

    /// Run [`Coordinator::tick`] until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick().await,
                _ = crate::sync::stopped(&mut shutdown) => return,
            }
        }
    }
}

/// Apply one record of the offsets log to the groups being loaded.
fn apply(s: &mut Shard, r: &batch::Record, now: Instant) {
    let Some(key) = r.key.as_deref().and_then(|k| codec::decode::<OffsetsKey>(k).ok()) else {
        tracing::warn!(offset = r.offset, "offsets log: record with an unreadable key skipped");
        return;
    };
    s.place(key.clone(), r.value.is_some().then_some(r.offset as u64));
    let groups = &mut s.groups;
    match key {
        OffsetsKey::Offset { group, tp } => {
            let g = groups.entry(group).or_insert_with(|| Group::new(Assignor::default()));
            match r.value.as_deref().map(codec::decode::<OffsetValue>) {
                Some(Ok(v)) => {
                    g.offsets.insert(tp, v.committed);
                }
                None => {
                    g.offsets.remove(&tp);
                }
                Some(Err(e)) => {
                    tracing::warn!(offset = r.offset, error = %e, "offsets log: bad offset value")
                }
            }
        }
        OffsetsKey::Group { group } => match r.value.as_deref().map(codec::decode::<GroupValue>) {
            Some(Ok(v)) => groups.entry(group).or_insert_with(|| Group::new(v.assignor)).restore(v, now),
            None => {
                groups.remove(&group);
            }
            Some(Err(e)) => tracing::warn!(offset = r.offset, error = %e, "offsets log: bad group value"),
        },
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, WireError> {
    codec::encode(v).map_err(|e| err(ErrorCode::Unknown, format!("cannot encode an offsets record: {e}")))
}

fn illegal_generation(group: &str, theirs: u32, ours: u32) -> WireError {
    err(
        ErrorCode::IllegalGeneration,
        format!("group '{group}' is at generation {ours}, not {theirs}: rejoin"),
    )
}

fn rebalancing(group: &str) -> WireError {
    err(ErrorCode::RebalanceInProgress, format!("group '{group}' is rebalancing: rejoin"))
}

#[cfg(test)]
mod tests;
