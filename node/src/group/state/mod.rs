//! The group core: the consumer groups of one partition of `__consumer_offsets` as a
//! pure state machine (DESIGN decision 12).
//!
//! `Shard::step(now_ms, input) -> Vec<Output>`: no async, no I/O, no clock, no
//! randomness of its own (a new member's id takes a nonce from the request's
//! [`Context`], drawn by the coordinator). The coordinator feeds it client requests, the
//! records of the offsets log read back on load, the outcome of each append it asked
//! for, and ticks; it carries out the outputs in order.
//!
//! - **Nothing is answered before it is in the log.** A commit and a rebalance's new
//!   generation become an [`Output::Append`]; the answer, the commit's offsets and the
//!   generation's `Stable` state wait for [`Input::Appended`]. At most one append is
//!   outstanding: the coordinator steps one request (or tick) at a time per partition,
//!   and a request that arrives meanwhile is refused as retriable.
//! - **An unknown outcome drops everything.** [`Input::AppendFailed`] clears the shard;
//!   the coordinator reloads it from the log ([`Input::Replay`] of every record in
//!   order, then [`Input::Loaded`]). Requests before a load are refused with
//!   `COORDINATOR_LOAD_IN_PROGRESS`.
//! - **Bounded** ([`crate::group::limits`]): a request over a cap changes nothing.
//!
//! It must not import tokio, the broker, the mesh or anything else doing I/O, nor read
//! a clock: `now_ms` is monotonic time passed in, wall-clock stamps come in the inputs.

mod group;
mod live;
mod requests;

use group::Group;
use live::Live;
use meshlog_protocol::codec;
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupRequest, GroupResponse, GroupState, GroupValue, JoinResult, OffsetValue,
    OffsetsKey, TopicPartition, OFFSETS_TOPIC,
};
use meshlog_protocol::{Epoch, ErrorCode, NodeId, WireError};
use std::collections::BTreeMap;

/// Identifies a request and its answer in the coordinator.
pub type Token = u64;

/// A shard's settings, from the node's config.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id, named as the coordinator in listings and descriptions.
    pub coordinator: NodeId,
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout_ms: u32,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout_ms: u32,
    /// How long a group that was empty waits for more members before its first
    /// generation (Kafka's `group.initial.rebalance.delay.ms`; 0: none).
    pub initial_rebalance_delay_ms: u64,
}

/// What the coordinator looked up or drew for a request: things the core may not do
/// itself (ask the mesh, draw randomness, read the wall clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Partition counts of a join's topics (empty for other requests).
    pub partitions: BTreeMap<String, u32>,
    /// Random bits for a new member's id (joins).
    pub member_nonce: u64,
    /// Wall-clock milliseconds, stamped on committed offsets (commits).
    pub unix_ms: i64,
}

/// Everything that happens to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A client's group request, its name and own size already checked.
    Request {
        /// Identifies its answer.
        token: Token,
        /// The request.
        request: GroupRequest,
        /// What the coordinator looked up or drew for it.
        context: Context,
    },
    /// A committed record of the offsets log, read back in order while loading.
    Replay {
        /// Its offset in the log.
        offset: u64,
        /// Its key bytes.
        key: Option<Vec<u8>>,
        /// Its value bytes (`None`: a tombstone).
        value: Option<Vec<u8>>,
    },
    /// Every committed record has been replayed: serve requests as leader of `epoch`.
    Loaded {
        /// The leader epoch of the replica the log was read from.
        epoch: Epoch,
    },
    /// The records of the last [`Output::Append`] are committed, the first at
    /// `base_offset`.
    Appended {
        /// Offset of the first record.
        base_offset: u64,
    },
    /// The last [`Output::Append`] failed or its outcome is unknown.
    AppendFailed {
        /// Why; given to the request that waited for it.
        error: WireError,
    },
    /// Time passes: expire sessions, end rebalances past their deadline, write the
    /// oldest live records again if they pin the log.
    Tick {
        /// The offsets log's first offset.
        log_start: u64,
        /// The offsets log's end.
        log_end: u64,
        /// Wall-clock milliseconds, stamped on offsets written again.
        unix_ms: i64,
    },
}

/// A record for the offsets log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its key (compaction keeps the latest record per key).
    pub key: OffsetsKey,
    /// Its value.
    pub value: Value,
}

/// The value of an offsets-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A committed offset.
    Offset(OffsetValue),
    /// A group's generation, assignor and members.
    Group(GroupValue),
    /// A tombstone: the key is deleted (compaction drops it).
    Deleted,
}

/// What the core asks the coordinator to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Append these records to the offsets log with `acks=all`, in one batch, then step
    /// [`Input::Appended`] or [`Input::AppendFailed`].
    Append(Vec<Record>),
    /// The answer to a request.
    Answer {
        /// The request's token.
        token: Token,
        /// The answer.
        result: Result<GroupResponse, WireError>,
    },
}

/// How a request is answered once what it staged is committed.
#[derive(Debug, Clone)]
enum Reply {
    /// This response.
    Response(GroupResponse),
    /// The member's join result as of then (its generation, if the group is stable).
    Joined { group: String, member_id: String },
}

/// Records staged by the current step, and what follows once they are committed.
#[derive(Debug, Default)]
struct Staged {
    records: Vec<Record>,
    /// Groups whose new generation is in the records: `Stable` once committed.
    generations: Vec<(String, u32)>,
    /// A commit's offsets: kept once committed.
    offsets: Option<(String, Vec<(TopicPartition, CommittedOffset)>)>,
    /// A deleted group: forgotten once its tombstones are committed.
    deleted: Option<String>,
}

/// The append in flight.
#[derive(Debug)]
struct Pending {
    /// Each record's key, and whether it is live (not a tombstone).
    keys: Vec<(OffsetsKey, bool)>,
    generations: Vec<(String, u32)>,
    offsets: Option<(String, Vec<(TopicPartition, CommittedOffset)>)>,
    deleted: Option<String>,
    reply: Option<(Token, Reply)>,
}

/// The consumer groups of one offsets partition, as loaded in one leader epoch.
#[derive(Debug)]
pub struct Shard {
    cfg: Config,
    now: u64,
    /// The leader epoch the state was loaded in; `None`: not loaded (or dropped).
    epoch: Option<Epoch>,
    groups: BTreeMap<String, Group>,
    live: Live,
    staged: Staged,
    pending: Option<Pending>,
    out: Vec<Output>,
}

impl Shard {
    /// An empty shard, not loaded.
    pub fn new(cfg: Config) -> Shard {
        Shard {
            cfg,
            now: 0,
            epoch: None,
            groups: BTreeMap::new(),
            live: Live::default(),
            staged: Staged::default(),
            pending: None,
            out: Vec::new(),
        }
    }

    /// The leader epoch the shard was loaded in (`None`: it must be loaded).
    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    /// Whether an [`Output::Append`] still waits for its outcome.
    pub fn appending(&self) -> bool {
        self.pending.is_some()
    }

    /// Groups held.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Forget everything (leadership lost, or a load begins).
    pub fn clear(&mut self) {
        self.epoch = None;
        self.groups.clear();
        self.live.clear();
        self.staged = Staged::default();
        self.pending = None;
    }

    /// Feed one input at time `now_ms` (monotonic) and take the outputs.
    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.now = self.now.max(now_ms);
        let replay = matches!(input, Input::Replay { .. });
        let generations0 = if cfg!(debug_assertions) && !replay { self.generations() } else { Vec::new() };
        match input {
            Input::Request { token, request, context } => self.on_request(token, request, context),
            Input::Replay { offset, key, value } => self.on_replay(offset, key.as_deref(), value.as_deref()),
            Input::Loaded { epoch } => self.epoch = Some(epoch),
            Input::Appended { base_offset } => self.on_appended(base_offset),
            Input::AppendFailed { error } => self.on_append_failed(error),
            Input::Tick { log_start, log_end, unix_ms } => self.on_tick(log_start, log_end, unix_ms),
        }
        self.check_invariants(&generations0, replay);
        std::mem::take(&mut self.out)
    }

    fn on_request(&mut self, token: Token, request: GroupRequest, context: Context) {
        let result = if self.pending.is_some() {
            // The coordinator steps one request at a time; a request here anyway must
            // not see a state whose last change is not yet in the log.
            Err(err(ErrorCode::CoordinatorLoadInProgress, "the coordinator is writing its log; retry"))
        } else if self.epoch.is_none() {
            Err(err(
                ErrorCode::CoordinatorLoadInProgress,
                format!("the coordinator of {OFFSETS_TOPIC} is still loading; retry"),
            ))
        } else {
            self.serve(request, context)
        };
        match result {
            Ok(reply) => self.finish(Some((token, reply))),
            Err(e) => {
                debug_assert!(self.staged.records.is_empty(), "a refused request stages nothing");
                self.out.push(Output::Answer { token, result: Err(e) });
            }
        }
    }

    /// Append what this step staged, the reply waiting for it; or, with nothing
    /// staged, answer at once.
    fn finish(&mut self, reply: Option<(Token, Reply)>) {
        let staged = std::mem::take(&mut self.staged);
        if staged.records.is_empty() {
            if let Some((token, reply)) = reply {
                let result = self.resolve(reply);
                self.out.push(Output::Answer { token, result });
            }
            return;
        }
        self.pending = Some(Pending {
            keys: staged.records.iter().map(|r| (r.key.clone(), r.value != Value::Deleted)).collect(),
            generations: staged.generations,
            offsets: staged.offsets,
            deleted: staged.deleted,
            reply,
        });
        self.out.push(Output::Append(staged.records));
    }

    fn resolve(&self, reply: Reply) -> Result<GroupResponse, WireError> {
        match reply {
            Reply::Response(r) => Ok(r),
            Reply::Joined { group, member_id } => {
                let g = self.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
                let generation = match g.state {
                    GroupState::Stable if g.members.contains_key(&member_id) => Some(g.generation),
                    _ => None,
                };
                let members = g.members.len() as u32;
                Ok(GroupResponse::Joined(JoinResult { member_id, generation, members }))
            }
        }
    }

    fn on_appended(&mut self, base_offset: u64) {
        let Some(p) = self.pending.take() else {
            debug_assert!(false, "an append completed that was not asked for");
            return;
        };
        for (i, (key, live)) in p.keys.into_iter().enumerate() {
            self.live.place(key, live.then_some(base_offset + i as u64));
        }
        if let Some(group) = p.deleted {
            tracing::info!(%group, "group deleted");
            self.groups.remove(&group);
        }
        for (group, generation) in p.generations {
            let Some(g) = self.groups.get_mut(&group) else { continue };
            if g.state == GroupState::CompletingRebalance && g.generation == generation {
                g.state = GroupState::Stable;
            }
            let members = g.members.len();
            tracing::info!(%group, generation, members, follow_up = g.follow_up, "rebalance done");
        }
        if let Some((group, offsets)) = p.offsets {
            let g = self.groups.entry(group).or_insert_with(|| Group::new(Assignor::default()));
            g.offsets.extend(offsets);
            if g.members.is_empty() && g.generation == 0 {
                g.state = GroupState::Empty;
            }
        }
        if let Some((token, reply)) = p.reply {
            let result = self.resolve(reply);
            self.out.push(Output::Answer { token, result });
        }
    }

    fn on_append_failed(&mut self, error: WireError) {
        let Some(p) = self.pending.take() else {
            debug_assert!(false, "an append failed that was not asked for");
            return;
        };
        self.clear();
        if let Some((token, _)) = p.reply {
            self.out.push(Output::Answer { token, result: Err(error) });
        }
    }

    fn on_tick(&mut self, log_start: u64, log_end: u64, unix_ms: i64) {
        if self.epoch.is_none() || self.pending.is_some() {
            return;
        }
        let stale: Vec<Record> = self
            .live
            .stale(log_start, log_end)
            .into_iter()
            .filter_map(|k| self.current(k, unix_ms))
            .collect();
        if !stale.is_empty() {
            tracing::debug!(records = stale.len(), "writing the oldest live records again");
            self.staged.records.extend(stale);
        }
        let now = self.now;
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let Some(g) = self.groups.get_mut(&name) else { continue };
            let gone = g.expire(now);
            if !gone.is_empty() {
                tracing::info!(group = %name, members = ?gone, "session timeout: members removed");
                g.rebalance(now);
            }
            self.settle(&name);
        }
        self.finish(None);
    }

    /// End the group's rebalance if it can end now, staging the new generation's record
    /// (the group is `Stable` only once it is committed).
    fn settle(&mut self, group: &str) {
        let Some(g) = self.groups.get_mut(group) else { return };
        if g.state == GroupState::PreparingRebalance && g.members.is_empty() {
            g.state = GroupState::Empty;
            g.deadline_ms = None;
            g.hold = None;
            g.generation += 1;
        } else if !g.ready(self.now) {
            return;
        }
        let value = if g.state == GroupState::Empty { g.record() } else { g.next_generation() };
        self.staged.generations.push((group.to_string(), value.generation));
        let key = OffsetsKey::Group { group: group.to_string() };
        self.staged.records.push(Record { key, value: Value::Group(value) });
    }

    /// The current value of a live key, to be written again (a group mid-rebalance:
    /// none yet).
    fn current(&self, key: OffsetsKey, unix_ms: i64) -> Option<Record> {
        let value = match &key {
            OffsetsKey::Offset { group, tp } => {
                let committed = self.groups.get(group)?.offsets.get(tp)?.clone();
                Value::Offset(OffsetValue { committed, commit_ms: unix_ms })
            }
            OffsetsKey::Group { group } => {
                let g = self.groups.get(group)?;
                if !matches!(g.state, GroupState::Stable | GroupState::Empty) {
                    return None;
                }
                Value::Group(g.record())
            }
        };
        Some(Record { key, value })
    }

    /// Apply one record of the offsets log to the groups being loaded.
    fn on_replay(&mut self, offset: u64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key.and_then(|k| codec::decode::<OffsetsKey>(k).ok()) else {
            tracing::warn!(offset, "offsets log: record with an unreadable key skipped");
            return;
        };
        self.live.place(key.clone(), value.is_some().then_some(offset));
        let now = self.now;
        let groups = &mut self.groups;
        match key {
            OffsetsKey::Offset { group, tp } => {
                let g = groups.entry(group).or_insert_with(|| Group::new(Assignor::default()));
                match value.map(codec::decode::<OffsetValue>) {
                    Some(Ok(v)) => {
                        g.offsets.insert(tp, v.committed);
                    }
                    None => {
                        g.offsets.remove(&tp);
                    }
                    Some(Err(e)) => tracing::warn!(offset, error = %e, "offsets log: bad offset value"),
                }
            }
            OffsetsKey::Group { group } => match value.map(codec::decode::<GroupValue>) {
                Some(Ok(v)) => groups.entry(group).or_insert_with(|| Group::new(v.assignor)).restore(v, now),
                None => {
                    groups.remove(&group);
                }
                Some(Err(e)) => tracing::warn!(offset, error = %e, "offsets log: bad group value"),
            },
        }
    }

    fn generations(&self) -> Vec<(String, u32)> {
        self.groups.iter().map(|(n, g)| (n.clone(), g.generation)).collect()
    }

    /// The invariants every step keeps (debug builds). Mid-load (a replay) only the
    /// bookkeeping is checked: the log is the truth there, not the caps.
    fn check_invariants(&self, generations0: &[(String, u32)], replay: bool) {
        if !cfg!(debug_assertions) {
            return;
        }
        debug_assert!(self.staged.records.is_empty(), "a step leaves nothing staged");
        debug_assert!(self.live.consistent(), "each live key sits at one offset");
        let appends = self.out.iter().filter(|o| matches!(o, Output::Append(_))).count();
        debug_assert!(appends <= 1, "at most one append in flight");
        debug_assert!(appends == 0 || self.pending.is_some(), "an append is awaited");
        if replay {
            return;
        }
        for (name, generation0) in generations0 {
            if let Some(g) = self.groups.get(name) {
                debug_assert!(g.generation >= *generation0, "group '{name}': the generation never decreases");
            }
        }
        for (name, g) in &self.groups {
            let preparing = g.state == GroupState::PreparingRebalance;
            debug_assert_eq!(
                g.deadline_ms.is_some(),
                preparing,
                "group '{name}': a deadline only while preparing"
            );
            debug_assert!(preparing || g.hold.is_none(), "group '{name}': held only while preparing");
            debug_assert_eq!(
                g.state == GroupState::Empty,
                g.members.is_empty(),
                "group '{name}': empty iff no members"
            );
            debug_assert!(
                self.pending.is_some() || g.state != GroupState::CompletingRebalance,
                "group '{name}': completing only while its generation is being written"
            );
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
