//! The replica core: one partition's replication protocol as a pure state machine.
//!
//! `Replica::step(now_ms, input) -> Vec<Output>`: no async, no I/O, no clock, no
//! randomness of its own (election jitter comes from a seed in its config). The driver
//! feeds it messages, client appends, flush completions and ticks, and executes its
//! outputs in order: a `PersistHardState` must be durable before any later output runs.
//!
//! The protocol (DESIGN.md decisions 4-8, 11): leaders are elected per epoch by a
//! majority of the replica set after a pre-vote; a replica promises one candidate per
//! epoch, durably, only if the candidate's log is at least as up to date, and not while
//! it honours a live leader's lease. Every message carries an epoch; older epochs are
//! refused. A new leader appends an epoch-start marker (unless its log never held an
//! entry: nothing earlier needs committing, and the first record lands at offset 0).
//! Followers pull (fetch) with their last epoch; a diverging follower is told where the
//! shared epoch ends and truncates (never below its high watermark). The high watermark
//! is the largest offset flushed by a majority, past the start of the leader's epoch
//! (its marker, or its first batch). `acks=all` waits for every
//! in-sync replica. Idempotent producers' retries are recognised from sequences kept in
//! the log.

mod follower;
mod leader;
mod log;
pub(crate) mod producers;
pub mod types;

pub use log::Log;
pub use types::*;

use producers::Producers;
use std::collections::{BTreeSet, VecDeque};

/// Protocol timing and sizes for one partition's replica.
#[derive(Debug, Clone)]
pub struct Config {
    /// This replica's index in the replica set.
    pub me: ReplicaIdx,
    /// Size of the replica set.
    pub replicas: usize,
    /// `min.insync.replicas` (at least a majority, validated upstream).
    pub min_insync: usize,
    /// Followers re-fetch and leaders answer parked fetches this often.
    pub heartbeat_ms: u64,
    /// A follower that has not heard from a leader for this long (plus jitter) runs
    /// for election; a leader that has not heard from a majority for this long steps down.
    pub election_timeout_ms: u64,
    /// How long a follower honours a leader it has heard from (refusing other
    /// candidates); also how long a restarted replica waits before voting.
    pub lease_ms: u64,
    /// A follower not caught up for this long leaves the in-sync set.
    pub replica_lag_max_ms: u64,
    /// Entries per fetch response.
    pub max_fetch_entries: usize,
    /// Seed of the election-jitter sequence.
    pub seed: u64,
}

/// What the replica is doing.
#[derive(Debug, Clone)]
enum Role {
    Follower,
    PreCandidate { votes: BTreeSet<ReplicaIdx> },
    Candidate { votes: BTreeSet<ReplicaIdx> },
    Leader(leader::LeaderState),
}

/// One replica of one partition.
#[derive(Debug, Clone)]
pub struct Replica {
    cfg: Config,
    now: u64,
    hard: HardState,
    log: Log,
    flushed_end: u64,
    hw: u64,
    role: Role,
    leader: Option<ReplicaIdx>,
    /// The replica known to lead `hard.promised` (this one once elected, or the sender of
    /// the first heartbeat or entries of that epoch): the only one whose fetch answers of
    /// that epoch are taken. Forgotten whenever the promise moves. Unlike `leader`, it is
    /// kept while this replica runs a pre-vote, since that leader may still answer.
    epoch_leader: Option<ReplicaIdx>,
    last_heard: u64,
    election_deadline: u64,
    vote_after: u64,
    fetch_sent_at: Option<u64>,
    rng: u64,
    next_flush_id: u64,
    flushes: VecDeque<(u64, u64)>,
    producers: Producers,
    /// The producer state of the entries below the log start (retention deleted them):
    /// what `producers` is rebuilt on.
    deleted_producers: Producers,
    /// Set for a replica that lost its store (same identity, empty disk): its empty
    /// log would make it grant any candidate and so let a stale one win without the
    /// committed entries. It neither votes nor campaigns until it holds, durably, both a
    /// committed epoch-start marker of the current leader (what earlier leaders
    /// committed lies below it) and everything up to the first HW a leader reported to
    /// it (what the current leader committed, perhaps counting the lost copy).
    catching_up: bool,
    /// While catching up: the first high watermark a leader reported to it. Commits
    /// made before the loss may have counted the lost copy; that leader's HW covers
    /// them (a leader's HW only grows), so the replica must hold at least this much.
    catch_up_target: Option<u64>,
    out: Vec<Output>,
}

/// The producer state of deleted entries once `entries` are deleted too (by retention or
/// compaction; what the node saves with the new log start), bounded by
/// `producers::MAX_DELETED_PRODUCERS` (10,000).
pub fn producers_after(deleted: &[ProducerState], entries: &[Entry]) -> Vec<ProducerState> {
    let mut p = Producers::from_snapshot(deleted).then(entries);
    p.keep_latest(producers::MAX_DELETED_PRODUCERS);
    p.snapshot()
}

impl Replica {
    /// A replica recovered from durable state: its hard state and the entries of its
    /// (durable) log. It will not vote for one lease period, since it may have promised
    /// or followed a leader it no longer remembers hearing from.
    pub fn recover(cfg: Config, hard: HardState, log: Log, now: u64) -> Replica {
        let end = log.end();
        let producers = Producers::rebuild(log.entries());
        let mut r = Replica {
            rng: cfg.seed | 1,
            cfg,
            now,
            hard,
            log,
            flushed_end: end,
            hw: 0,
            role: Role::Follower,
            leader: None,
            epoch_leader: None,
            last_heard: now,
            election_deadline: now,
            vote_after: now,
            fetch_sent_at: None,
            next_flush_id: 1,
            flushes: VecDeque::new(),
            producers,
            deleted_producers: Producers::default(),
            catching_up: false,
            catch_up_target: None,
            out: Vec::new(),
        };
        // A replica that never promised anything has no vote or lease to forget.
        if hard.promised > Epoch::new(0) {
            r.vote_after = now + r.cfg.lease_ms;
        }
        r.reset_election_deadline();
        // Alone in its set, it need not wait for anyone: it leads at its first tick. The
        // first replica of a brand-new partition (nothing promised, nothing held) also
        // campaigns at once, so a new topic has leaders without an election timeout's
        // wait, as Kafka's have at creation (clients ask right away). Timing is never a
        // matter of safety, and the others keep their timeouts, so they do not compete.
        let pristine = r.hard == HardState::default() && r.log.end() == 0;
        if r.cfg.replicas == 1 || (pristine && r.cfg.me == 0) {
            r.election_deadline = now;
        }
        r
    }

    /// The same replica, remembering `snapshot` as the producer state of the entries
    /// below its log start (saved with the start by retention or a reset).
    pub fn with_deleted_producers(mut self, snapshot: &[ProducerState]) -> Replica {
        self.deleted_producers = Producers::from_snapshot(snapshot);
        self.producers = self.deleted_producers.then(self.log.entries());
        self
    }

    /// Feed one input at time `now_ms` (monotonic) and take the outputs.
    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.now = self.now.max(now_ms);
        let (hw0, promised0) = (self.hw, self.hard.promised);
        match input {
            Input::Tick => self.on_tick(),
            Input::Receive { from, msg } => self.on_message(from, msg),
            Input::ClientAppend { token, count, producer, acks } => {
                self.on_client_append(token, count, producer, acks)
            }
            Input::Flushed { id } => self.on_flushed(id),
            Input::LogStart { start, producers } => self.on_log_start(start, producers),
        }
        debug_assert!(self.hw >= hw0, "the high watermark never decreases");
        debug_assert!(self.hard.promised >= promised0, "the promised epoch never decreases");
        debug_assert!(self.flushed_end <= self.log.end());
        std::mem::take(&mut self.out)
    }

    /// Mark this replica as rebuilt from a lost store: no votes and no candidacy until
    /// it has caught up (see the field's doc). A single replica has nobody to catch up
    /// from, and is never marked.
    pub fn set_catching_up(&mut self) {
        self.catching_up = self.cfg.replicas > 1;
        self.check_caught_up();
    }

    /// Whether it still waits to catch up before voting.
    pub fn catching_up(&self) -> bool {
        self.catching_up
    }

    fn check_caught_up(&mut self) {
        if !self.catching_up {
            return;
        }
        let epoch = self.hard.promised;
        let entries = self.log.entries();
        let first = entries.partition_point(|e| e.epoch < epoch);
        let holds_target = self.catch_up_target.is_some_and(|t| self.flushed_end >= t);
        // The epoch's start: its marker, or its first entry at offset 0 (a leader elected
        // over an empty log writes no marker; nothing was committed before it).
        let starts_epoch = |m: &&Entry| m.epoch == epoch && (m.epoch_start || m.base == 0);
        let marker_committed = match entries.get(first).filter(starts_epoch) {
            Some(m) => self.hw > m.base && self.flushed_end > m.base,
            // The epoch began below the log start, whose entries retention deleted once
            // they were committed: so was the epoch's marker, and all before it.
            None => {
                let start = self.log.start();
                self.log.start_epoch() == epoch && start > 0 && self.hw >= start && self.flushed_end >= start
            }
        };
        if marker_committed && holds_target {
            self.catching_up = false;
        }
    }

    // ---- accessors (for the driver, the simulator and tests) ----

    /// The promised epoch.
    pub fn epoch(&self) -> Epoch {
        self.hard.promised
    }
    /// The hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard
    }
    /// Whether this replica leads its promised epoch.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }
    /// The leader this replica believes in.
    pub fn leader(&self) -> Option<ReplicaIdx> {
        self.leader
    }
    /// The high watermark.
    pub fn high_watermark(&self) -> u64 {
        self.hw
    }
    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// How far the log is durable.
    pub fn flushed_end(&self) -> u64 {
        self.flushed_end
    }
    /// Where epoch `epoch` ends, as the leader answers Kafka's OffsetForLeaderEpoch from
    /// its history ([`Log::epoch_end`], with the promised epoch as the current one, which
    /// may have no entry yet). Only the leader's history is known to be complete.
    pub fn epoch_end(&self, epoch: Epoch) -> Result<Option<(Epoch, u64)>, AppendError> {
        if !self.is_leader() {
            return Err(AppendError::NotLeader { leader: self.leader, epoch: self.hard.promised });
        }
        Ok(self.log.epoch_end(epoch, self.hard.promised))
    }
    /// The in-sync replicas (the leader's view; only the leader itself otherwise).
    pub fn in_sync(&self) -> Vec<ReplicaIdx> {
        match &self.role {
            Role::Leader(l) => l.in_sync(&self.cfg, self.now),
            _ => vec![self.cfg.me],
        }
    }

    // ---- shared machinery ----

    fn send(&mut self, to: ReplicaIdx, msg: Message) {
        self.out.push(Output::Send { to, msg });
    }

    fn others(&self) -> impl Iterator<Item = ReplicaIdx> {
        let me = self.cfg.me;
        (0..self.cfg.replicas).filter(move |r| *r != me)
    }

    fn majority(&self) -> usize {
        self.cfg.replicas / 2 + 1
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, seeded by the driver.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn reset_election_deadline(&mut self) {
        let t = self.cfg.election_timeout_ms.max(1);
        let jitter = self.next_random() % t;
        self.election_deadline = self.now + t + jitter;
    }

    fn persist_hard(&mut self, hard: HardState) {
        debug_assert!(hard.promised >= self.hard.promised);
        if hard.promised != self.hard.promised {
            self.epoch_leader = None;
        }
        self.hard = hard;
        self.out.push(Output::PersistHardState(hard));
    }

    fn request_flush(&mut self) {
        let id = self.next_flush_id;
        self.next_flush_id += 1;
        self.flushes.push_back((id, self.log.end()));
        self.out.push(Output::Flush { id });
    }

    fn on_flushed(&mut self, id: u64) {
        while let Some(&(fid, end)) = self.flushes.front() {
            if fid > id {
                break;
            }
            self.flushes.pop_front();
            self.flushed_end = self.flushed_end.max(end.min(self.log.end()));
        }
        self.check_caught_up();
        match self.role {
            Role::Leader(_) => self.leader_progress(),
            // Tell the leader at once: its high watermark waits for this.
            _ => self.send_fetch(),
        }
    }

    /// Truncate the log to `end`, never below the high watermark.
    fn truncate(&mut self, end: u64) {
        let end = end.max(self.hw);
        if end >= self.log.end() {
            return;
        }
        debug_assert!(self.log.ends_at_boundary(end), "truncation at an entry boundary");
        self.log.truncate(end);
        self.flushed_end = self.flushed_end.min(end);
        for f in self.flushes.iter_mut() {
            f.1 = f.1.min(end);
        }
        self.producers = self.deleted_producers.then(self.log.entries());
        self.out.push(Output::Truncate { end });
    }

    /// Retention deleted the stored entries below `start`, all committed: forget them,
    /// and take the producer state saved for them. Not bounded by our HW, which starts at
    /// 0 after a restart while retention goes by the node's saved one: a leader whose
    /// entries outlive their bytes could answer a follower below them neither with the
    /// bytes nor with `Behind`. What was deleted counts as flushed.
    fn on_log_start(&mut self, start: u64, producers: Vec<ProducerState>) {
        if start <= self.log.start() {
            return;
        }
        self.log.trim(start);
        self.deleted_producers = Producers::from_snapshot(&producers);
        self.flushed_end = self.flushed_end.max(self.log.start());
    }

    /// Drop the whole log for the leader's, which starts at `start` (everything below it
    /// committed and deleted): ours is empty from there, and durable so once the output
    /// has run, which the driver completes before the next one. The leader's producer
    /// state of the deleted entries becomes ours.
    fn reset_log(&mut self, start: u64, start_epoch: Epoch, producers: Vec<ProducerState>) {
        self.log.reset(start, start_epoch);
        self.flushed_end = start;
        for f in self.flushes.iter_mut() {
            f.1 = f.1.min(start);
        }
        self.deleted_producers = Producers::from_snapshot(&producers);
        self.producers = self.deleted_producers.clone();
        self.out.push(Output::ResetLog { start, start_epoch, producers });
        if start > self.hw {
            self.hw = start;
            self.out.push(Output::HighWatermark(start));
        }
    }

    /// Adopt a higher epoch seen in a message: forget any vote, step down.
    fn observe_epoch(&mut self, epoch: Epoch) {
        if epoch > self.hard.promised {
            self.persist_hard(HardState { promised: epoch, voted_for: None });
            self.step_down(None);
        }
    }

    fn step_down(&mut self, leader: Option<ReplicaIdx>) {
        if let Role::Leader(l) = std::mem::replace(&mut self.role, Role::Follower) {
            for p in l.pending {
                self.out.push(Output::Ack { token: p.token, result: Err(AppendError::LeadershipLost) });
            }
        }
        if self.leader != leader {
            self.leader = leader;
            self.out.push(Output::Leader { epoch: self.hard.promised, leader });
        }
        self.fetch_sent_at = None;
        self.reset_election_deadline();
    }

    fn on_tick(&mut self) {
        match &self.role {
            Role::Leader(_) => self.leader_tick(),
            // No candidacy while catching up, nor once the epochs are used up.
            _ if self.now >= self.election_deadline
                && (self.catching_up || self.hard.promised.next().is_none()) =>
            {
                self.reset_election_deadline()
            }
            _ if self.now >= self.election_deadline => self.start_prevote(),
            Role::Follower => {
                let stale = self.fetch_sent_at.is_none_or(|t| self.now >= t + 2 * self.cfg.heartbeat_ms);
                if self.leader.is_some() && stale {
                    self.send_fetch();
                }
            }
            _ => {}
        }
    }

    fn on_message(&mut self, from: ReplicaIdx, msg: Message) {
        // A malformed message (an epoch beyond `Epoch::MAX`, entries that do not follow
        // each other) is dropped like a lost one: an absurd epoch adopted as the promise
        // would leave no epoch to elect a leader in.
        if from >= self.cfg.replicas || from == self.cfg.me || !msg.is_well_formed() {
            return;
        }
        match msg {
            Message::PreVote { epoch, last_epoch, last_end } => {
                self.on_prevote(from, epoch, last_epoch, last_end)
            }
            Message::PreVoteResp { epoch, granted } => self.on_prevote_resp(from, epoch, granted),
            Message::Vote { epoch, last_epoch, last_end } => self.on_vote(from, epoch, last_epoch, last_end),
            Message::VoteResp { epoch, granted } => self.on_vote_resp(from, epoch, granted),
            Message::Fetch { epoch, offset, last_epoch, flushed_end } => {
                self.on_fetch(from, epoch, offset, last_epoch, flushed_end)
            }
            Message::FetchResp { epoch, hw, body } => self.on_fetch_resp(from, epoch, hw, body),
            Message::Stale { epoch } => self.observe_epoch(epoch),
        }
    }

    // ---- elections ----

    fn lease_live(&self) -> bool {
        self.leader.is_some_and(|l| l != self.cfg.me) && self.now < self.last_heard + self.cfg.lease_ms
    }

    fn start_prevote(&mut self) {
        self.reset_election_deadline();
        if self.leader.is_some() && !self.is_leader() {
            self.leader = None;
            self.out.push(Output::Leader { epoch: self.hard.promised, leader: None });
        }
        let Some(epoch) = self.hard.promised.next() else { return };
        self.role = Role::PreCandidate { votes: BTreeSet::from([self.cfg.me]) };
        let msg = Message::PreVote { epoch, last_epoch: self.log.last_epoch(), last_end: self.log.end() };
        for r in self.others().collect::<Vec<_>>() {
            self.send(r, msg.clone());
        }
        self.check_prevotes();
    }

    fn on_prevote(&mut self, from: ReplicaIdx, epoch: Epoch, last_epoch: Epoch, last_end: u64) {
        // A candidate behind our promise is told the epoch, and adopts it: otherwise a
        // replica whose log must lead (the most up to date) but whose epoch lags could
        // never pass a pre-vote at a replica that promised ahead of it (a liveness trap
        // the simulator found once a third replica stops voting).
        if epoch <= self.hard.promised {
            return self.send(from, Message::Stale { epoch: self.hard.promised });
        }
        let granted = epoch > self.hard.promised
            && !self.catching_up
            && self.log.is_behind_or_equal(last_epoch, last_end)
            && !self.lease_live()
            && !self.is_leader();
        self.send(from, Message::PreVoteResp { epoch, granted });
    }

    fn on_prevote_resp(&mut self, from: ReplicaIdx, epoch: Epoch, granted: bool) {
        if let Role::PreCandidate { votes } = &mut self.role {
            if granted && Some(epoch) == self.hard.promised.next() {
                votes.insert(from);
            }
        }
        self.check_prevotes();
    }

    fn check_prevotes(&mut self) {
        let Role::PreCandidate { votes } = &self.role else { return };
        let Some(epoch) = self.hard.promised.next().filter(|_| votes.len() >= self.majority()) else {
            return;
        };
        self.persist_hard(HardState { promised: epoch, voted_for: Some(self.cfg.me) });
        self.role = Role::Candidate { votes: BTreeSet::from([self.cfg.me]) };
        let msg = Message::Vote { epoch, last_epoch: self.log.last_epoch(), last_end: self.log.end() };
        for r in self.others().collect::<Vec<_>>() {
            self.send(r, msg.clone());
        }
        self.check_votes();
    }

    fn on_vote(&mut self, from: ReplicaIdx, epoch: Epoch, last_epoch: Epoch, last_end: u64) {
        if epoch < self.hard.promised || (epoch > self.hard.promised && self.lease_live()) {
            return self.send(from, Message::VoteResp { epoch: self.hard.promised, granted: false });
        }
        self.observe_epoch(epoch);
        let free = self.hard.voted_for.is_none_or(|v| v == from);
        let granted = free
            && !self.catching_up
            && self.log.is_behind_or_equal(last_epoch, last_end)
            && self.now >= self.vote_after;
        if granted && self.hard.voted_for.is_none() {
            self.persist_hard(HardState { promised: epoch, voted_for: Some(from) });
            self.reset_election_deadline();
        }
        self.send(from, Message::VoteResp { epoch, granted });
    }

    fn on_vote_resp(&mut self, from: ReplicaIdx, epoch: Epoch, granted: bool) {
        if epoch > self.hard.promised {
            return self.observe_epoch(epoch);
        }
        if let Role::Candidate { votes } = &mut self.role {
            if granted && epoch == self.hard.promised {
                votes.insert(from);
            }
        }
        self.check_votes();
    }

    fn check_votes(&mut self) {
        let Role::Candidate { votes } = &self.role else { return };
        if votes.len() >= self.majority() {
            self.become_leader();
        }
    }
}

#[cfg(test)]
mod tests;
