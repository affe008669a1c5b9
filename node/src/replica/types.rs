//! The replica core's vocabulary: ids, epochs, log entries, messages, inputs and outputs.

use serde::{Deserialize, Serialize};

/// A replica's position in its partition's replica set (0..n). The driver maps it to a
/// PeerId; the core never sees network identities.
pub type ReplicaIdx = usize;

/// A leadership epoch: the one crate-wide type, shared with the wire, the driver and the
/// leases. Epochs only grow.
pub use meshlog_protocol::Epoch;

/// An idempotent producer's identity and the sequence range of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSeq {
    /// Producer id.
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the batch's first record.
    pub first_seq: i32,
    /// Sequence of the batch's last record.
    pub last_seq: i32,
}

/// What a replica remembers of one idempotent producer whose batches retention deleted:
/// enough to recognise a late retry of one of them (Kafka's producer state snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// Producer id.
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Its last few batches: (first seq, last seq, base offset, end offset), oldest first.
    pub recent: Vec<(i32, i32, u64, u64)>,
}

/// One stored batch, as the core sees it: its offsets, the epoch that wrote it, and its
/// producer sequence if idempotent. The bytes live in storage, keyed by `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// First offset.
    pub base: u64,
    /// Number of offsets (records) it covers; at least 1.
    pub count: u32,
    /// The leader epoch that appended it.
    pub epoch: Epoch,
    /// Idempotent producer info.
    pub producer: Option<ProducerSeq>,
    /// Whether it is the leader's epoch-start marker (not a client batch).
    pub epoch_start: bool,
}

impl Entry {
    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.base + self.count as u64
    }
}

/// What must survive a crash besides the log: the highest epoch promised and to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    /// The highest epoch this replica has promised (voted in or led).
    pub promised: Epoch,
    /// The candidate it voted for in `promised`, if any.
    pub voted_for: Option<ReplicaIdx>,
}

/// `acks` as the core uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckLevel {
    /// Answer at once.
    None,
    /// Answer once the leader has flushed it.
    Leader,
    /// Answer once every in-sync replica has flushed it and it is committed.
    All,
}

/// Why an append was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendError {
    /// This replica does not lead; `leader` is its best guess.
    NotLeader {
        /// The leader it believes in, if any.
        leader: Option<ReplicaIdx>,
        /// Its promised epoch.
        epoch: Epoch,
    },
    /// Fewer in-sync replicas than `min_insync`.
    NotEnoughReplicas {
        /// In-sync replicas now.
        in_sync: usize,
        /// Required.
        required: usize,
    },
    /// The producer skipped sequence numbers.
    OutOfOrderSequence {
        /// The sequence expected next.
        expected: i32,
        /// The sequence received.
        got: i32,
    },
    /// The producer's epoch is older than one already seen.
    ProducerFenced,
    /// No state for this producer and its batch does not start at sequence 0.
    UnknownProducer,
    /// Leadership was lost before the write was committed; it may or may not survive.
    LeadershipLost,
}

/// A duplicate of an already-appended batch: where the original landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Base offset of the batch (of the original, for a duplicate).
    pub base: u64,
    /// Whether this was a retry of a batch already in the log.
    pub duplicate: bool,
}

/// Messages between replicas of one partition. Every one carries the sender's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// "Would you vote for me in `epoch`?" (changes nothing at the receiver).
    PreVote {
        /// The epoch the candidate would ask for.
        epoch: Epoch,
        /// Epoch of the candidate's last entry.
        last_epoch: Epoch,
        /// The candidate's log end.
        last_end: u64,
    },
    /// Answer to a pre-vote.
    PreVoteResp {
        /// The epoch asked about.
        epoch: Epoch,
        /// Whether it would vote.
        granted: bool,
    },
    /// "Vote for me in `epoch`."
    Vote {
        /// The epoch asked for.
        epoch: Epoch,
        /// Epoch of the candidate's last entry.
        last_epoch: Epoch,
        /// The candidate's log end.
        last_end: u64,
    },
    /// Answer to a vote, sent only after the promise is durable.
    VoteResp {
        /// The voter's promised epoch after handling the request.
        epoch: Epoch,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// A follower asks the leader for entries from `offset`, and reports how far its
    /// log is durable.
    Fetch {
        /// The epoch the follower follows.
        epoch: Epoch,
        /// The follower's log end (the next offset it wants).
        offset: u64,
        /// Epoch of the follower's last entry.
        last_epoch: Epoch,
        /// How far the follower's log is flushed.
        flushed_end: u64,
    },
    /// The leader's answer to a fetch.
    FetchResp {
        /// The leader's epoch.
        epoch: Epoch,
        /// The leader's high watermark, once the recipient has fetched consistently in
        /// this epoch (its log is then a prefix of the leader's); 0 before, since the
        /// recipient's log may still hold entries the leader does not have.
        hw: u64,
        /// What to do.
        body: FetchBody,
    },
    /// A replica refuses a message from an older epoch and tells its own.
    Stale {
        /// The refuser's promised epoch.
        epoch: Epoch,
    },
}

impl Message {
    /// Whether the message makes sense whatever its sender's state: every epoch it names
    /// is at most [`Epoch::MAX`]; a fetch answer names no log epoch above its own (a
    /// leader's history holds none); its entries each cover at least one offset, follow each
    /// other without a gap or an overflow, and never go back in epoch. What a replica
    /// cannot check alone (whether the sender leads) is left to the replica.
    pub fn is_well_formed(&self) -> bool {
        match self {
            Message::PreVote { epoch, last_epoch, .. }
            | Message::Vote { epoch, last_epoch, .. }
            | Message::Fetch { epoch, last_epoch, .. } => *epoch <= Epoch::MAX && *last_epoch <= Epoch::MAX,
            Message::PreVoteResp { epoch, .. }
            | Message::VoteResp { epoch, .. }
            | Message::Stale { epoch } => *epoch <= Epoch::MAX,
            Message::FetchResp { epoch, body, .. } => *epoch <= Epoch::MAX && body.is_well_formed(*epoch),
        }
    }
}

impl FetchBody {
    fn is_well_formed(&self, epoch: Epoch) -> bool {
        match self {
            FetchBody::Entries(entries) => {
                let mut prev: Option<&Entry> = None;
                entries.iter().all(|e| {
                    let fits =
                        e.count >= 1 && e.base.checked_add(u64::from(e.count)).is_some() && e.epoch <= epoch;
                    let follows = prev.is_none_or(|p| e.base == p.end() && e.epoch >= p.epoch);
                    prev = Some(e);
                    fits && follows
                })
            }
            // The fetch's own last epoch is echoed back, and compared with ours only.
            FetchBody::Diverging { epoch: e, .. } => *e <= epoch,
            FetchBody::Behind { start_epoch, .. } => *start_epoch <= epoch,
        }
    }
}

/// The substance of a fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchBody {
    /// Entries to append at the follower's offset (possibly none: a heartbeat).
    Entries(Vec<Entry>),
    /// The follower's log diverges: truncate to `end` (the end of `epoch` in the
    /// leader's history, or less) if it holds `epoch` too, else to the end of its own
    /// latest epoch before `epoch` (KIP-279), and fetch again.
    Diverging {
        /// The largest epoch in the leader's history at or below the follower's.
        epoch: Epoch,
        /// Where that epoch ends in the leader's log.
        end: u64,
        /// The `offset` of the fetch this answers. With `fetch_last_epoch` it names the
        /// follower log the verdict is about; a follower whose log has changed since (a
        /// delayed or duplicated answer) ignores it, since it may match by now.
        fetch_offset: u64,
        /// The `last_epoch` of the fetch this answers.
        fetch_last_epoch: Epoch,
    },
    /// The follower's log ends below the leader's log start, or departs from it there:
    /// what it misses was deleted by retention (committed, so it needs none of it).
    /// Drop the whole log and continue, empty, from `start` (Kafka's out-of-range reset
    /// of a follower; Raft's snapshot install, whose only state is the producers').
    Behind {
        /// The leader's log start.
        start: u64,
        /// The epoch of the leader's entry just below `start`.
        start_epoch: Epoch,
        /// The producer state of the deleted entries, so retries of them are still
        /// recognised.
        producers: Vec<ProducerState>,
        /// The `offset` of the fetch this answers (a reply to an older log is ignored).
        fetch_offset: u64,
        /// The `last_epoch` of the fetch this answers.
        fetch_last_epoch: Epoch,
    },
}

/// Everything that can happen to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passes.
    Tick,
    /// A message from another replica.
    Receive {
        /// Sender.
        from: ReplicaIdx,
        /// Message.
        msg: Message,
    },
    /// A client batch to append (the driver holds its bytes under `token`).
    ClientAppend {
        /// Identifies the batch and its reply in the driver.
        token: u64,
        /// Records in it.
        count: u32,
        /// Idempotent producer info.
        producer: Option<ProducerSeq>,
        /// When to acknowledge.
        acks: AckLevel,
    },
    /// The flush requested by [`Output::Flush`] with this id completed: everything
    /// appended before that output is durable.
    Flushed {
        /// The flush's id.
        id: u64,
    },
    /// Retention (or compaction) deleted the stored batches below `start`, all committed
    /// (below the HW the node saved, which may be ahead of the core's after a restart):
    /// the log forgets their entries.
    LogStart {
        /// The stored log's first offset.
        start: u64,
        /// The producer state of every entry deleted so far, as saved with the start.
        producers: Vec<ProducerState>,
    },
}

/// Everything the core asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a message.
    Send {
        /// Recipient.
        to: ReplicaIdx,
        /// Message.
        msg: Message,
    },
    /// Make the hard state durable; it must be durable before any later output runs.
    PersistHardState(HardState),
    /// Store a client batch (`token`) as `entry`.
    AppendClient {
        /// The client batch.
        token: u64,
        /// Where and with what epoch.
        entry: Entry,
    },
    /// Store the leader's epoch-start marker.
    AppendMarker(Entry),
    /// Store entries fetched from the leader (the driver has their bytes from the
    /// fetch response).
    AppendReplicated(Vec<Entry>),
    /// Delete every entry at or after `end`. Like the hard state, the truncation must be
    /// durable before any later output runs: a leader counts on a follower that fetched
    /// consistently never growing its removed entries back after a crash.
    Truncate {
        /// New log end.
        end: u64,
    },
    /// Delete the whole log; it continues, empty, from `start`, and the epoch of the
    /// entry below `start` is `start_epoch` (both kept as the log start). Durable
    /// before any later output runs, like a truncation.
    ResetLog {
        /// The new log start (and end).
        start: u64,
        /// The epoch of the entry just below it.
        start_epoch: Epoch,
        /// The producer state of the deleted entries, kept with the start.
        producers: Vec<ProducerState>,
    },
    /// Start a group commit covering everything appended so far; answered with
    /// [`Input::Flushed`] carrying the same id.
    Flush {
        /// Identifies the flush.
        id: u64,
    },
    /// Answer a client append.
    Ack {
        /// The client batch.
        token: u64,
        /// Its outcome.
        result: Result<Appended, AppendError>,
    },
    /// Leadership changed (for gossip announcements and routing).
    Leader {
        /// The epoch.
        epoch: Epoch,
        /// The leader, if known.
        leader: Option<ReplicaIdx>,
    },
    /// The high watermark moved.
    HighWatermark(u64),
}
