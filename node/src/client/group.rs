//! A consumer-group member: joins a group, reads the partitions the coordinator assigns
//! to it, and commits what the program has processed (at least once: process, then
//! commit). Heartbeats and rebalances happen inside [`GroupConsumer::poll`].
//!
//! ```text
//! loop {
//!     for rec in consumer.poll().await? { process(&rec); consumer.ack(&rec); }
//!     consumer.commit().await?;
//! }
//! ```

use super::consumer::{self, StartAt};
use super::{unexpected, Client, ClientError};
use meshlog_protocol::batch::Record;
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupDescription, GroupListing, GroupRequest, GroupResponse, JoinGroup,
    OffsetCommit, TopicPartition,
};
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where a member starts in a partition its group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetPolicy {
    /// The oldest record kept (the default: a work queue loses no task).
    #[default]
    Earliest,
    /// Only records written from now on.
    Latest,
}

/// How a member joins and reads.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Group name.
    pub group: String,
    /// Shown by `group describe`.
    pub client_id: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// How partitions are spread over members.
    pub assignor: Assignor,
    /// The member is removed this long after its last heartbeat.
    pub session_timeout: Duration,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Without a committed offset, start here.
    pub reset: ResetPolicy,
    /// Long-poll per fetch round (kept short: heartbeats run between rounds).
    pub fetch_wait: Duration,
    /// Bytes per partition per fetch.
    pub fetch_max_bytes: u32,
    /// How long group calls keep retrying while the coordinator moves.
    pub retry_budget: Duration,
}

impl GroupConfig {
    /// Defaults for a group reading `topics`.
    pub fn new(group: &str, topics: Vec<String>) -> GroupConfig {
        GroupConfig {
            group: group.to_string(),
            client_id: "meshlog".to_string(),
            topics,
            assignor: Assignor::default(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            reset: ResetPolicy::default(),
            fetch_wait: Duration::from_millis(200),
            fetch_max_bytes: 1 << 20,
            retry_budget: Duration::from_secs(30),
        }
    }

    /// A sixth of the session (at most 500 ms): a rebalance needs every member to hear
    /// of it, so this bounds how long one takes.
    fn heartbeat_interval(&self) -> Duration {
        (self.session_timeout / 6).min(Duration::from_millis(500))
    }
}

/// A record and where it came from.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Its partition.
    pub tp: TopicPartition,
    /// The record.
    pub record: Record,
}

/// Counters of a member's life, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupStats {
    /// Generations joined.
    pub generations: u64,
    /// Commits acknowledged.
    pub commits: u64,
}

/// One member of a consumer group.
pub struct GroupConsumer {
    client: Client,
    cfg: GroupConfig,
    member_id: Option<String>,
    generation: Option<u32>,
    /// Next offset to fetch, per assigned partition.
    fetch_at: BTreeMap<TopicPartition, u64>,
    /// Next offset to commit (processed up to), per assigned partition.
    acked: BTreeMap<TopicPartition, u64>,
    /// What the coordinator has, per assigned partition.
    committed: BTreeMap<TopicPartition, u64>,
    last_heartbeat: Instant,
    stats: GroupStats,
}

impl GroupConsumer {
    /// A member that joins on its first [`GroupConsumer::poll`].
    pub fn new(client: Client, cfg: GroupConfig) -> GroupConsumer {
        GroupConsumer {
            client,
            cfg,
            member_id: None,
            generation: None,
            fetch_at: BTreeMap::new(),
            acked: BTreeMap::new(),
            committed: BTreeMap::new(),
            last_heartbeat: Instant::now(),
            stats: GroupStats::default(),
        }
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.fetch_at.keys().cloned().collect()
    }

    /// The id the coordinator gave this member.
    pub fn member_id(&self) -> Option<&str> {
        self.member_id.as_deref()
    }

    /// The generation this member is part of.
    pub fn generation(&self) -> Option<u32> {
        self.generation
    }

    /// Offsets the coordinator acknowledged as committed, per assigned partition.
    pub fn committed(&self) -> &BTreeMap<TopicPartition, u64> {
        &self.committed
    }

    /// Counters.
    pub fn stats(&self) -> GroupStats {
        self.stats
    }

    /// Join if needed, heartbeat if due, then read the assigned partitions once.
    pub async fn poll(&mut self) -> Result<Vec<Consumed>, ClientError> {
        if self.generation.is_none() {
            self.join().await?;
        }
        if self.last_heartbeat.elapsed() >= self.cfg.heartbeat_interval() {
            self.heartbeat().await?;
            if self.generation.is_none() {
                self.join().await?;
            }
        }
        if self.fetch_at.is_empty() {
            tokio::time::sleep(self.cfg.fetch_wait).await;
            return Ok(Vec::new());
        }
        let parts: Vec<(TopicPartition, u64)> =
            self.fetch_at.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        let wait = self.cfg.fetch_wait.as_millis() as u32;
        let fetches = parts.iter().map(|(tp, off)| {
            consumer::fetch(&self.client, &tp.topic, tp.partition, *off, self.cfg.fetch_max_bytes, wait)
        });
        let results = futures::future::join_all(fetches).await;
        let mut out = Vec::new();
        for ((tp, off), res) in parts.into_iter().zip(results) {
            match res {
                Ok(f) => {
                    self.fetch_at.insert(tp.clone(), f.next_offset.max(off));
                    out.extend(f.records.into_iter().map(|record| Consumed { tp: tp.clone(), record }));
                }
                Err(ClientError::Server(w)) if w.code == ErrorCode::OffsetOutOfRange => {
                    let at = self.reset_position(&tp).await?;
                    tracing::warn!(%tp, from = off, to = at, "position out of range; reset");
                    self.fetch_at.insert(tp, at);
                }
                Err(e) if e.is_retriable() => tracing::debug!(%tp, error = %e, "fetch failed; retrying"),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Mark a record processed: the next [`GroupConsumer::commit`] commits past it.
    pub fn ack(&mut self, c: &Consumed) {
        if self.fetch_at.contains_key(&c.tp) {
            let next = c.record.offset as u64 + 1;
            let a = self.acked.entry(c.tp.clone()).or_insert(next);
            *a = (*a).max(next);
        }
    }

    /// Commit every processed position that moved since the last commit.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let (Some(member), Some(generation)) = (self.member_id.clone(), self.generation) else {
            return Ok(());
        };
        let offsets: Vec<(TopicPartition, CommittedOffset)> = self
            .acked
            .iter()
            .filter(|(tp, o)| self.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), CommittedOffset { offset: *o, metadata: String::new() }))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let req = GroupRequest::Commit(OffsetCommit {
            group: self.cfg.group.clone(),
            member: Some((member, generation)),
            offsets: offsets.clone(),
        });
        match self.call(req).await {
            Ok(_) => {
                for (tp, o) in offsets {
                    self.committed.insert(tp, o.offset);
                }
                self.stats.commits += 1;
                Ok(())
            }
            Err(e) => {
                self.on_group_error(&e);
                Err(e)
            }
        }
    }

    /// Commit, then leave the group so its partitions move at once.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = self.commit().await;
        if let Some(member_id) = self.member_id.take() {
            let req = GroupRequest::Leave { group: self.cfg.group.clone(), member_id };
            self.call(req).await?;
        }
        committed
    }

    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        let (Some(member_id), Some(generation)) = (self.member_id.clone(), self.generation) else {
            return Ok(());
        };
        self.last_heartbeat = Instant::now();
        let req = GroupRequest::Heartbeat { group: self.cfg.group.clone(), member_id, generation };
        match self.call(req).await {
            Ok(_) => Ok(()),
            Err(ClientError::Server(w)) if w.code == ErrorCode::RebalanceInProgress => {
                if !self.cfg.assignor.is_cooperative() {
                    // Eager: hand back everything, committed, before rejoining.
                    if let Err(e) = self.commit().await {
                        tracing::warn!(error = %e, "commit before rejoining failed");
                    }
                    self.drop_partitions(None);
                }
                self.generation = None;
                Ok(())
            }
            Err(e) if self.on_group_error(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// React to a group error: true if it meant "rejoin" (handled).
    fn on_group_error(&mut self, e: &ClientError) -> bool {
        let ClientError::Server(w) = e else { return false };
        match w.code {
            ErrorCode::RebalanceInProgress => {
                self.generation = None;
                true
            }
            // Fenced: another member may own these partitions now; nothing to commit.
            ErrorCode::IllegalGeneration => {
                self.drop_partitions(None);
                self.generation = None;
                true
            }
            ErrorCode::UnknownMemberId | ErrorCode::GroupIdNotFound => {
                self.drop_partitions(None);
                self.generation = None;
                self.member_id = None;
                true
            }
            _ => false,
        }
    }

    /// Forget partitions (all, or those not in `keep`).
    fn drop_partitions(&mut self, keep: Option<&[TopicPartition]>) {
        let gone = |tp: &TopicPartition| keep.is_none_or(|k| !k.contains(tp));
        self.fetch_at.retain(|tp, _| !gone(tp));
        self.acked.retain(|tp, _| !gone(tp));
        self.committed.retain(|tp, _| !gone(tp));
    }

    /// Join until a generation forms, fetch the assignment, and take it up.
    async fn join(&mut self) -> Result<(), ClientError> {
        let started = Instant::now();
        loop {
            let req = GroupRequest::Join(JoinGroup {
                group: self.cfg.group.clone(),
                member_id: self.member_id.clone(),
                client_id: self.cfg.client_id.clone(),
                topics: self.cfg.topics.clone(),
                assignor: self.cfg.assignor,
                session_timeout_ms: self.cfg.session_timeout.as_millis() as u32,
                rebalance_timeout_ms: self.cfg.rebalance_timeout.as_millis() as u32,
                owned: self.fetch_at.keys().cloned().collect(),
            });
            let joined = match self.call(req).await {
                Ok(GroupResponse::Joined(j)) => j,
                Ok(other) => return Err(unexpected(ClientResponse::Group(other))),
                Err(ClientError::Server(w)) if w.code == ErrorCode::UnknownMemberId => {
                    self.member_id = None;
                    self.drop_partitions(None);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.member_id = Some(joined.member_id.clone());
            self.last_heartbeat = Instant::now();
            let Some(generation) = joined.generation else {
                if started.elapsed() > self.cfg.rebalance_timeout + self.cfg.session_timeout {
                    return Err(ClientError::Server(WireError::new(
                        ErrorCode::RebalanceInProgress,
                        format!("group '{}' did not finish rebalancing in time", self.cfg.group),
                    )));
                }
                tokio::time::sleep(JOIN_POLL).await;
                continue;
            };
            let req =
                GroupRequest::Sync { group: self.cfg.group.clone(), member_id: joined.member_id, generation };
            let assignment = match self.call(req).await {
                Ok(GroupResponse::Assignment(a)) => a,
                Ok(other) => return Err(unexpected(ClientResponse::Group(other))),
                Err(e) if self.on_group_error(&e) => continue,
                Err(e) => return Err(e),
            };
            self.take_up(generation, assignment).await?;
            return Ok(());
        }
    }

    /// Apply an assignment: commit and drop revoked partitions, position new ones at
    /// their committed offsets.
    async fn take_up(&mut self, generation: u32, assignment: Vec<TopicPartition>) -> Result<(), ClientError> {
        self.generation = Some(generation);
        self.stats.generations += 1;
        let revoked: Vec<TopicPartition> =
            self.fetch_at.keys().filter(|tp| !assignment.contains(tp)).cloned().collect();
        if !revoked.is_empty() {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "commit of revoked partitions failed");
            }
            self.drop_partitions(Some(&assignment));
        }
        let added: Vec<TopicPartition> =
            assignment.iter().filter(|tp| !self.fetch_at.contains_key(*tp)).cloned().collect();
        tracing::info!(group = %self.cfg.group, generation, ?assignment, ?revoked, "assignment");
        if added.is_empty() {
            return Ok(());
        }
        let req =
            GroupRequest::FetchOffsets { group: self.cfg.group.clone(), partitions: Some(added.clone()) };
        let committed: BTreeMap<TopicPartition, u64> = match self.call(req).await? {
            GroupResponse::Offsets(v) => v.into_iter().map(|(tp, o)| (tp, o.offset)).collect(),
            other => return Err(unexpected(ClientResponse::Group(other))),
        };
        for tp in added {
            let at = match committed.get(&tp) {
                Some(&o) => {
                    self.committed.insert(tp.clone(), o);
                    o
                }
                None => self.reset_position(&tp).await?,
            };
            self.fetch_at.insert(tp.clone(), at);
        }
        Ok(())
    }

    async fn reset_position(&self, tp: &TopicPartition) -> Result<u64, ClientError> {
        let at = match self.cfg.reset {
            ResetPolicy::Earliest => StartAt::Beginning,
            ResetPolicy::Latest => StartAt::End,
        };
        consumer::start_offset(&self.client, &tp.topic, tp.partition, at).await
    }

    /// One group call, retried while the coordinator moves or loads.
    async fn call(&self, req: GroupRequest) -> Result<GroupResponse, ClientError> {
        group_call(&self.client, req, self.cfg.retry_budget).await
    }
}

/// Pause between join polls while a rebalance goes on.
const JOIN_POLL: Duration = Duration::from_millis(50);

/// Send a group request, retrying retriable errors (no coordinator, loading, moved)
/// with a growing pause until `budget` is spent.
pub async fn group_call(
    client: &Client,
    req: GroupRequest,
    budget: Duration,
) -> Result<GroupResponse, ClientError> {
    let deadline = Instant::now() + budget;
    let mut pause = Duration::from_millis(50);
    loop {
        match client.request(ClientRequest::Group(req.clone())).await {
            Ok(ClientResponse::Group(r)) => return Ok(r),
            Ok(other) => return Err(unexpected(other)),
            Err(e) if e.is_retriable() && Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "group call failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Client {
    /// Every consumer group in the mesh.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        match self.request(ClientRequest::ListGroups).await? {
            ClientResponse::Group(GroupResponse::Groups(v)) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// One group: members, assignment, committed offsets.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let req = GroupRequest::Describe { group: group.to_string() };
        match group_call(self, req, ADMIN_BUDGET).await? {
            GroupResponse::Group(d) => Ok(d),
            other => Err(unexpected(ClientResponse::Group(other))),
        }
    }

    /// A group's committed offsets.
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(TopicPartition, CommittedOffset)>, ClientError> {
        let req = GroupRequest::FetchOffsets { group: group.to_string(), partitions: None };
        match group_call(self, req, ADMIN_BUDGET).await? {
            GroupResponse::Offsets(v) => Ok(v),
            other => Err(unexpected(ClientResponse::Group(other))),
        }
    }

    /// Set a group's offsets from outside (`group reset-offsets`): only a group without
    /// active members accepts it.
    pub async fn set_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, u64)>,
    ) -> Result<(), ClientError> {
        let offsets = offsets
            .into_iter()
            .map(|(tp, offset)| (tp, CommittedOffset { offset, metadata: "reset".to_string() }))
            .collect();
        let req = GroupRequest::Commit(OffsetCommit { group: group.to_string(), member: None, offsets });
        group_call(self, req, ADMIN_BUDGET).await.map(|_| ())
    }
}

/// How long an admin call keeps retrying while the coordinator moves.
const ADMIN_BUDGET: Duration = Duration::from_secs(15);
