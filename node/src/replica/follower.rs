//! The follower's half of the protocol: fetching from the leader, and taking its
//! answers (entries, divergence, behind its start) only from the replica that leads the
//! answer's epoch.

use super::types::*;
use super::{Replica, Role};

impl Replica {
    pub(super) fn send_fetch(&mut self) {
        let Some(leader) = self.leader.filter(|l| *l != self.cfg.me) else { return };
        self.fetch_sent_at = Some(self.now);
        let msg = Message::Fetch {
            epoch: self.hard.promised,
            offset: self.log.end(),
            last_epoch: self.log.last_epoch(),
            flushed_end: self.flushed_end,
        };
        self.send(leader, msg);
    }

    pub(super) fn on_fetch_resp(&mut self, from: ReplicaIdx, epoch: Epoch, leader_hw: u64, body: FetchBody) {
        if epoch < self.hard.promised {
            return self.send(from, Message::Stale { epoch: self.hard.promised });
        }
        if !self.sent_by_epoch_leader(from, epoch, &body) {
            return;
        }
        if self.is_leader() {
            return; // cannot happen with one leader per epoch; ignore rather than panic
        }
        if !matches!(self.role, Role::Follower) || self.leader != Some(from) {
            self.role = Role::Follower;
            self.leader = Some(from);
            self.out.push(Output::Leader { epoch, leader: Some(from) });
        }
        self.last_heard = self.now;
        self.reset_election_deadline();
        let used = match body {
            // Only if it answers a fetch from the log we hold now. A delayed or duplicated
            // answer about an older log could otherwise cut entries we have since taken
            // from this leader and reported flushed (it counted them towards its HW).
            // Equal (end, last epoch) means an equal log, so the verdict still holds.
            FetchBody::Diverging { epoch: e, end, fetch_offset, fetch_last_epoch }
                if (fetch_offset, fetch_last_epoch) == (self.log.end(), self.log.last_epoch()) =>
            {
                self.truncate(self.diverging_end(e, end));
                true
            }
            FetchBody::Diverging { .. } => false,
            // Only for the log we hold now (as above), and never past our HW: a log
            // that agrees with the leader up to its HW has it above the leader's start.
            FetchBody::Behind { start, start_epoch, producers, fetch_offset, fetch_last_epoch }
                if (fetch_offset, fetch_last_epoch) == (self.log.end(), self.log.last_epoch())
                    && self.hw <= start
                    && self.log.start() <= start =>
            {
                self.reset_log(start, start_epoch, producers);
                true
            }
            FetchBody::Behind { .. } => false,
            FetchBody::Entries(entries) => self.append_replicated(entries),
        };
        let hw = leader_hw.min(self.log.end());
        if hw > self.hw {
            self.hw = hw;
            self.out.push(Output::HighWatermark(hw));
        }
        if self.catching_up && leader_hw > 0 && self.catch_up_target.is_none() {
            self.catch_up_target = Some(leader_hw);
        }
        self.check_caught_up();
        // A response that no longer applies (a duplicate, or one of several fetches in
        // flight that another overtook) ends its chain of fetches: whatever moved our
        // log since sent a fetch of its own, and the tick re-fetches after a loss.
        // Fetching again would keep every chain alive, and as each flush starts one,
        // a long catch-up would multiply the fetches in flight without bound.
        if used {
            self.send_fetch();
        }
    }

    /// Whether a fetch answer of `epoch` from `from` comes from that epoch's leader, as
    /// far as this replica can tell; adopts the epoch and its leader when it is the first
    /// word of a new one.
    ///
    /// Only the leader of an epoch sends fetch answers in it, so once a replica knows who
    /// leads its promised epoch (it was elected, or took a heartbeat or entries from that
    /// peer in it), an answer of that epoch from anyone else is forged or confused, and
    /// dropped. An answer that introduces a leader must be a heartbeat or entries, as a
    /// follower first hears from a new leader: a `Diverging` or `Behind` answers a fetch,
    /// and a fetch went only to the leader already known in the fetch's epoch (every
    /// change of epoch forgets the leader). So neither can come from an unknown sender,
    /// and an unknown sender's `Behind` can never wipe the log.
    fn sent_by_epoch_leader(&mut self, from: ReplicaIdx, epoch: Epoch, body: &FetchBody) -> bool {
        let known = if epoch == self.hard.promised { self.epoch_leader } else { None };
        if let Some(leader) = known {
            return leader == from;
        }
        if !matches!(body, FetchBody::Entries(_)) {
            return false;
        }
        self.observe_epoch(epoch);
        self.epoch_leader = Some(from);
        true
    }

    /// Where to cut our log when the leader says its latest epoch at or below our last
    /// one is `e`, ending at `end` (KIP-279). If we hold `e` too, our logs agree up to
    /// the shorter run of it. If not, the leader's `end` says nothing about our log:
    /// drop our epochs above our latest one before `e` (the leader has none of them) and
    /// ask again with that epoch.
    fn diverging_end(&self, e: Epoch, end: u64) -> u64 {
        let (ours, own_end) = self.log.floor_epoch(e);
        if ours == e {
            end.min(own_end)
        } else {
            own_end
        }
    }

    /// Append entries fetched from the leader at our log end. Whether the response was
    /// of use: a heartbeat (no entries) is; entries that do not start at our log end
    /// answer a fetch another response has overtaken, and are not.
    fn append_replicated(&mut self, entries: Vec<Entry>) -> bool {
        let Some(first) = entries.first() else { return true };
        if first.base != self.log.end() {
            return false;
        }
        for e in &entries {
            self.log.push(*e);
            self.producers.observe(e);
        }
        self.out.push(Output::AppendReplicated(entries));
        self.request_flush();
        true
    }
}
