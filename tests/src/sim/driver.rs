//! The driver contract as the simulator executes it: step a core, run its outputs in
//! order against the disk model, the network and the clients, then check what must
//! hold after every step. `PersistHardState` and `Truncate` are durable at once (the
//! contract requires them durable before the next output); appends wait for a flush.

use std::panic::{catch_unwind, AssertUnwindSafe};

use meshlog::replica::{AckLevel, AppendError, Appended, Entry, Epoch, FetchBody, Input, Message, Output};

use super::storage::{starting_at, LogView, Storage, MARKER};
use super::trace::Note;
use super::world::{Event, Host, World};

/// Bound on one follower's fetch messages in flight. A follower keeps about one fetch
/// chain going; heartbeats, flushes, duplicates and slow deliveries add a few more, but
/// never more than this: past it, fetches are multiplying.
const MAX_FETCH_INFLIGHT: u64 = 64;

impl World {
    /// Step `node`'s core and execute its outputs in order, then check the invariants.
    pub fn step(&mut self, node: usize, input: Input) -> Result<(), String> {
        let now = self.hosts[node].local_ms(self.now_us);
        let Some(r) = self.hosts[node].replica.as_mut() else { return Ok(()) };
        let out = catch_unwind(AssertUnwindSafe(|| r.step(now, input)))
            .map_err(|p| format!("node {node}: the core panicked: {}", panic_text(&p)))?;
        for o in out {
            self.exec(node, o)?;
        }
        let h = &mut self.hosts[node];
        if h.lost.is_some() && h.replica.as_ref().is_some_and(|r| !r.catching_up()) {
            h.lost = None;
            self.trace.note(self.now_us, Some(node), Note::Fault("caught up after the lost disk".into()));
        }
        self.after_step(node)
    }

    fn exec(&mut self, node: usize, o: Output) -> Result<(), String> {
        if let Some(n) = Note::of_output(&o) {
            self.trace.note(self.now_us, Some(node), n);
        }
        match o {
            Output::Send { to, msg } => self.send(node, to, msg),
            Output::PersistHardState(h) => {
                self.hosts[node].storage.hard = h;
                Ok(())
            }
            Output::AppendClient { token, entry } => {
                let value = self.requests.get(&token).map(|r| r.value).ok_or("unknown client token")?;
                self.append(node, entry, value)
            }
            Output::AppendMarker(e) => self.append(node, e, MARKER | e.epoch.get()),
            Output::AppendReplicated(entries) => {
                for e in entries {
                    let p = self.incoming.iter().find(|(b, _)| *b == e.base).map(|(_, p)| *p);
                    self.append(node, e, p.ok_or_else(|| format!("replicated {e:?} came without bytes"))?)?;
                }
                Ok(())
            }
            Output::Truncate { end } => self.truncate(node, end),
            Output::ResetLog { start, start_epoch, producers } => {
                self.hosts[node].storage.producers = producers;
                self.reset_log(node, start, start_epoch)
            }
            Output::Flush { id } => {
                self.start_flush(node, id);
                Ok(())
            }
            Output::Ack { token, result } => self.on_ack(node, token, result),
            Output::Leader { .. } => Ok(()),
            Output::HighWatermark(hw) => {
                let disk = &mut self.hosts[node].storage;
                disk.saved_hw = disk.saved_hw.max(hw);
                let durables = durables(&self.hosts);
                self.inv.on_hw(node, hw, &self.hosts[node].storage, &durables)
            }
        }
    }

    /// A group commit: done after a random delay (sometimes a slow disk), in order.
    fn start_flush(&mut self, node: usize, id: u64) {
        self.hosts[node].storage.start_flush(id);
        let slow = if self.rng.chance(0.05) { 30_000 } else { 3_000 };
        let done = self.now_us + self.rng.range(200, slow);
        let h = &mut self.hosts[node];
        h.flush_free_at = h.flush_free_at.max(done);
        let (at, inc) = (h.flush_free_at - self.now_us, h.inc);
        self.at(at, Event::FlushDone { node, inc, id });
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) -> Result<(), String> {
        let mut payloads = Vec::new();
        if let Message::FetchResp { body: FetchBody::Entries(es), .. } = &msg {
            let log = self.hosts[from].storage.current();
            for e in es {
                let s = starting_at(log, e.base).filter(|s| s.entry == *e);
                payloads.push(
                    s.ok_or_else(|| format!("node {from} sent {e:?}, which it does not hold"))?.payload,
                );
            }
        }
        self.stats.messages += 1;
        for d in self.net.deliveries(&mut self.rng, from, to) {
            if let Some(f) = fetch_chain_of(from, to, &msg) {
                self.fetch_inflight[f] += 1;
                self.stats.max_fetch_inflight = self.stats.max_fetch_inflight.max(self.fetch_inflight[f]);
                if self.fetch_inflight[f] > MAX_FETCH_INFLIGHT {
                    return Err(format!(
                        "fetch amplification: {} fetch messages of node {f} in flight",
                        self.fetch_inflight[f]
                    ));
                }
            }
            self.at(d, Event::Deliver { from, to, msg: msg.clone(), payloads: payloads.clone() });
        }
        Ok(())
    }

    fn append(&mut self, node: usize, entry: Entry, payload: u64) -> Result<(), String> {
        let s = self.hosts[node].storage.append(entry, payload).map_err(|e| format!("node {node}: {e}"))?;
        self.trace.note(
            self.now_us,
            Some(node),
            Note::Append { base: entry.base, end: entry.end(), epoch: entry.epoch.get(), payload },
        );
        self.inv.on_append(node, &s)
    }

    fn truncate(&mut self, node: usize, end: u64) -> Result<(), String> {
        self.inv.on_truncate(node, end)?;
        self.hosts[node].storage.truncate(end).map_err(|e| format!("node {node}: {e}"))?;
        self.stats.truncations += 1;
        // Durable logs shrank: every acked record and every HW must still be covered.
        let durables = durables(&self.hosts);
        self.inv.check_acked(end, &durables)?;
        for (n, h) in self.hosts.iter().enumerate() {
            self.inv.check_hw(n, &h.storage, &durables)?;
        }
        Ok(())
    }

    /// A follower drops its log for its leader's start. Without retention no leader's
    /// log starts past 0, so a reset means a follower was told to drop what it needs.
    fn reset_log(&mut self, node: usize, start: u64, start_epoch: Epoch) -> Result<(), String> {
        if !self.cfg.retention {
            return Err(format!("node {node} was told to reset its log to {start} with no retention"));
        }
        // The leader deleted only committed entries: the one ending at the start is
        // known, and gives the prefix hash the follower's log continues from.
        let Some(c) =
            self.inv.committed.range(..start).next_back().map(|(_, c)| *c).filter(|c| c.entry.end() == start)
        else {
            return Err(format!("node {node} reset its log to {start}, where no committed entry ends"));
        };
        if c.entry.epoch != start_epoch {
            return Err(format!(
                "node {node} reset to {start} in epoch {start_epoch:?}; it was committed in {:?}",
                c.entry.epoch
            ));
        }
        self.inv.on_truncate(node, start)?;
        self.hosts[node].storage.reset(start, start_epoch, c.hash);
        self.stats.resets += 1;
        self.trace.note(
            self.now_us,
            Some(node),
            Note::Fault(format!("log reset to the leader's start {start}")),
        );
        // Durable logs shrank: every acked record and every HW must still be covered.
        let durables = durables(&self.hosts);
        self.inv.check_acked(0, &durables)?;
        for (n, h) in self.hosts.iter().enumerate() {
            self.inv.check_hw(n, &h.storage, &durables)?;
        }
        Ok(())
    }

    fn on_ack(
        &mut self,
        node: usize,
        token: u64,
        result: Result<Appended, AppendError>,
    ) -> Result<(), String> {
        let req = *self.requests.get(&token).ok_or("ack of an unknown token")?;
        if let Ok(a) = result {
            match req.acks {
                AckLevel::All => {
                    let durables = durables(&self.hosts);
                    self.inv
                        .on_ack_all(req.value, a.base, &durables)
                        .map_err(|e| format!("node {node}: {e}"))?;
                }
                AckLevel::Leader => {
                    self.acked_leader.insert(req.value, a.base);
                }
                AckLevel::None => {}
            }
        }
        if let Some(d) = self.client_delay() {
            self.at(d, Event::Reply { token, result });
        }
        Ok(())
    }

    /// Invariants that hold after every step of `node`.
    fn after_step(&mut self, node: usize) -> Result<(), String> {
        let h = &self.hosts[node];
        let Some(r) = h.replica.as_ref() else { return Ok(()) };
        let (epoch, leader) = (r.epoch(), r.is_leader());
        self.stats.max_epoch = self.stats.max_epoch.max(epoch.get());
        self.inv.on_promised(node, epoch)?;
        let elected = leader && self.inv.on_leader(node, epoch)?;
        if h.storage.hard != r.hard_state() {
            return Err(format!("node {node}: hard state {:?} was never persisted", r.hard_state()));
        }
        let (core, disk) = (r.log().entries(), h.storage.current());
        if core.len() != disk.len() || core.last() != disk.last().map(|s| &s.entry) {
            return Err(format!("node {node}: the core's log and its disk disagree"));
        }
        let durable_end = h.storage.durable_end();
        if r.flushed_end() > durable_end {
            return Err(format!(
                "node {node}: the core counts {} as flushed, only {durable_end} is durable",
                r.flushed_end()
            ));
        }
        if r.high_watermark() != self.inv.hw(node) {
            return Err(format!("node {node}: HW {} was never reported", r.high_watermark()));
        }
        if elected {
            self.on_elected(node);
        }
        Ok(())
    }
}

impl World {
    /// One line per replica: role, epoch, HW, and its log as runs of epochs.
    pub fn state_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (n, h) in self.hosts.iter().enumerate() {
            let mut runs: Vec<(u64, u64, u64)> = Vec::new();
            for s in h.storage.current() {
                match runs.last_mut() {
                    Some(r) if r.0 == s.entry.epoch.get() => r.2 = s.entry.end(),
                    _ => runs.push((s.entry.epoch.get(), s.entry.base, s.entry.end())),
                }
            }
            let runs: Vec<String> = runs.iter().map(|(e, a, b)| format!("e{e}:{a}..{b}")).collect();
            let durable = h.storage.durable_end();
            let role = match &h.replica {
                None => "down".to_string(),
                Some(r) => format!(
                    "{} epoch {} hw {} flushed {}",
                    if r.is_leader() { "leader  " } else { "follower" },
                    r.epoch().get(),
                    r.high_watermark(),
                    r.flushed_end()
                ),
            };
            let start = h.storage.start().0;
            lines.push(format!("n{n} {role} durable {durable} log from {start} [{}]", runs.join(" ")));
        }
        lines
    }
}

/// The follower whose fetch chain a message belongs to: fetches it sends and answers
/// it gets.
pub(super) fn fetch_chain_of(from: usize, to: usize, msg: &Message) -> Option<usize> {
    match msg {
        Message::Fetch { .. } => Some(from),
        Message::FetchResp { .. } => Some(to),
        _ => None,
    }
}

/// The durable log of every host, with what a lost disk held until its host caught up.
pub(super) fn durables(hosts: &[Host]) -> Vec<(LogView<'_>, Option<LogView<'_>>)> {
    hosts.iter().map(|h| (h.storage.durable_view(), h.lost.as_ref().map(Storage::durable_view))).collect()
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
