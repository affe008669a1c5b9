//! One replica's disk as the simulator models it: the durable hard state, the current
//! log (what the process has written) and how much of it is durable.
//!
//! The durable log is always a prefix of the current log: appends land in the current
//! log, a flush makes a prefix durable, a truncation cuts both (the brief's model), and
//! a crash keeps the durable prefix, plus, sometimes, some unflushed entries that
//! happened to reach the disk anyway (a crash may lose them, not must).

use std::collections::VecDeque;

use meshlog::replica::{Entry, HardState};

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
    log: Vec<Stored>,
    durable_len: usize,
    flushes: VecDeque<PendingFlush>,
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

    /// Append at the end; returns the stored entry (with its prefix hash).
    pub fn append(&mut self, entry: Entry, payload: u64) -> Result<Stored, String> {
        let (end, prev) = self.log.last().map_or((0, 0), |s| (s.entry.end(), s.hash));
        if entry.base != end {
            return Err(format!("append of {entry:?} at log end {end}: not contiguous"));
        }
        let mut h = mix(prev ^ entry.base);
        h = mix(h ^ entry.epoch.0.rotate_left(17) ^ u64::from(entry.count));
        h = mix(h ^ payload);
        let s = Stored { entry, payload, hash: h };
        self.log.push(s);
        Ok(s)
    }

    /// Delete every entry at or after `end` from the current and the durable log.
    pub fn truncate(&mut self, end: u64) -> Result<(), String> {
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
