//! The replication driver: one task per partition replica that runs the sans-IO replica
//! core ([`crate::replica`]) against the real world.
//!
//! It feeds the core, in one queue, with messages from the other replicas (decoded and
//! checked here: the batches a fetch answer carries must match its entries and their
//! CRCs), client appends, group-commit completions and ticks; and it executes the core's
//! outputs in order. Hard state and truncations are flushed before the next output runs
//! (the core's contract); appends are flushed by the group commit, whose completion is
//! fed back as `Flushed`. Acks go back to the waiting producer. Leadership changes go to
//! a watch the gateway routes by, and to gossip as lease announcements.
//!
//! A storage failure stops the replica: its core believed the write happened, so it may
//! not go on. The partition then answers with the failure until the node restarts.

use super::partition::{check_batch, producer_seq, Partition};
use super::recent::{Recent, RecentBudget};
use crate::network::{peer_of, PeerId};
use crate::replica::{
    self, AckLevel, AppendError, Appended, Entry, FetchBody, HardState, Input, Message, Output,
};
use crate::storage::{keys, GroupCommit, StorageError, Store, MAX_BATCH_BYTES};
use crate::time::monotonic_ms;
use meshlog_protocol::batch;
use meshlog_protocol::codec;
use meshlog_protocol::messages::{EpochEnd, ProduceResponse, ReplicateMessage};
use meshlog_protocol::types::{Acks, PartitionStatus, TopicConfig};
use meshlog_protocol::{Epoch, ErrorCode, NodeId, WireError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Said by an append whose leader lost its leadership before committing it: the write
/// may or may not survive, so it is not silently sent elsewhere.
pub const LEADERSHIP_LOST: &str = "lost the leadership before the batch was committed";

/// Inputs queued per replica before peers' messages are dropped (the protocol recovers
/// from loss) and producers wait.
const INPUT_QUEUE: usize = 8192;

/// Timers and sizes of every replica on this node.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout (plus jitter).
    pub election_timeout_ms: u64,
    /// Lease a follower honours.
    pub lease_ms: u64,
    /// In-sync lag bound.
    pub replica_lag_max_ms: u64,
    /// Bytes of batches in one replication message.
    pub max_message_bytes: usize,
}

/// What a driver asks the node's network to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send a replication message to a peer (fire and forget).
    Peer(PeerId, ReplicateMessage),
    /// This node's leaderships changed: announce them now.
    Announce,
}

/// What the gateway and status need to know of a replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    /// The promised epoch.
    pub epoch: Epoch,
    /// The leader it believes in (its index in the replica set).
    pub leader: Option<usize>,
    /// Whether it leads.
    pub is_leader: bool,
    /// In-sync replicas (the leader's view), as indexes.
    pub isr: Vec<usize>,
}

enum DriverInput {
    Peer {
        from: usize,
        msg: Message,
        records: Vec<u8>,
    },
    Append {
        bytes: Vec<u8>,
        count: u32,
        producer: Option<replica::ProducerSeq>,
        acks: AckLevel,
        reply: Reply,
    },
    Flushed {
        id: u64,
    },
    FlushFailed(String),
    /// Stop for good (the topic was deleted or replaced): answered once the driver has
    /// left its loop, so nothing it does is still under way.
    Stop(oneshot::Sender<()>),
    /// Where an epoch ends (answered at once from the core's history, by a leader only).
    EpochEnd {
        epoch: Epoch,
        reply: oneshot::Sender<EpochEndResult>,
    },
}

/// A leader's answer to "where does this epoch end" (see [`replica::Replica::epoch_end`]).
type EpochEndResult = Result<Option<(Epoch, u64)>, AppendError>;

type Reply = oneshot::Sender<Result<Appended, AppendError>>;

/// One member of a replica set: its id as the topic record names it and, parsed once
/// beside it (so the two can never disagree), its PeerId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node as the topic record names it.
    pub id: NodeId,
    /// The same, parsed (`None` for an entry that is not a PeerId: never sent to, and no
    /// message is taken from it).
    pub peer: Option<PeerId>,
}

impl Member {
    /// A member from its id in the topic record.
    pub fn parse(id: NodeId) -> Member {
        let peer = peer_of(&id);
        Member { id, peer }
    }
}

/// A partition replica on this node: its stored log and the queue into its driver.
pub struct ReplicaHandle {
    /// The stored log (reads, retention).
    pub part: Arc<Partition>,
    /// The replica set, in the topic record's order.
    pub members: Arc<Vec<Member>>,
    me: usize,
    tx: Option<mpsc::Sender<DriverInput>>,
    view: watch::Receiver<ReplicaView>,
}

/// The core asked to store a batch whose bytes the driver does not hold: a bug, never a
/// reason to store an empty frame. The replica stops (as on a storage error).
fn missing(what: &str, base: u64) -> StorageError {
    StorageError::refused("append", format!("the {what} at offset {base} has no bytes"))
}

/// The `batches` (base offset, bytes) that are `entries` from the front, concatenated,
/// stopping at the first that is not or past `budget` bytes (at least one). Returns the
/// bytes and how many entries they hold.
fn concat_entries<'a>(
    batches: impl Iterator<Item = (u64, &'a [u8])>,
    entries: &[Entry],
    budget: usize,
) -> (Vec<u8>, usize) {
    let (mut records, mut kept) = (Vec::new(), 0);
    for ((base, bytes), e) in batches.zip(entries) {
        if base != e.base || (kept > 0 && records.len() + bytes.len() > budget) {
            break;
        }
        records.extend_from_slice(bytes);
        kept += 1;
    }
    (records, kept)
}

/// Run a blocking storage call on the blocking pool.
async fn blocking(f: impl FnOnce() -> Result<(), StorageError> + Send + 'static) -> Result<(), StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::io("storage task", std::io::Error::other(e)))?
}

/// Everything a driver needs from its node.
#[derive(Clone)]
pub struct DriverContext {
    /// The store.
    pub store: Arc<Store>,
    /// The group commit.
    pub commit: GroupCommit,
    /// Where replication messages and announcements go.
    pub outbound: mpsc::Sender<Outbound>,
    /// Timers.
    pub settings: ReplicaSettings,
    /// This node lost its store once: replicas without a saved state catch up first.
    pub store_lost: bool,
    /// What the leaders' recent batches hold together on this node.
    pub recent: RecentBudget,
    /// Elections and failovers are counted here.
    pub stats: super::BrokerStats,
    /// The node's replica clock (none: each driver keeps its own timer).
    pub ticker: super::Ticker,
}

fn seed(topic: &str, p: u32, me: &str) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one((topic, p, me)) | 1
}

struct Driver {
    core: replica::Replica,
    part: Arc<Partition>,
    members: Arc<Vec<Member>>,
    me: usize,
    ctx: DriverContext,
    rx: mpsc::Receiver<DriverInput>,
    /// For flush completions; weak so the driver ends when every handle is gone.
    weak: mpsc::WeakSender<DriverInput>,
    /// Client batches by token: bytes until stored, reply until acknowledged.
    pending: HashMap<u64, (Option<Vec<u8>>, Reply)>,
    next_token: u64,
    /// Batches of the fetch answer being stepped, by base offset: their place in
    /// `incoming_bytes`, the answer's records (kept whole, not copied batch by batch).
    incoming: HashMap<u64, std::ops::Range<usize>>,
    incoming_bytes: Vec<u8>,
    /// The batches this replica stored last as leader, for its followers' fetches;
    /// emptied by a truncation or a reset, the only ways a base offset can come to hold
    /// another batch. (Compaction rewrites a batch with fewer records but the same
    /// offsets, epoch and producer: a follower sent the original gets an equally valid
    /// copy.) A replica that stored nothing for a whole tick lets them go, so only
    /// partitions being written hold memory for this.
    recent: Recent,
    stored_since_tick: bool,
    view: watch::Sender<ReplicaView>,
    /// The catch-up mark is still stored.
    catching_up: bool,
}

impl Driver {
    async fn run(mut self) {
        let mut tick = self.ctx.ticker.subscribe(super::Ticker::period(self.ctx.settings.heartbeat_ms));
        let (topic, p) = (self.part.topic().to_string(), self.part.id());
        loop {
            let input = tokio::select! {
                biased;
                i = self.rx.recv() => match i {
                    Some(i) => i,
                    None => return, // every handle is gone: the topic was dropped or the node stops
                },
                _ = tick.tick() => {
                    // Retention or compaction deleted batches: the core forgets them
                    // (start and producers read together; the check alone is cheap).
                    if self.part.offsets().0 > self.core.log().start() {
                        let (start, producers) = self.part.start_and_deleted_producers();
                        if !self.step(Input::LogStart { start, producers }).await {
                            return;
                        }
                    }
                    if !std::mem::take(&mut self.stored_since_tick) {
                        self.recent.clear();
                    }
                    self.step(Input::Tick).await;
                    continue;
                }
            };
            let input = match input {
                DriverInput::Peer { from, msg, records } => {
                    if let Err(why) = self.accept_batches(&msg, records) {
                        tracing::warn!(%topic, partition = p, from = %self.members[from].id, %why, "replication message refused");
                        continue;
                    }
                    Input::Receive { from, msg }
                }
                DriverInput::Append { bytes, count, producer, acks, reply } => {
                    let token = self.next_token;
                    self.next_token += 1;
                    self.pending.insert(token, (Some(bytes), reply));
                    Input::ClientAppend { token, count, producer, acks }
                }
                DriverInput::Flushed { id } => Input::Flushed { id },
                DriverInput::FlushFailed(why) => {
                    return self.fail(format!("flush failed: {why}"));
                }
                DriverInput::Stop(done) => {
                    tracing::info!(%topic, partition = p, "replica stopped");
                    let _ = done.send(());
                    return;
                }
                DriverInput::EpochEnd { epoch, reply } => {
                    let _ = reply.send(self.core.epoch_end(epoch));
                    continue;
                }
            };
            if !self.step(input).await {
                return;
            }
        }
    }

    /// Step the core and execute its outputs; false once the replica has failed.
    async fn step(&mut self, input: Input) -> bool {
        let outs = self.core.step(monotonic_ms(), input);
        let result = self.execute(outs).await;
        self.incoming.clear();
        self.incoming_bytes = Vec::new();
        if let Err(e) = result {
            self.fail(e.to_string());
            return false;
        }
        if self.catching_up && !self.core.catching_up() {
            self.catching_up = false;
            let (topic, p) = (self.part.topic(), self.part.id());
            tracing::info!(topic, partition = p, "replica caught up after a lost store: it votes again");
            if let Err(e) = self.ctx.store.meta_delete(&keys::catch_up(topic, p)) {
                tracing::warn!(topic, partition = p, error = %e, "cannot clear the catch-up mark");
            }
        }
        self.publish_view();
        true
    }

    fn fail(&mut self, why: String) {
        tracing::error!(topic = %self.part.topic(), partition = self.part.id(), %why, "replica stops: storage failed");
        self.part.mark_write_failed(why);
        // Dropping the pending replies tells every waiting producer.
        self.pending.clear();
    }

    fn publish_view(&self) {
        let v = ReplicaView {
            epoch: self.core.epoch(),
            leader: self.core.leader(),
            is_leader: self.core.is_leader(),
            isr: if self.core.is_leader() { self.core.in_sync() } else { Vec::new() },
        };
        self.view.send_if_modified(|cur| {
            let changed = *cur != v;
            if changed {
                *cur = v;
            }
            changed
        });
    }

    /// Check that a fetch answer's batches are exactly its entries (offsets, counts,
    /// epochs, markers, producers), each a valid stored batch (the structure a leader
    /// checks in a producer's batch, its CRC, within what a partition log stores), and
    /// keep them for the append. Says why not otherwise: a bad batch from a peer is
    /// refused like a lost message, and the replica goes on.
    fn accept_batches(&mut self, msg: &Message, records: Vec<u8>) -> Result<(), String> {
        // Nothing of an earlier answer that was refused half way may linger.
        self.incoming.clear();
        let entries = match msg {
            Message::FetchResp { body: FetchBody::Entries(e), .. } => e,
            _ if records.is_empty() => return Ok(()),
            _ => return Err("batches attached to a message that carries no entries".into()),
        };
        let mut batches = batch::split_batches(&records);
        let mut at = 0;
        for e in entries {
            let b = match batches.next() {
                Some(Ok(b)) => b,
                Some(Err(err)) => return Err(format!("batch for offset {}: {err}", e.base)),
                None => return Err(format!("no batch for the entry at offset {}", e.base)),
            };
            let h = batch::validate_replicated(b, MAX_BATCH_BYTES)
                .map_err(|err| format!("invalid batch for offset {}: {err}", e.base))?;
            if h.is_transactional() {
                return Err(format!("transactional batch for offset {}: not supported", e.base));
            }
            // Validated: the base offset is not negative.
            let stored = super::partition::as_entry(h.base_offset as u64, &h);
            if stored != *e {
                return Err(format!("the batch at offset {} is not its entry {e:?}", e.base));
            }
            // split_batches yields the batches back to back from the start.
            self.incoming.insert(e.base, at..at + b.len());
            at += b.len();
        }
        if batches.next().is_some() {
            return Err("more batches than entries".into());
        }
        self.incoming_bytes = records;
        Ok(())
    }

    async fn execute(&mut self, outs: Vec<Output>) -> Result<(), StorageError> {
        for out in outs {
            match out {
                Output::Send { to, msg } => self.send(to, msg),
                Output::PersistHardState(h) => {
                    let bytes = codec::encode(&h).map_err(|e| StorageError::encode("replica state", e))?;
                    self.ctx.store.meta_put(&keys::hard_state(self.part.topic(), self.part.id()), &bytes)?;
                    self.ctx.commit.flush().await?;
                }
                Output::AppendClient { token, entry } => {
                    let bytes = self.pending.get_mut(&token).and_then(|(b, _)| b.take());
                    self.store(entry, bytes.ok_or_else(|| missing("client batch", entry.base))?)?;
                }
                Output::AppendMarker(entry) => {
                    let bytes = batch::leader_change_marker(crate::time::unix_ms(), entry.epoch.get());
                    self.store(entry, bytes)?;
                }
                Output::AppendReplicated(entries) => {
                    for e in entries {
                        let bytes = self
                            .incoming
                            .remove(&e.base)
                            .and_then(|at| self.incoming_bytes.get(at))
                            .ok_or_else(|| missing("replicated batch", e.base))?;
                        self.part.store_batch(e.base, bytes, e.count)?;
                    }
                }
                Output::Truncate { end } => {
                    tracing::info!(topic = %self.part.topic(), partition = self.part.id(), end, "log truncated to the leader's");
                    self.recent.clear();
                    self.part.truncate(end)?;
                    self.ctx.commit.flush().await?;
                }
                Output::ResetLog { start, start_epoch, producers } => {
                    tracing::warn!(
                        topic = %self.part.topic(), partition = self.part.id(), start,
                        "log fell below the leader's start (retention deleted the rest): dropped, fetching from there"
                    );
                    // Both wait for the partition's head lock, which a retention or
                    // compaction pass holds for its whole pass: off the runtime.
                    self.recent.clear();
                    let part = self.part.clone();
                    blocking(move || part.save_reset_start(start, start_epoch, producers)).await?;
                    self.ctx.commit.flush().await?;
                    let part = self.part.clone();
                    blocking(move || part.reset()).await?;
                    self.ctx.commit.flush().await?;
                }
                Output::Flush { id } => self.flush(id),
                Output::Ack { token, result } => {
                    if let Some((_, reply)) = self.pending.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Output::Leader { epoch, leader } => self.on_leader(epoch, leader),
                Output::HighWatermark(hw) => self.part.set_hw(hw),
            }
        }
        Ok(())
    }

    /// The core learned of a new leader (or lost it): log it, count elections and
    /// failovers, and announce a leadership won here at once.
    fn on_leader(&self, epoch: replica::Epoch, leader: Option<usize>) {
        let (topic, partition) = (self.part.topic(), self.part.id());
        tracing::info!(
            topic,
            partition,
            epoch = epoch.get(),
            leader = leader.and_then(|l| self.members.get(l)).map_or("none", |m| m.id.as_str()),
            "leader changed"
        );
        let won = leader == Some(self.me);
        self.ctx.stats.leader_changed(topic, partition, leader.is_some(), won, monotonic_ms());
        if won {
            let _ = self.ctx.outbound.try_send(Outbound::Announce);
        }
    }

    /// Store a batch as `entry` (this replica leads): its base offset and epoch written
    /// in (outside the CRC), and kept among the recent batches for the followers.
    fn store(&mut self, entry: Entry, mut bytes: Vec<u8>) -> Result<(), StorageError> {
        let _ = batch::set_base_offset(&mut bytes, entry.base as i64);
        let _ = batch::set_partition_leader_epoch(&mut bytes, entry.epoch.to_i32());
        self.part.store_batch(entry.base, &bytes, entry.count)?;
        self.stored_since_tick = true;
        self.recent.push(entry.base, bytes);
        Ok(())
    }

    /// The batches of `entries` from the front, concatenated, up to `budget` bytes (at
    /// least one): from the recent batches when the first is among them, else read from
    /// the partition. Returns how many entries the bytes hold.
    fn batches_for(&self, entries: &[Entry], budget: usize) -> (Vec<u8>, usize) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return (Vec::new(), 0) };
        if let Some(kept) = self.recent.from(first.base) {
            return concat_entries(kept, entries, budget);
        }
        let batches = match self.part.read_batches(first.base, last.end(), budget) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read batches for a follower");
                Vec::new()
            }
        };
        concat_entries(batches.iter().map(|(b, v)| (*b, &**v)), entries, budget)
    }

    fn flush(&self, id: u64) {
        let Some(tx) = self.weak.upgrade() else { return };
        let commit = self.ctx.commit.clone();
        tokio::spawn(async move {
            // Appends only: hard state and truncations flush everything themselves.
            let done = match commit.flush_appends().await {
                Ok(()) => DriverInput::Flushed { id },
                Err(e) => DriverInput::FlushFailed(e.to_string()),
            };
            let _ = tx.send(done).await;
        });
    }

    /// Send a message to replica `to`; a fetch answer carries its entries' batches, cut
    /// to the message budget (a prefix of the entries is still a valid answer).
    fn send(&self, to: usize, mut msg: Message) {
        let Some(peer) = self.members.get(to).and_then(|m| m.peer) else { return };
        let mut records = Vec::new();
        if let Message::FetchResp { body: FetchBody::Entries(entries), .. } = &mut msg {
            if let Some(first) = entries.first().copied() {
                let kept;
                (records, kept) = self.batches_for(entries, self.ctx.settings.max_message_bytes);
                if kept == 0 {
                    tracing::warn!(
                        topic = %self.part.topic(), partition = self.part.id(), offset = first.base,
                        "entries a follower needs are no longer stored (retention?); it cannot catch up"
                    );
                }
                entries.truncate(kept);
            }
        }
        let Ok(message) = codec::encode(&msg) else { return };
        let m = ReplicateMessage {
            topic: self.part.topic().to_string(),
            partition: self.part.id(),
            message,
            records,
        };
        if self.ctx.outbound.try_send(Outbound::Peer(peer, m)).is_err() {
            tracing::debug!("outbound replication queue full; message dropped");
        }
    }
}

mod handle;

#[cfg(test)]
mod tests;
