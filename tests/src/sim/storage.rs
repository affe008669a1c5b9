//! One replica's disk as the simulator models it: the durable hard state, the current
//! log (what the process has written) and how much of it is durable.
//!
//! The durable log is always a prefix of the current log: appends land in the current
//! log, a flush makes a prefix durable, a truncation cuts both (the brief's model), and
//! a crash keeps the durable prefix, plus, sometimes, some unflushed entries that
//! happened to reach the disk anyway (a crash may lose them, not must). Retention trims
//! a durable, committed head; a reset (a follower left behind by its leader's retention)
//! drops the whole log. Either leaves a start: its offset, and the epoch and prefix hash
//! of the entry that ended there.

use std::collections::VecDeque;

use meshlog::replica::{Entry, Epoch, HardState, ProducerState};

use super::rng::mix;

/// Payload ids with this bit set are epoch-start markers (the low bits hold the epoch).
pub const MARKER: u64 = 1 << 63;

/// A stored entry: the core's metadata, the payload the sim tracks in place of the
/// batch bytes, and a hash of the whole log prefix ending with it. Two entries with
/// equal hashes have equal prefixes, which makes I2 an O(1) check per append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The core's entry.
    pub entry: Entry,
    /// A client value id, or `MARKER | epoch`.
    pub payload: u64,
    /// Hash of every (base, count, epoch, payload) up to and including this entry.
    pub hash: u64,
}

/// A flush in progress: the log length when it was requested, lowered by any
/// truncation since (the entries it covers that are still there).
#[derive(Debug, Clone, Copy)]
struct PendingFlush {
    id: u64,
    covered: usize,
}

/// A replica's disk.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    /// Durable as soon as written (the driver persists it before the next output).
    pub hard: HardState,
    /// The producer state of deleted entries, saved with the start.
    pub producers: Vec<ProducerState>,
    /// The highest HW the replica reported in any incarnation, as the node saves it:
    /// what retention goes by (a restarted core's own HW starts at 0).
    pub saved_hw: u64,
    log: Vec<Stored>,
    durable_len: usize,
    flushes: VecDeque<PendingFlush>,
    start: u64,
    start_epoch: Epoch,
    start_hash: u64,
}

impl Storage {
    /// Everything written (durable or not).
    pub fn current(&self) -> &[Stored] {
        &self.log
    }

    /// The durable prefix.
    pub fn durable(&self) -> &[Stored] {
        &self.log[..self.durable_len]
    }

    /// Where the log starts, and the epoch of the entry just below.
    pub fn start(&self) -> (u64, Epoch) {
        (self.start, self.start_epoch)
    }

    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.log.last().map_or(self.start, |s| s.entry.end())
    }

    /// Where the durable prefix ends.
    pub fn durable_end(&self) -> u64 {
        self.durable().last().map_or(self.start, |s| s.entry.end())
    }

    /// The prefix hash of the current log at `end`: the entry's that ends there, or the
    /// start's. None if no entry ends there.
    pub fn hash_at(&self, end: u64) -> Option<u64> {
        hash_at(self.start, self.start_hash, &self.log, end)
    }

    /// The durable log, as the invariants see it.
    pub fn durable_view(&self) -> LogView<'_> {
        LogView { start: self.start, start_hash: self.start_hash, log: self.durable() }
    }

    /// Append at the end; returns the stored entry (with its prefix hash).
    pub fn append(&mut self, entry: Entry, payload: u64) -> Result<Stored, String> {
        let (end, prev) = self.log.last().map_or((self.start, self.start_hash), |s| (s.entry.end(), s.hash));
        if entry.base != end {
            return Err(format!("append of {entry:?} at log end {end}: not contiguous"));
        }
        let mut h = mix(prev ^ entry.base);
        h = mix(h ^ entry.epoch.get().rotate_left(17) ^ u64::from(entry.count));
        h = mix(h ^ payload);
        let s = Stored { entry, payload, hash: h };
        self.log.push(s);
        Ok(s)
    }

    /// Delete every entry at or after `end` from the current and the durable log.
    pub fn truncate(&mut self, end: u64) -> Result<(), String> {
        if end < self.start {
            return Err(format!("truncate to {end}, below the log start {}", self.start));
        }
        let keep = self.log.partition_point(|s| s.entry.end() <= end);
        if keep < self.log.len() && self.log[keep].entry.base != end {
            return Err(format!("truncate to {end} is not an entry boundary"));
        }
        self.log.truncate(keep);
        self.durable_len = self.durable_len.min(keep);
        for f in self.flushes.iter_mut() {
            f.covered = f.covered.min(keep);
        }
        Ok(())
    }

    /// Retention: delete the durable entries that end at or before `upto`, but never
    /// the last one. Returns the entries deleted.
    pub fn trim(&mut self, upto: u64) -> Vec<Entry> {
        let k = self.log[..self.durable_len].partition_point(|s| s.entry.end() <= upto);
        let k = k.min(self.log.len().saturating_sub(1));
        let Some(last) = self.log[..k].last().copied() else { return Vec::new() };
        (self.start, self.start_epoch, self.start_hash) = (last.entry.end(), last.entry.epoch, last.hash);
        let gone = self.log.drain(..k).map(|s| s.entry).collect();
        self.durable_len -= k;
        for f in self.flushes.iter_mut() {
            f.covered = f.covered.saturating_sub(k);
        }
        gone
    }

    /// Drop the whole log: it continues, empty, from `start` (durable at once, as the
    /// driver contract requires before the next output).
    pub fn reset(&mut self, start: u64, start_epoch: Epoch, start_hash: u64) {
        self.log.clear();
        self.durable_len = 0;
        for f in self.flushes.iter_mut() {
            f.covered = 0;
        }
        (self.start, self.start_epoch, self.start_hash) = (start, start_epoch, start_hash);
    }

    /// A flush was requested: it covers everything written so far.
    pub fn start_flush(&mut self, id: u64) {
        self.flushes.push_back(PendingFlush { id, covered: self.log.len() });
    }

    /// Flush `id` completed. It made durable what it covers, or (`everything`) all
    /// that was written by the time it completed, as a real group commit may.
    pub fn complete_flush(&mut self, id: u64, everything: bool) {
        while let Some(f) = self.flushes.front().copied() {
            if f.id > id {
                break;
            }
            self.flushes.pop_front();
            self.durable_len = self.durable_len.max(f.covered);
        }
        if everything {
            self.durable_len = self.log.len();
        }
    }

    /// The process died: keep the durable prefix and `extra` unflushed entries.
    pub fn crash(&mut self, extra: usize) {
        let keep = (self.durable_len + extra).min(self.log.len());
        self.log.truncate(keep);
        self.durable_len = keep;
        self.flushes.clear();
    }

    /// The disk is lost (replaced empty): no log, no hard state.
    pub fn wipe(&mut self) {
        *self = Storage::default();
    }

    /// Entries written but not durable.
    pub fn unflushed(&self) -> usize {
        self.log.len() - self.durable_len
    }
}

/// A log (durable, or what a lost disk held) with its start, as the invariants see it.
#[derive(Debug, Clone, Copy)]
pub struct LogView<'a> {
    /// First offset; below it everything was committed and deleted.
    pub start: u64,
    /// Prefix hash at the start.
    pub start_hash: u64,
    /// The entries.
    pub log: &'a [Stored],
}

impl LogView<'_> {
    /// Whether it holds `payload` at `base` (or deleted it, committed, below its start).
    pub fn holds_at(&self, base: u64, payload: u64) -> bool {
        base < self.start || starting_at(self.log, base).is_some_and(|s| s.payload == payload)
    }

    /// Whether its prefix up to `end` hashes to `hash` (or was deleted, committed, below
    /// its start).
    pub fn holds_prefix(&self, end: u64, hash: u64) -> bool {
        end < self.start || hash_at(self.start, self.start_hash, self.log, end) == Some(hash)
    }
}

fn hash_at(start: u64, start_hash: u64, log: &[Stored], end: u64) -> Option<u64> {
    if end == start {
        return Some(start_hash);
    }
    ending_at(log, end).map(|s| s.hash)
}

/// The entry of `log` that ends exactly at `end`.
pub fn ending_at(log: &[Stored], end: u64) -> Option<&Stored> {
    let i = log.partition_point(|s| s.entry.end() < end);
    log.get(i).filter(|s| s.entry.end() == end)
}

/// The entry of `log` that starts exactly at `base`.
pub fn starting_at(log: &[Stored], base: u64) -> Option<&Stored> {
    let i = log.partition_point(|s| s.entry.base < base);
    log.get(i).filter(|s| s.entry.base == base)
}
