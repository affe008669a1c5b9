//! Faults: crashes that lose unflushed writes (and restarts from what was durable),
//! symmetric partitions, one-way cuts, isolated nodes, paused processes and bad network
//! weather, injected at random during the fault phase; then the heal, and the quiet
//! phase that must converge within a bound.

use meshlog::replica::{Log, Replica};

use super::net::Net;
use super::trace::Note;
use super::world::{Event, World};

/// How often the settling phase checks for convergence.
const CHECK_EVERY_US: u64 = 10_000;

impl World {
    /// Boot or restart `node` from its disk.
    pub(super) fn start(&mut self, node: usize) {
        let h = &self.hosts[node];
        let cfg = self.replica_cfg(node, h.inc);
        let entries = h.storage.current().iter().map(|s| s.entry).collect();
        let now = h.local_ms(self.now_us);
        let (start, start_epoch) = h.storage.start();
        let log = Log::new(start, entries).with_start_epoch(start_epoch);
        let mut replica =
            Replica::recover(cfg, h.storage.hard, log, now).with_deleted_producers(&h.storage.producers);
        if h.lost.is_some() {
            replica.set_catching_up();
        }
        self.hosts[node].replica = Some(replica);
        self.schedule_tick(node);
    }

    fn crash(&mut self, node: usize) {
        let unflushed = self.hosts[node].storage.unflushed() as u64;
        let extra = if self.rng.chance(0.3) { self.rng.range(0, unflushed) as usize } else { 0 };
        let h = &mut self.hosts[node];
        if h.replica.take().is_none() {
            return;
        }
        h.storage.crash(extra);
        (h.inc, h.paused_until) = (h.inc + 1, 0);
        self.inv.end_incarnation(node);
        self.stats.crashes += 1;
        let note = format!("crash (kept {extra} of {unflushed} unflushed entries)");
        self.trace.note(self.now_us, Some(node), Note::Fault(note));
        let back = self.rng.range(10_000, 400_000);
        self.at(back, Event::Restart { node });
    }

    /// Crash `node` if it is still in incarnation `inc`.
    pub(super) fn crash_incarnation(&mut self, node: usize, inc: u32) {
        if self.hosts[node].inc == inc && !self.settling {
            self.crash(node);
        }
    }

    /// A new leader was elected: sometimes strike it within a few heartbeats, while its
    /// epoch-start marker and the entries before it are still reaching the followers.
    /// Random timing alone almost never hits that window.
    pub(super) fn on_elected(&mut self, node: usize) {
        if !self.cfg.faults || self.settling || !self.rng.chance(self.cfg.new_leader_fault_p) {
            return;
        }
        let within_us = self.cfg.timing_ms.heartbeat * 2_000;
        let d = self.rng.range(0, within_us);
        if self.rng.chance(0.5) {
            let inc = self.hosts[node].inc;
            self.at(d, Event::Crash { node, inc });
        } else {
            let others: Vec<usize> = (0..self.hosts.len()).filter(|&x| x != node).collect();
            let pairs = Net::between(&[node], &others);
            self.net.cut(&pairs, false);
            self.trace.note(self.now_us, None, Note::Fault(format!("isolate new leader {node}")));
            let back = self.rng.range(30_000, 600_000);
            self.at(back, Event::Heal { pairs });
        }
        self.stats.faults += 1;
    }

    pub(super) fn restart(&mut self, node: usize) {
        if self.hosts[node].replica.is_none() {
            self.trace.note(self.now_us, Some(node), Note::Fault("restart".into()));
            self.start(node);
        }
    }

    pub(super) fn heal(&mut self, pairs: &[(usize, usize)]) {
        self.net.cut(pairs, true);
        self.trace.note(self.now_us, None, Note::Fault(format!("heal {pairs:?}")));
    }

    /// The replica that leads the highest epoch, if any.
    pub(super) fn leader(&self) -> Option<usize> {
        let leading =
            |n: &usize| self.hosts[*n].replica.as_ref().filter(|r| r.is_leader()).map(|r| r.epoch());
        (0..self.hosts.len()).filter(|n| leading(n).is_some()).max_by_key(leading)
    }

    fn random_node(&mut self) -> usize {
        self.rng.pick(self.hosts.len())
    }

    pub(super) fn on_fault(&mut self) -> Result<(), String> {
        if self.settling {
            return Ok(());
        }
        self.stats.faults += 1;
        let n = self.hosts.len();
        match self.rng.below(14) {
            0..=2 => {
                let node = self.random_node();
                self.crash(node);
            }
            3 | 4 => {
                let node = self.leader().unwrap_or_else(|| self.random_node());
                self.crash(node);
            }
            5 | 6 => {
                let mut nodes: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    nodes.swap(i, self.rng.pick(i + 1));
                }
                let k = self.rng.range(1, n as u64 - 1) as usize;
                let pairs = Net::between(&nodes[..k], &nodes[k..]);
                self.cut_for_a_while(pairs, format!("partition {:?} | {:?}", &nodes[..k], &nodes[k..]));
            }
            7 | 8 => {
                let a = self.leader().filter(|_| self.rng.chance(0.5)).unwrap_or_else(|| self.random_node());
                let b = (a + self.rng.range(1, n as u64 - 1) as usize) % n;
                let (a, b) = if self.rng.chance(0.5) { (a, b) } else { (b, a) };
                self.cut_for_a_while(vec![(a, b)], format!("one-way cut {a} -> {b}"));
            }
            9 => {
                let a = self.leader().unwrap_or_else(|| self.random_node());
                let others: Vec<usize> = (0..n).filter(|&x| x != a).collect();
                self.cut_for_a_while(Net::between(&[a], &others), format!("isolate {a}"));
            }
            10 => {
                let a = self.leader().unwrap_or_else(|| self.random_node());
                let ms = self.rng.range(50, 400);
                self.hosts[a].paused_until = self.now_us + ms * 1000;
                self.trace.note(self.now_us, Some(a), Note::Fault(format!("pause {ms} ms")));
            }
            11 => self.change_weather(),
            // A lost disk: one replica at a time (two at once could lose the last copy of
            // an acknowledged write, which no protocol can prevent).
            12 if self.hosts.iter().all(|h| h.lost.is_none()) => {
                let node = self.random_node();
                self.lose_disk(node);
            }
            12 => {}
            _ => {
                // A power cut: every process dies at once, and only disks remain.
                self.trace.note(self.now_us, None, Note::Fault("power cut".into()));
                (0..n).for_each(|node| self.crash(node));
            }
        }
        let (lo, hi) = self.cfg.fault_gap_ms;
        let next = self.rng.range(lo, hi) * 1000;
        self.at(next, Event::Fault);
        Ok(())
    }

    /// Retention on one replica: delete a random committed, durable head of its log
    /// (never its last entry) and tell its core, as the driver's tick does.
    pub(super) fn on_retention(&mut self) -> Result<(), String> {
        let node = self.random_node();
        let next = self.rng.range(20, 100) * 1000;
        self.at(next, Event::Retention);
        if self.hosts[node].replica.is_none() {
            return Ok(());
        }
        let disk = &mut self.hosts[node].storage;
        let (start, hw) = (disk.start().0, disk.saved_hw);
        if hw <= start {
            return Ok(());
        }
        let upto = self.rng.range(start, hw);
        let gone = disk.trim(upto);
        if gone.is_empty() {
            return Ok(());
        }
        // The node saves the deleted batches' producers with the new start.
        disk.producers = meshlog::replica::producers_after(&disk.producers, &gone);
        let (start, producers) = (disk.start().0, disk.producers.clone());
        self.stats.trims += 1;
        self.trace.note(self.now_us, Some(node), Note::Fault(format!("retention: log starts at {start}")));
        self.step(node, meshlog::replica::Input::LogStart { start, producers })
    }

    /// `node` dies and comes back with an empty disk but the same identity.
    fn lose_disk(&mut self, node: usize) {
        if self.hosts[node].replica.is_none() {
            return;
        }
        self.crash(node);
        let h = &mut self.hosts[node];
        h.lost = Some(h.storage.clone());
        h.storage.wipe();
        self.inv.lose_disk(node);
        self.stats.disks_lost += 1;
        self.trace.note(self.now_us, Some(node), Note::Fault("disk lost".into()));
    }

    fn cut_for_a_while(&mut self, pairs: Vec<(usize, usize)>, what: String) {
        self.net.cut(&pairs, false);
        self.trace.note(self.now_us, None, Note::Fault(what));
        let d = self.rng.range(30_000, 600_000);
        self.at(d, Event::Heal { pairs });
    }

    /// New loss, duplication and reordering rates.
    pub(super) fn change_weather(&mut self) {
        let r = &mut self.rng;
        self.net.drop_p = [0.0, 0.01, 0.05, 0.15][r.pick(4)];
        self.net.dup_p = [0.0, 0.02, 0.1][r.pick(3)];
        self.net.slow_p = [0.0, 0.02, 0.1][r.pick(3)];
        self.net.slow_us_max = [5_000, 50_000, 200_000][r.pick(3)];
        let w = format!(
            "weather drop {} dup {} slow {} up to {} us",
            self.net.drop_p, self.net.dup_p, self.net.slow_p, self.net.slow_us_max
        );
        self.trace.note(self.now_us, None, Note::Fault(w));
    }

    /// The fault phase ends: heal everything, restart everyone, stop new writes.
    pub(super) fn end_faults(&mut self) -> Result<(), String> {
        self.settling = true;
        self.settle_started_us = self.now_us;
        self.settle_deadline_us = self.now_us + self.cfg.settle_ms_max * 1000;
        self.net.heal_all();
        self.net.calm();
        self.trace.note(self.now_us, None, Note::Fault("heal everything".into()));
        for node in 0..self.hosts.len() {
            self.hosts[node].paused_until = 0;
            self.restart(node);
        }
        self.at(CHECK_EVERY_US, Event::Check);
        Ok(())
    }

    pub(super) fn on_check(&mut self) -> Result<(), String> {
        if self.converged() {
            self.done = true;
            return Ok(());
        }
        if self.now_us > self.settle_deadline_us {
            return Err(format!("no convergence {} ms after the heal", self.cfg.settle_ms_max));
        }
        self.at(CHECK_EVERY_US, Event::Check);
        Ok(())
    }

    /// One leader of the highest epoch, every replica's log equal to its log (the same
    /// end and prefix hash there; retention may have trimmed them differently) and
    /// durable, the leader's HW at its log end, and no client write in flight.
    fn converged(&self) -> bool {
        let Some(l) = self.leader() else { return false };
        let lr = self.hosts[l].replica.as_ref().expect("a leader is up");
        let leader_disk = &self.hosts[l].storage;
        let end = leader_disk.end();
        let same = |h: &super::world::Host| {
            h.replica.as_ref().is_some_and(|r| r.epoch() == lr.epoch())
                && h.storage.unflushed() == 0
                && h.storage.end() == end
                && h.storage.hash_at(end) == leader_disk.hash_at(end)
        };
        lr.high_watermark() == lr.log().end()
            && self.hosts.iter().all(same)
            && self.clients.iter().all(|c| !c.busy())
    }
}
