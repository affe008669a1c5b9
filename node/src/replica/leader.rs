//! The leader's half of the protocol: taking client appends, answering fetches (with
//! divergence detection), tracking followers, the in-sync set, the high watermark and
//! acknowledgements.

use super::producers::Check;
use super::types::*;
use super::{Config, Replica, Role};

/// What the leader knows of one follower.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// The follower's log is known to match ours and be flushed up to here.
    matched: u64,
    /// When it last fetched.
    last_contact: Option<u64>,
    /// When it was last fully caught up with our log end.
    caught_up_at: Option<u64>,
    /// A fetch that found nothing new, waiting for data or the next heartbeat.
    parked: Option<u64>,
    /// It has fetched consistently in this epoch. From then on its log is a prefix of
    /// ours (it appends only what we send and can only lose a tail), so our HW is safe
    /// to pass on; before that its log may hold entries we lack, and a HW covering them
    /// would commit them in its eyes and stop it from ever truncating them.
    synced: bool,
}

/// A client append waiting for its acknowledgement condition.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) token: u64,
    end: u64,
    base: u64,
    acks: AckLevel,
    duplicate: bool,
}

/// Leader-only state.
#[derive(Debug, Clone)]
pub(super) struct LeaderState {
    /// Offset of this epoch's first entry (its start marker, or the first client batch
    /// when the log was empty at election); only offsets past it can be committed.
    epoch_start: u64,
    progress: Vec<Progress>,
    pub(super) pending: Vec<Pending>,
    last_beat: u64,
    elected_at: u64,
}

impl LeaderState {
    /// The in-sync set: the leader and every follower caught up within the lag bound
    /// that it has also heard from within an election timeout. A live follower fetches
    /// every heartbeat, so a silent one is dead or cut off: `acks=all` stops waiting for
    /// it after an election timeout, not the whole lag bound (still never below
    /// `min_insync`, a majority).
    pub(super) fn in_sync(&self, cfg: &Config, now: u64) -> Vec<ReplicaIdx> {
        (0..cfg.replicas)
            .filter(|&r| {
                let p = &self.progress[r];
                r == cfg.me
                    || (p.caught_up_at.is_some_and(|t| now <= t + cfg.replica_lag_max_ms)
                        && p.last_contact.is_some_and(|t| now < t + cfg.election_timeout_ms))
            })
            .collect()
    }
}

impl Replica {
    /// Take the lead of the promised epoch. The epoch-start marker is Raft's no-op entry:
    /// entries of earlier epochs are committed only once an entry of this one is, so a
    /// log holding any gets one at once. A log that never held an entry (end 0, nothing
    /// deleted below it) has nothing of an earlier epoch to commit, and a majority
    /// granted it, so none of theirs held a committed entry either: the marker would
    /// commit nothing, and without it the first record is at offset 0, where Kafka
    /// clients expect it. The first client batch then starts the epoch in its place.
    pub(super) fn become_leader(&mut self) {
        let epoch = self.hard.promised;
        let marker = Entry { base: self.log.end(), count: 1, epoch, producer: None, epoch_start: true };
        let pristine = self.log.end() == 0 && self.log.start_epoch() == Epoch::new(0);
        self.role = Role::Leader(LeaderState {
            epoch_start: marker.base,
            progress: vec![Progress::default(); self.cfg.replicas],
            pending: Vec::new(),
            last_beat: self.now,
            elected_at: self.now,
        });
        self.leader = Some(self.cfg.me);
        self.epoch_leader = Some(self.cfg.me);
        self.out.push(Output::Leader { epoch, leader: Some(self.cfg.me) });
        if !pristine {
            self.log.push(marker);
            self.out.push(Output::AppendMarker(marker));
            self.request_flush();
        }
        self.heartbeat_all();
    }

    fn leader_state(&mut self) -> Option<&mut LeaderState> {
        match &mut self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    pub(super) fn on_client_append(
        &mut self,
        token: u64,
        count: u32,
        producer: Option<ProducerSeq>,
        acks: AckLevel,
    ) {
        let (cfg, now) = (self.cfg.clone(), self.now);
        let Some(l) = self.leader_state() else {
            let err = AppendError::NotLeader { leader: self.leader, epoch: self.hard.promised };
            return self.out.push(Output::Ack { token, result: Err(err) });
        };
        let in_sync = l.in_sync(&cfg, now).len();
        // A new leader's followers have not fetched yet: for one election timeout it
        // takes the write and lets the ack wait for the in-sync set to fill, rather
        // than refuse writes the moment it is elected.
        let settling = now < l.elected_at + cfg.election_timeout_ms;
        if acks == AckLevel::All && in_sync < cfg.min_insync && !settling {
            let err = AppendError::NotEnoughReplicas { in_sync, required: cfg.min_insync };
            return self.out.push(Output::Ack { token, result: Err(err) });
        }
        let check = producer.map_or(Check::Fresh, |p| self.producers.check(&p));
        let (base, end, duplicate) = match check {
            Check::Fresh => {
                let entry = Entry {
                    base: self.log.end(),
                    count: count.max(1),
                    epoch: self.hard.promised,
                    producer,
                    epoch_start: false,
                };
                self.log.push(entry);
                self.producers.observe(&entry);
                self.out.push(Output::AppendClient { token, entry });
                self.request_flush();
                (entry.base, entry.end(), false)
            }
            Check::Duplicate { base, end } => (base, end, true),
            Check::OutOfOrder { expected } => {
                let got = producer.map_or(0, |p| p.first_seq);
                let err = AppendError::OutOfOrderSequence { expected, got };
                return self.out.push(Output::Ack { token, result: Err(err) });
            }
            Check::Fenced => {
                return self.out.push(Output::Ack { token, result: Err(AppendError::ProducerFenced) })
            }
            Check::UnknownProducer => {
                return self.out.push(Output::Ack { token, result: Err(AppendError::UnknownProducer) })
            }
        };
        if let Some(l) = self.leader_state() {
            l.pending.push(Pending { token, end, base, acks, duplicate });
        }
        self.answer_parked();
        self.leader_progress();
    }

    pub(super) fn on_fetch(
        &mut self,
        from: ReplicaIdx,
        epoch: Epoch,
        offset: u64,
        last_epoch: Epoch,
        flushed: u64,
    ) {
        if epoch < self.hard.promised {
            return self.send(from, Message::Stale { epoch: self.hard.promised });
        }
        if epoch > self.hard.promised {
            return self.observe_epoch(epoch);
        }
        if !self.is_leader() {
            return; // a follower of this epoch fetching from the wrong node: ignore
        }
        let consistent =
            self.log.end_of_epoch(last_epoch).is_some_and(|e| offset <= e) && offset <= self.log.end();
        // A follower whose log ends below our start, or agrees with ours only below it,
        // cannot be repaired entry by entry: what it lacks was deleted (committed).
        let start = self.log.start();
        let departs_at = self.log.floor_epoch(last_epoch).1.min(offset);
        if offset < start || (!consistent && start > 0 && departs_at <= start) {
            let body = FetchBody::Behind {
                start,
                start_epoch: self.log.start_epoch(),
                producers: self.deleted_producers.snapshot(),
                fetch_offset: offset,
                fetch_last_epoch: last_epoch,
            };
            return self.send(from, Message::FetchResp { epoch, hw: self.hw_for(from), body });
        }
        if !consistent {
            let (e, end) = self.log.floor_epoch(last_epoch);
            let body = FetchBody::Diverging {
                epoch: e,
                end: end.min(offset),
                fetch_offset: offset,
                fetch_last_epoch: last_epoch,
            };
            return self.send(from, Message::FetchResp { epoch, hw: self.hw_for(from), body });
        }
        let (now, log_end) = (self.now, self.log.end());
        if let Some(l) = self.leader_state() {
            let p = &mut l.progress[from];
            p.matched = p.matched.max(flushed.min(offset));
            p.last_contact = Some(now);
            if offset >= log_end {
                p.caught_up_at = Some(now);
            }
            p.parked = Some(offset);
            p.synced = true;
        }
        if offset < log_end {
            self.answer(from);
        }
        self.leader_progress();
    }

    /// The HW to tell follower `to`: ours once its log is known to be a prefix of ours,
    /// nothing (0) before.
    fn hw_for(&self, to: ReplicaIdx) -> u64 {
        match &self.role {
            Role::Leader(l) if l.progress[to].synced => self.hw,
            _ => 0,
        }
    }

    /// Send `to` the entries after its parked fetch offset (or a heartbeat).
    fn answer(&mut self, to: ReplicaIdx) {
        let Some(l) = self.leader_state() else { return };
        let Some(offset) = l.progress[to].parked.take() else { return };
        let entries = self.log.from(offset, self.cfg.max_fetch_entries);
        let hw = self.hw_for(to);
        let msg = Message::FetchResp { epoch: self.hard.promised, hw, body: FetchBody::Entries(entries) };
        self.send(to, msg);
    }

    fn answer_parked(&mut self) {
        let end = self.log.end();
        let waiting: Vec<ReplicaIdx> = match &self.role {
            Role::Leader(l) => {
                (0..self.cfg.replicas).filter(|&r| l.progress[r].parked.is_some_and(|o| o < end)).collect()
            }
            _ => return,
        };
        for r in waiting {
            self.answer(r);
        }
    }

    fn heartbeat_all(&mut self) {
        let epoch = self.hard.promised;
        for r in self.others().collect::<Vec<_>>() {
            let parked = self.leader_state().and_then(|l| l.progress[r].parked.take());
            let entries = parked.map(|o| self.log.from(o, self.cfg.max_fetch_entries)).unwrap_or_default();
            let hw = self.hw_for(r);
            self.send(r, Message::FetchResp { epoch, hw, body: FetchBody::Entries(entries) });
        }
        let now = self.now;
        if let Some(l) = self.leader_state() {
            l.last_beat = now;
        }
    }

    pub(super) fn leader_tick(&mut self) {
        let (now, cfg) = (self.now, self.cfg.clone());
        let Some(l) = self.leader_state() else { return };
        // Check quorum: a leader cut off from a majority steps down.
        let heard = (0..cfg.replicas)
            .filter(|&r| {
                r == cfg.me || l.progress[r].last_contact.is_some_and(|t| now < t + cfg.election_timeout_ms)
            })
            .count();
        let settled = now >= l.elected_at + cfg.election_timeout_ms;
        if settled && heard < cfg.replicas / 2 + 1 {
            return self.step_down(None);
        }
        if now >= l.last_beat + cfg.heartbeat_ms {
            self.heartbeat_all();
        }
        self.leader_progress();
    }

    /// Advance the high watermark and answer every pending append whose condition holds.
    pub(super) fn leader_progress(&mut self) {
        let (now, cfg, flushed, hw0) = (self.now, self.cfg.clone(), self.flushed_end, self.hw);
        let Some(l) = self.leader_state() else { return };
        let mut matched: Vec<u64> =
            (0..cfg.replicas).map(|r| if r == cfg.me { flushed } else { l.progress[r].matched }).collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let majority_flushed = matched[cfg.replicas / 2];
        let hw = if majority_flushed > l.epoch_start { majority_flushed.max(hw0) } else { hw0 };
        let isr = l.in_sync(&cfg, now);
        let isr_flushed =
            isr.iter().map(|&r| if r == cfg.me { flushed } else { l.progress[r].matched }).min();
        let mut acks = Vec::new();
        l.pending.retain(|p| {
            let ok = match p.acks {
                AckLevel::None => true,
                AckLevel::Leader => flushed >= p.end,
                AckLevel::All => {
                    hw >= p.end && isr.len() >= cfg.min_insync && isr_flushed.is_some_and(|f| f >= p.end)
                }
            };
            if ok {
                acks.push(Output::Ack {
                    token: p.token,
                    result: Ok(Appended { base: p.base, duplicate: p.duplicate }),
                });
            }
            !ok
        });
        self.out.extend(acks);
        if hw > self.hw {
            self.hw = hw;
            self.out.push(Output::HighWatermark(hw));
        }
    }
}
