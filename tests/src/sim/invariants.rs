//! The safety invariants of TESTING.md (I1-I6), kept incrementally so they can be
//! checked after every simulated event at the cost of a few lookups.
//!
//! Durable logs only shrink by truncation, so I3 and I4 are checked when an ack or a
//! high watermark is produced and again after every truncation anywhere.

use std::collections::{BTreeMap, HashMap};

use meshlog::replica::Epoch;

use super::storage::{LogView, Storage, Stored};

/// What the checker remembers.
#[derive(Debug, Default)]
pub struct Invariants {
    majority: usize,
    /// I1: the leader of each epoch.
    pub leaders: BTreeMap<u64, usize>,
    /// I2: the first entry ever stored at each (base, epoch).
    seen: HashMap<(u64, u64), Stored>,
    /// I5 across incarnations: the entry at each offset some replica covered by its HW.
    pub committed: BTreeMap<u64, Stored>,
    /// I3: acknowledged `acks=all` records, (base, value).
    pub acked: BTreeMap<(u64, u64), ()>,
    /// I4/I5: each replica's HW in its current incarnation.
    hw: Vec<u64>,
    /// I6: each replica's promised epoch, across incarnations.
    promised: Vec<Epoch>,
}

/// The durable logs of every replica (crashed ones included: their disks survive), and
/// for a replica that lost its disk and has not caught up yet, what the lost disk held: it
/// counts as holding an entry found in either (see `Host::lost`). Entries a log's
/// retention deleted below its start count as held: they were committed, and deleting
/// them is the topic's policy, not a loss.
pub type Durables<'a> = [(LogView<'a>, Option<LogView<'a>>)];

/// Whether `d` (a log and perhaps a lost disk's) holds what `found` looks for.
fn holds(d: &(LogView<'_>, Option<LogView<'_>>), found: impl Fn(&LogView<'_>) -> bool) -> bool {
    found(&d.0) || d.1.as_ref().is_some_and(&found)
}

impl Invariants {
    /// For `n` replicas.
    pub fn new(n: usize) -> Invariants {
        Invariants {
            majority: n / 2 + 1,
            hw: vec![0; n],
            promised: vec![Epoch::new(0); n],
            ..Default::default()
        }
    }

    /// The HW `node` reported in this incarnation.
    pub fn hw(&self, node: usize) -> u64 {
        self.hw[node]
    }

    /// I1: `node` leads `epoch`. Whether this is news (a new election).
    pub fn on_leader(&mut self, node: usize, epoch: Epoch) -> Result<bool, String> {
        let new = !self.leaders.contains_key(&epoch.get());
        match *self.leaders.entry(epoch.get()).or_insert(node) {
            l if l == node => Ok(new),
            l => Err(format!("I1: two leaders in epoch {}: {l} and {node}", epoch.get())),
        }
    }

    /// I6: `node` has promised `epoch`.
    pub fn on_promised(&mut self, node: usize, epoch: Epoch) -> Result<(), String> {
        if epoch < self.promised[node] {
            return Err(format!("I6: node {node} promised {:?} after {:?}", epoch, self.promised[node]));
        }
        self.promised[node] = epoch;
        Ok(())
    }

    /// `node` lost its disk: its promises are gone with it (I6 restarts from nothing).
    pub fn lose_disk(&mut self, node: usize) {
        self.promised[node] = Epoch::new(0);
        self.hw[node] = 0;
    }

    /// `node` crashed: its next incarnation starts with no HW.
    pub fn end_incarnation(&mut self, node: usize) {
        self.hw[node] = 0;
    }

    /// I2: an entry stored anywhere agrees with every other entry ever stored at the same
    /// (base, epoch), prefix included (the prefix hash covers it).
    pub fn on_append(&mut self, node: usize, s: &Stored) -> Result<(), String> {
        let first = *self.seen.entry((s.entry.base, s.entry.epoch.get())).or_insert(*s);
        if first != *s {
            return Err(format!(
                "I2: node {node} stored {:?} (payload {:#x}) at base {} epoch {}, but {:?} (payload {:#x}) \
                 with a different prefix was stored there before",
                s.entry,
                s.payload,
                s.entry.base,
                s.entry.epoch.get(),
                first.entry,
                first.payload
            ));
        }
        Ok(())
    }

    /// I5: `node` truncates its log to `end`.
    pub fn on_truncate(&self, node: usize, end: u64) -> Result<(), String> {
        if end < self.hw[node] {
            return Err(format!("I5: node {node} truncated to {end}, below its HW {}", self.hw[node]));
        }
        Ok(())
    }

    /// I4 and I5: `node` reports HW `hw` over its disk `own`.
    pub fn on_hw(
        &mut self,
        node: usize,
        hw: u64,
        own: &Storage,
        durables: &Durables<'_>,
    ) -> Result<(), String> {
        let old = self.hw[node];
        if hw < old {
            return Err(format!("I4: node {node} HW went back from {old} to {hw}"));
        }
        self.hw[node] = hw;
        self.check_hw(node, own, durables)?;
        let log = own.current();
        // Everything below the HW is committed: it may never change meaning again.
        let from = log.partition_point(|s| s.entry.end() <= old);
        for s in &log[from..] {
            if s.entry.end() > hw {
                break;
            }
            let first = *self.committed.entry(s.entry.base).or_insert(*s);
            if first.hash != s.hash {
                return Err(format!(
                    "I5: offset {} changed meaning: committed as {:?} (payload {:#x}), now node {node} \
                     commits {:?} (payload {:#x})",
                    s.entry.base, first.entry, first.payload, s.entry, s.payload
                ));
            }
        }
        Ok(())
    }

    /// I4: `node`'s HW covers a prefix of its log that a majority holds durably.
    pub fn check_hw(&self, node: usize, own: &Storage, durables: &Durables<'_>) -> Result<(), String> {
        let hw = self.hw[node];
        // Nothing to check, or a HW below a start its log was just reset to (the core
        // raises it to the start next): all of it committed, and deleted.
        if hw == 0 || hw < own.start().0 {
            return Ok(());
        }
        let Some(mine) = own.hash_at(hw) else {
            return Err(format!("I4: node {node} HW {hw} is not an entry boundary of its log"));
        };
        let holders = durables.iter().filter(|d| holds(d, |v| v.holds_prefix(hw, mine))).count();
        if holders < self.majority {
            return Err(format!(
                "I4: node {node} HW {hw} exceeds the majority-durable prefix: {holders} durable logs \
                 hold its prefix, {} needed",
                self.majority
            ));
        }
        Ok(())
    }

    /// I3: the core acknowledged `value` at `base` with `acks=all`.
    pub fn on_ack_all(&mut self, value: u64, base: u64, durables: &Durables<'_>) -> Result<(), String> {
        self.acked.insert((base, value), ());
        self.check_acked(base, durables)
    }

    /// I3 for every acknowledged record at or after `from`.
    pub fn check_acked(&self, from: u64, durables: &Durables<'_>) -> Result<(), String> {
        for &(base, value) in self.acked.range((from, 0)..).map(|(k, _)| k) {
            let holders = durables.iter().filter(|d| holds(d, |v| v.holds_at(base, value))).count();
            if holders < self.majority {
                return Err(format!(
                    "I3: acks=all record {value} acknowledged at offset {base} is on {holders} durable \
                     logs, {} needed",
                    self.majority
                ));
            }
        }
        Ok(())
    }
}
