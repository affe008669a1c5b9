//! The topic registry of this node: every topic record the mesh agreed on (persisted in
//! the store's metadata), and the open partitions this node owns.
//!
//! Records arrive from local creation, gossip, peers and the DHT; [`Topics::adopt`]
//! validates each one (shape, signer, caps) and applies the mesh's rule for concurrent
//! creations of one name (the lower creation id wins) so every node converges on the same
//! record. That rule holds only while a creation settles: a record this node has held for
//! longer than [`SETTLE_WINDOWS_UNTIL_FINAL`] settle windows, or loaded from its store, is
//! never replaced by a competing creation (otherwise a forged record with
//! `creation_id = 0` takes any topic).

use super::driver::{DriverContext, ReplicaHandle};
use super::tombstones::Tombstones;
use crate::network::{peer_of, verify_record, PeerId, ToNodeId};
use crate::storage::{keys, StorageError};
use meshlog_protocol::codec;
use meshlog_protocol::mesh::{InvalidRecord, SignedRecord, TopicRecord};
use meshlog_protocol::revision::{self, parse_replica_name, replica_name, Relation};
use meshlog_protocol::types::{self, TopicConfig, TopicInfo, MAX_TOPICS, MAX_TOTAL_PARTITIONS};
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The settle window until the mesh's config sets it (`topic_settle_ms`'s default).
const DEFAULT_SETTLE_MS: u64 = 1_000;
/// How many settle windows a newly adopted record may still lose to a concurrent
/// creation. The creator answers after one window; competing records keep converging a
/// while longer, so a competitor delayed by a loaded machine or a gossip mesh still
/// forming (seen on a 2-core test host) does not leave nodes on two records for good.
/// Past it the record is final.
pub const SETTLE_WINDOWS_UNTIL_FINAL: u32 = 3;

/// A topic and the replicas of its partitions this node holds.
pub struct Topic {
    /// The agreed record.
    pub record: TopicRecord,
    /// The record as its creator signed it (what peers are sent).
    pub signed: SignedRecord,
    /// `record.info`, for convenience.
    pub info: TopicInfo,
    /// When this node adopted the record (monotonic); `None` for a record loaded from the
    /// store, which is settled.
    adopted_at: Option<Instant>,
    /// Partitions by number; `Some` for the ones this node holds a replica of.
    partitions: Vec<Option<Arc<ReplicaHandle>>>,
}

/// What a create request asks for.
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: u16,
    /// `k=v` config.
    pub config: BTreeMap<String, String>,
    /// An internal topic the node creates itself (its name starts with `__`).
    pub internal: bool,
}

/// What [`Topics::adopt`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The name was new here.
    New,
    /// The record won over a different one for the same name.
    Replaced,
    /// This node already had this record, or one that wins over it.
    Kept,
    /// A later version of the topic (partitions added, config changed, deleted), or of
    /// its name (a re-creation after a delete).
    Changed,
}

/// Replicas and stored partitions a change left behind, to stop and delete
/// ([`Topics::retire`]): a deleted topic's, or an older incarnation's.
struct Retired {
    /// The replicas that ran for it here.
    handles: Vec<Arc<ReplicaHandle>>,
    /// The name its partitions are stored under ([`replica_name`]).
    storage: String,
    /// Its partition count.
    partitions: u32,
}

/// Why a record was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The record is malformed or not signed by its creator.
    #[error(transparent)]
    Invalid(#[from] InvalidRecord),
    /// A competing creation for a topic whose record has settled here.
    #[error(
        "topic '{name}' is settled here (record by {held_creator}); a competing creation by \
         {creator} is refused"
    )]
    Settled {
        /// The topic.
        name: String,
        /// Who created the record held.
        held_creator: NodeId,
        /// Who signed the refused one.
        creator: NodeId,
    },
    /// A later life of a name whose topic is live here, with no tombstone of that topic
    /// held: only the topic's own tombstone (by a replica of its partition 0) ends it.
    #[error(
        "topic '{name}' (incarnation {held}) is live here: incarnation {incarnation} is taken \
         only after the live topic's tombstone"
    )]
    Live {
        /// The topic.
        name: String,
        /// The incarnation held, live.
        held: u64,
        /// The refused record's incarnation.
        incarnation: u64,
    },
    /// Adopting it would exceed a cap of this node.
    #[error("topic '{name}' refused: {reason}")]
    OverCap {
        /// The topic.
        name: String,
        /// Which cap.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// All topics this node knows.
pub struct Topics {
    ctx: DriverContext,
    local_peer: NodeId,
    map: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises adoptions so that compare-and-replace is atomic.
    adopt_lock: std::sync::Mutex<()>,
    /// The creation settle window (`topic_settle_ms`).
    settle_ms: AtomicU64,
    /// Replicas to stop and partitions to delete after a change ([`Topics::retire`]).
    retired: std::sync::Mutex<Vec<Retired>>,
    /// Tombstones of names' earlier lives.
    tombstones: Tombstones,
}

/// Check a record's shape and that `signer` (from its verified signature) is its creator.
pub fn check_record(record: &TopicRecord, signer: &PeerId) -> Result<(), InvalidRecord> {
    record.validate()?;
    let bad = |reason: String| InvalidRecord { topic: record.info.name.clone(), reason };
    if *record.signer() != signer.node_id() {
        let who = if record.revision.version == 0 { "creator" } else { "author" };
        return Err(bad(format!("it claims {who} {} but is signed by {signer}", record.signer())));
    }
    for (p, set) in record.replicas.iter().enumerate() {
        if let Some(r) = set.iter().find(|r| peer_of(r).is_none()) {
            return Err(bad(format!("partition {p} names '{r}', which is not a PeerId")));
        }
    }
    Ok(())
}

/// Decode a signed record as stored, then [`open_signed`] it.
pub fn open_stored(bytes: &[u8]) -> Result<(TopicRecord, SignedRecord), String> {
    let signed = codec::decode::<SignedRecord>(bytes).map_err(|e| e.to_string())?;
    let record = open_signed(&signed).map_err(|e| e.to_string())?;
    Ok((record, signed))
}

/// Verify a signed record and decode it.
pub fn open_signed(signed: &SignedRecord) -> Result<TopicRecord, InvalidRecord> {
    let bad = |reason: String| InvalidRecord { topic: "?".into(), reason };
    let signer = verify_record(signed).map_err(|e| bad(e.to_string()))?;
    let record = revision::decode_record(&signed.payload).map_err(|e| bad(e.to_string()))?;
    check_record(&record, &signer)?;
    Ok(record)
}

impl Topics {
    /// Load every topic record from the store and start the replicas held here.
    pub fn load(ctx: DriverContext, local_peer: NodeId) -> Result<Topics, StorageError> {
        let mut map = BTreeMap::new();
        let mut total_partitions = 0u64;
        for (key, bytes) in ctx.store.meta_scan(keys::TOPIC_PREFIX)? {
            // A record stored by an older build was never validated: check it as if it
            // came from a peer, so a forged one is not reopened at every start.
            let (record, signed) = match open_stored(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "invalid topic record in the store skipped");
                    continue;
                }
            };
            // A tombstone holds no partitions.
            let held = if record.revision.deleted { 0 } else { record.info.partitions as u64 };
            if map.len() >= MAX_TOPICS || total_partitions + held > MAX_TOTAL_PARTITIONS {
                tracing::warn!(%key, "topic record in the store skipped: over this node's topic caps");
                continue;
            }
            total_partitions += held;
            let topic = open_topic(&ctx, &local_peer, record, signed, None, None)?;
            map.insert(topic.info.name.clone(), Arc::new(topic));
        }
        let topics = Topics {
            tombstones: Tombstones::load(&ctx.store)?,
            ctx,
            local_peer,
            map: RwLock::new(map),
            adopt_lock: std::sync::Mutex::new(()),
            settle_ms: AtomicU64::new(DEFAULT_SETTLE_MS),
            retired: Default::default(),
        };
        topics.delete_leftovers()?;
        Ok(topics)
    }

    /// Delete the stored partitions of deleted topics and of older incarnations: what a
    /// delete learnt of before a crash left behind (no replica of them runs).
    fn delete_leftovers(&self) -> Result<(), StorageError> {
        let mut deleted = 0;
        for (stored, p) in self.ctx.store.stored_partitions() {
            let Some((name, incarnation)) = parse_replica_name(&stored) else { continue };
            let Some(t) = self.held_record(name) else { continue };
            if t.deleted() || t.record.revision.incarnation != incarnation {
                tracing::info!(
                    topic = name,
                    incarnation,
                    partition = p,
                    "deleting a deleted topic's partition"
                );
                self.ctx.store.delete_partition(&stored, p)?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            self.ctx.store.flush()?;
        }
        Ok(())
    }

    /// The topic held for `name`, deleted or not.
    pub fn held_record(&self, name: &str) -> Option<Arc<Topic>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The incarnation a new creation of `name` takes: one more than a tombstone held
    /// for it, else 0.
    pub fn next_incarnation(&self, name: &str) -> u64 {
        self.held_record(name).filter(|t| t.deleted()).map_or(0, |t| t.record.revision.incarnation + 1)
    }

    /// Stop the replicas and delete the stored partitions that changes left behind
    /// (a deleted topic, an older incarnation), then flush. Called after each adoption
    /// that returned [`Adopted::Changed`] or [`Adopted::Replaced`]; a crash before it is
    /// made good at the next start ([`Topics::load`]).
    pub async fn retire(&self) -> Result<(), StorageError> {
        let retired = std::mem::take(&mut *crate::sync::lock(&self.retired));
        if retired.is_empty() {
            return Ok(()); // the adoption's own flush already made the record durable
        }
        for r in retired {
            for h in &r.handles {
                h.stop().await;
            }
            let store = self.ctx.store.clone();
            let (storage, partitions) = (r.storage.clone(), r.partitions);
            let purge = move || (0..partitions).try_for_each(|p| store.delete_partition(&storage, p));
            tokio::task::spawn_blocking(purge)
                .await
                .map_err(|e| StorageError::io("delete a topic", std::io::Error::other(e)))??;
            tracing::info!(storage = %r.storage, partitions = r.partitions, "deleted topic's partitions removed");
        }
        self.ctx.commit.flush().await
    }

    /// Set the creation settle window (`topic_settle_ms`).
    pub fn set_settle_window(&self, settle: Duration) {
        self.settle_ms.store(settle.as_millis().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Topics held and their partitions summed.
    fn totals(&self) -> (usize, u64) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let live = map.values().filter(|t| !t.deleted());
        (map.len(), live.map(|t| t.info.partitions as u64).sum())
    }

    /// Refuse a new topic of `partitions` partitions that would exceed a cap.
    fn check_caps(&self, name: &str, partitions: u32) -> Result<(), String> {
        let (topics, _) = self.totals();
        if topics >= MAX_TOPICS {
            return Err(format!("the mesh holds {topics} topics, the most a node accepts ({MAX_TOPICS})"));
        }
        self.check_partition_cap(name, partitions)
    }

    /// Refuse `partitions` more partitions if they would exceed the node's cap.
    fn check_partition_cap(&self, name: &str, partitions: u32) -> Result<(), String> {
        let (_, total) = self.totals();
        if total + partitions as u64 > MAX_TOTAL_PARTITIONS {
            return Err(format!(
                "'{name}' would bring the partitions held to {} (the most a node accepts is \
                 {MAX_TOTAL_PARTITIONS})",
                total + partitions as u64
            ));
        }
        Ok(())
    }

    /// The topic named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, WireError> {
        match self.held_record(name) {
            Some(t) if !t.deleted() => Ok(t),
            Some(_) => Err(WireError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic '{name}' (it was deleted)"),
            )),
            None => {
                Err(WireError::new(ErrorCode::UnknownTopicOrPartition, format!("unknown topic '{name}'")))
            }
        }
    }

    /// Every topic, by name (deleted ones left out).
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|t| !t.deleted()).cloned().collect()
    }

    /// Every record held, tombstones of deleted topics included (what peers are sent,
    /// so a node that was away learns of a delete), each name's archived tombstones of
    /// earlier lives before it, oldest first (adopted in this order, they retire a life
    /// the receiver still holds as live before the later life comes).
    pub fn records(&self) -> Vec<SignedRecord> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let chained = |(name, t): (&String, &Arc<Topic>)| {
            let mut chain = self.tombstones.chain(name);
            chain.push(t.signed.clone());
            chain
        };
        map.iter().flat_map(chained).collect()
    }

    /// Check a create request and return the topic's effective config. `live_nodes`
    /// bounds the replication factor.
    pub fn validate_new(&self, req: &NewTopic, live_nodes: usize) -> Result<TopicConfig, WireError> {
        if !(req.internal && req.name == meshlog_protocol::group::OFFSETS_TOPIC) {
            types::validate_topic_name(&req.name)?;
        }
        let rf = req.replication_factor;
        types::validate_topic_shape(req.partitions, rf, live_nodes)?;
        let config = TopicConfig::from_pairs(&req.config, rf)?;
        if self.get(&req.name).is_ok() {
            return Err(already_exists(&req.name));
        }
        self.check_caps(&req.name, req.partitions)
            .map_err(|m| WireError::new(ErrorCode::PolicyViolation, m))?;
        Ok(config)
    }

    /// Apply a signed topic record: verify and validate it, keep the winner between it
    /// and any record held for the same name while that one settles, persist it, and open
    /// the partitions this node owns. Durable after the next [`Topics::flush`].
    pub fn adopt(&self, signed: SignedRecord) -> Result<(Adopted, TopicRecord), AdoptError> {
        self.adopt_at(signed, Instant::now())
    }

    /// [`Topics::adopt`] at `now` (monotonic).
    pub fn adopt_at(&self, signed: SignedRecord, now: Instant) -> Result<(Adopted, TopicRecord), AdoptError> {
        let record = open_signed(&signed)?;
        let _guard = crate::sync::lock(&self.adopt_lock);
        let name = record.info.name.clone();
        let held = self.held_record(&name);
        let outcome = match &held {
            None => Adopted::New,
            Some(cur) => self.judge(&record, cur, now)?,
        };
        if outcome == Adopted::Kept {
            return Ok((Adopted::Kept, record));
        }
        let over = |reason| AdoptError::OverCap { name: name.clone(), reason };
        let same_life = held
            .as_ref()
            .filter(|cur| !cur.deleted() && cur.record.revision.incarnation == record.revision.incarnation);
        match (&held, same_life) {
            _ if record.revision.deleted => {}
            (None, _) => self.check_caps(&name, record.info.partitions).map_err(over)?,
            (Some(_), Some(cur)) => {
                let extra = record.info.partitions.saturating_sub(cur.info.partitions);
                self.check_partition_cap(&name, extra).map_err(over)?
            }
            (Some(_), None) => self.check_partition_cap(&name, record.info.partitions).map_err(over)?,
        }
        // The settle window runs from the first adoption of a creation here.
        let adopted_at = match (&held, outcome) {
            (Some(cur), Adopted::Replaced) => cur.adopted_at,
            (Some(cur), Adopted::Changed) if same_life.is_some() => cur.adopted_at,
            _ => Some(now),
        };
        // A change of one creation keeps its running replicas and opens the new ones.
        let reuse = same_life.filter(|_| outcome == Adopted::Changed).map(|cur| cur.partitions.as_slice());
        let bytes = codec::encode(&signed).map_err(|e| StorageError::encode("topic record", e))?;
        let rev_k = record.revision.incarnation;
        let topic = open_topic(&self.ctx, &self.local_peer, record.clone(), signed, adopted_at, reuse)?;
        // A held tombstone that a later life replaces is archived.
        if let Some(cur) =
            held.as_ref().filter(|cur| cur.deleted() && cur.record.revision.incarnation != rev_k)
        {
            self.tombstones.archive(&self.ctx.store, &name, cur.record.revision.incarnation, &cur.signed)?;
        }
        self.ctx.store.meta_put(&keys::topic(&name), &bytes)?;
        if let Some(cur) = held.filter(|cur| !cur.deleted()) {
            if topic.deleted() || cur.storage_name() != topic.storage_name() {
                crate::sync::lock(&self.retired).push(Retired {
                    handles: cur.held().map(|(_, h)| h.clone()).collect(),
                    storage: cur.storage_name(),
                    partitions: cur.info.partitions,
                });
            }
        }
        let rev = &record.revision;
        match outcome {
            Adopted::Replaced => {
                tracing::warn!(topic = %name, "a concurrently created record for this topic won; replaced")
            }
            _ if rev.deleted => tracing::info!(topic = %name, version = rev.version, "topic deleted"),
            _ => tracing::info!(
                topic = %name, partitions = topic.info.partitions, incarnation = rev.incarnation,
                version = rev.version, "topic adopted"
            ),
        }
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(topic));
        Ok((outcome, record))
    }

    /// What adopting `record` over `cur` (the record held for its name) would do.
    /// Between two creations of one incarnation the lower creation id wins, but only
    /// while the held one settles; a later version of a creation is taken if it is a
    /// change its author may make; a later incarnation replaces a held tombstone, never a
    /// live topic (else any node could end a live topic by signing a re-creation).
    fn judge(&self, record: &TopicRecord, cur: &Topic, now: Instant) -> Result<Adopted, AdoptError> {
        let settle =
            Duration::from_millis(self.settle_ms.load(Ordering::Relaxed)) * SETTLE_WINDOWS_UNTIL_FINAL;
        match revision::relation(record, &cur.record) {
            Relation::Same | Relation::Older => Ok(Adopted::Kept),
            Relation::Newer if record.revision.incarnation == cur.record.revision.incarnation => {
                revision::check_change(record, &cur.record)?;
                Ok(Adopted::Changed)
            }
            Relation::Newer if !cur.deleted() => Err(AdoptError::Live {
                name: record.info.name.clone(),
                held: cur.record.revision.incarnation,
                incarnation: record.revision.incarnation,
            }),
            Relation::Newer => Ok(Adopted::Changed),
            Relation::Rival if !record.wins_over(&cur.record) => Ok(Adopted::Kept),
            // A settled creation is final: a competing creation is refused (changes come
            // as later versions, above).
            Relation::Rival if cur.adopted_at.is_none_or(|at| now.saturating_duration_since(at) > settle) => {
                Err(AdoptError::Settled {
                    name: record.info.name.clone(),
                    held_creator: cur.record.creator.clone(),
                    creator: record.creator.clone(),
                })
            }
            Relation::Rival => Ok(Adopted::Replaced),
        }
    }

    /// Make adopted records durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.ctx.commit.flush().await
    }
}

/// The error for a name that is taken.
pub fn already_exists(name: &str) -> WireError {
    WireError::new(ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists"))
}

fn open_topic(
    ctx: &DriverContext,
    local: &NodeId,
    record: TopicRecord,
    signed: SignedRecord,
    adopted_at: Option<Instant>,
    reuse: Option<&[Option<Arc<ReplicaHandle>>]>,
) -> Result<Topic, StorageError> {
    let count = if record.revision.deleted { 0 } else { record.info.partitions };
    let mut partitions = Vec::with_capacity(count as usize);
    let min_insync = record.info.config.min_insync_replicas as usize;
    let storage = replica_name(&record.info.name, record.revision.incarnation);
    for p in 0..count {
        if let Some(running) = reuse.and_then(|r| r.get(p as usize)) {
            partitions.push(running.clone());
            continue;
        }
        let set = record.replicas.get(p as usize).cloned().unwrap_or_default();
        partitions.push(match set.iter().position(|r| r == local) {
            Some(me) => Some(Arc::new(ReplicaHandle::open(ctx, &storage, p, set, me, min_insync)?)),
            None => None,
        });
    }
    Ok(Topic { info: record.info.clone(), record, signed, partitions, adopted_at })
}

impl Topic {
    /// Whether this is the tombstone of a deleted topic.
    pub fn deleted(&self) -> bool {
        self.record.revision.deleted
    }

    /// The name its partitions are stored and replicated under (the topic's own name
    /// for its first incarnation).
    pub fn storage_name(&self) -> String {
        replica_name(&self.info.name, self.record.revision.incarnation)
    }

    /// Check that partition `p` exists.
    pub fn check_partition(&self, p: u32) -> Result<(), WireError> {
        if p < self.info.partitions {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!(
                "topic '{}' has {} partition(s) (0..={}); partition {p} does not exist",
                self.info.name,
                self.info.partitions,
                self.info.partitions.saturating_sub(1)
            ),
        ))
    }

    /// The replica set of partition `p`, in the record's order.
    pub fn replicas(&self, p: u32) -> &[NodeId] {
        self.record.replicas.get(p as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// This node's replica of partition `p`, or a `NOT_LEADER_OR_FOLLOWER` error naming
    /// the replica set.
    pub fn local(&self, p: u32) -> Result<&Arc<ReplicaHandle>, WireError> {
        self.check_partition(p)?;
        self.partitions.get(p as usize).and_then(Option::as_ref).ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "{}-{p} is held by {}, not by this node",
                    self.info.name,
                    NodeId::join(self.replicas(p), ", ")
                ),
            )
        })
    }

    /// The replicas this node holds, with their partition numbers.
    pub fn held(&self) -> impl Iterator<Item = (u32, &Arc<ReplicaHandle>)> {
        self.partitions.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i as u32, p)))
    }
}

/// Spread `partitions` x `rf` replicas over `nodes` (sorted, deterministic): partition
/// `p`'s owner is `nodes[(start + p) % n]`, followed by the next `rf - 1` nodes, with
/// `start` derived from the name so that different topics start on different nodes.
pub fn place_replicas(name: &str, partitions: u32, rf: u16, nodes: &[NodeId]) -> Vec<Vec<NodeId>> {
    let mut nodes = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    let n = nodes.len().max(1);
    let start = meshlog_protocol::partitioner::partition_for_key(name.as_bytes(), n as u32) as usize;
    (0..partitions as usize)
        .map(|p| (0..rf as usize).filter_map(|i| nodes.get((start + p + i) % n).cloned()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::driver::ReplicaSettings;
    use crate::network::{sign_record, Keypair};
    use crate::storage::{GroupCommit, Store, StoreOptions, SEGMENT_BYTES};
    use meshlog_protocol::types::{MAX_PARTITIONS, MAX_REPLICATION_FACTOR};

    fn topics(dir: &std::path::Path) -> Topics {
        let opts = StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: SEGMENT_BYTES };
        let store = Arc::new(Store::open(dir, &opts).unwrap());
        let settings = ReplicaSettings {
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            lease_ms: 500,
            replica_lag_max_ms: 1000,
            max_message_bytes: 1 << 20,
        };
        let ctx = DriverContext {
            commit: GroupCommit::start(store.clone()).unwrap(),
            store,
            outbound: tokio::sync::mpsc::channel(8).0,
            settings,
            store_lost: false,
            recent: Default::default(),
            stats: Default::default(),
            ticker: Default::default(),
        };
        // This node holds no replica of the test records, so no replica is started.
        Topics::load(ctx, Keypair::generate_ed25519().public().to_peer_id().node_id()).unwrap()
    }

    /// A record of `name` by `key`, placed on two other nodes.
    fn signed(key: &Keypair, name: &str, creation_id: u64, partitions: u32) -> SignedRecord {
        let nodes: Vec<NodeId> =
            (0..2).map(|_| Keypair::generate_ed25519().public().to_peer_id().node_id()).collect();
        let config = TopicConfig::from_pairs(&BTreeMap::new(), 2).unwrap();
        let info = TopicInfo {
            name: name.into(),
            partitions,
            replication_factor: 2,
            config,
            creation_id,
            created_at_ms: 0,
        };
        let replicas = place_replicas(name, partitions, 2, &nodes);
        let record = TopicRecord {
            info,
            replicas,
            creator: key.public().to_peer_id().node_id(),
            revision: Default::default(),
        };
        sign_record(key, codec::encode(&record).unwrap()).unwrap()
    }

    #[test]
    fn a_lower_creation_wins_only_while_the_first_settles() {
        let dir = tempfile::tempdir().unwrap();
        let t = topics(dir.path());
        t.set_settle_window(Duration::from_millis(1000));
        let (a, b, rogue) =
            (Keypair::generate_ed25519(), Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let t0 = Instant::now();
        assert_eq!(t.adopt_at(signed(&a, "orders", 50, 1), t0).unwrap().0, Adopted::New);
        // A concurrent creation inside the window: the lower id wins, as before.
        let concurrent = signed(&b, "orders", 10, 1);
        let at = t0 + Duration::from_millis(400);
        assert_eq!(t.adopt_at(concurrent.clone(), at).unwrap().0, Adopted::Replaced);
        assert_eq!(t.adopt_at(concurrent, at).unwrap().0, Adopted::Kept);
        // Past the window, a forged creation_id = 0 cannot take the topic.
        let late = t0 + Duration::from_millis(1000) * SETTLE_WINDOWS_UNTIL_FINAL + Duration::from_millis(1);
        let err = t.adopt_at(signed(&rogue, "orders", 0, 1), late).unwrap_err();
        assert!(matches!(err, AdoptError::Settled { .. }), "{err}");
        assert_eq!(t.get("orders").unwrap().info.creation_id, 10);
    }

    #[test]
    fn records_loaded_from_the_store_are_settled() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        {
            let t = topics(dir.path());
            t.adopt(signed(&key, "orders", 50, 1)).unwrap();
            t.ctx.store.flush().unwrap();
        }
        let t = topics(dir.path());
        let err = t.adopt(signed(&Keypair::generate_ed25519(), "orders", 0, 1)).unwrap_err();
        assert!(matches!(err, AdoptError::Settled { .. }), "{err}");
        assert_eq!(t.get("orders").unwrap().info.creation_id, 50);
    }

    #[test]
    fn invalid_records_are_refused_and_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let t = topics(dir.path());
        // Signed by one key, claiming another creator.
        let mut forged = signed(&key, "orders", 1, 1);
        let other = Keypair::generate_ed25519();
        let mut record: TopicRecord = codec::decode(&forged.payload).unwrap();
        record.creator = other.public().to_peer_id().node_id();
        forged = sign_record(&key, codec::encode(&record).unwrap()).unwrap();
        assert!(matches!(t.adopt(forged), Err(AdoptError::Invalid(_))));
        // One node twice in a set.
        record.creator = key.public().to_peer_id().node_id();
        record.replicas[0][1] = record.replicas[0][0].clone();
        let doubled = sign_record(&key, codec::encode(&record).unwrap()).unwrap();
        assert!(matches!(t.adopt(doubled.clone()), Err(AdoptError::Invalid(_))));
        // Written to the store by an older build: skipped at start.
        t.ctx.store.meta_put("topic/orders", &codec::encode(&doubled).unwrap()).unwrap();
        t.ctx.store.flush().unwrap();
        drop(t);
        assert!(topics(dir.path()).get("orders").is_err());
    }

    #[test]
    fn topics_over_the_partition_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = topics(dir.path());
        let key = Keypair::generate_ed25519();
        let per_topic = MAX_PARTITIONS;
        let fit = (MAX_TOTAL_PARTITIONS / per_topic as u64) as usize;
        for i in 0..fit {
            t.adopt(signed(&key, &format!("t{i}"), 1, per_topic)).unwrap();
        }
        let err = t.adopt(signed(&key, "one-more", 1, 1)).unwrap_err();
        assert!(matches!(err, AdoptError::OverCap { .. }), "{err}");
        let req = NewTopic {
            name: "one-more".into(),
            partitions: 1,
            replication_factor: 1,
            config: BTreeMap::new(),
            internal: false,
        };
        assert_eq!(t.validate_new(&req, 3).unwrap_err().code, ErrorCode::PolicyViolation);
    }

    #[test]
    fn a_creation_whose_record_would_be_refused_is_refused_first() {
        let dir = tempfile::tempdir().unwrap();
        let t = topics(dir.path());
        let req = NewTopic {
            name: "wide".into(),
            partitions: MAX_PARTITIONS,
            replication_factor: MAX_REPLICATION_FACTOR,
            config: BTreeMap::new(),
            internal: false,
        };
        let e = t.validate_new(&req, MAX_REPLICATION_FACTOR as usize).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation, "{e}");
    }

    /// Three node keys, version 0 of "orders" (2 partitions, rf 2) created by the first
    /// and placed on the other two.
    fn created() -> (Vec<Keypair>, TopicRecord) {
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
        let ids: Vec<NodeId> = keys.iter().map(|k| k.public().to_peer_id().node_id()).collect();
        let info = TopicInfo {
            name: "orders".into(),
            partitions: 2,
            replication_factor: 2,
            config: TopicConfig::from_pairs(&BTreeMap::new(), 2).unwrap(),
            creation_id: 5,
            created_at_ms: 0,
        };
        let replicas = place_replicas("orders", 2, 2, &ids[1..]);
        let record = TopicRecord { info, replicas, creator: ids[0].clone(), revision: Default::default() };
        (keys, record)
    }

    /// `r` one version later, signed by `key` (as author, in epoch 1).
    fn next_version(
        r: &TopicRecord,
        key: &Keypair,
        edit: impl FnOnce(&mut TopicRecord),
    ) -> (TopicRecord, SignedRecord) {
        let mut n = r.clone();
        n.revision.version += 1;
        n.revision.author = key.public().to_peer_id().node_id();
        n.revision.epoch = meshlog_protocol::Epoch::new(1);
        edit(&mut n);
        let signed = sign_record(key, revision::encode_record(&n).unwrap()).unwrap();
        (n, signed)
    }

    fn sign_as(key: &Keypair, r: &TopicRecord) -> SignedRecord {
        sign_record(key, revision::encode_record(r).unwrap()).unwrap()
    }

    /// The key of partition 0's first replica.
    fn p0_key<'a>(keys: &'a [Keypair], r: &TopicRecord) -> &'a Keypair {
        keys.iter().find(|k| k.public().to_peer_id().node_id() == r.replicas[0][0]).unwrap()
    }

    #[test]
    fn a_later_version_by_partition_zero_adds_partitions_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let t = topics(dir.path());
        let (keys, v0) = created();
        assert_eq!(t.adopt(sign_as(&keys[0], &v0)).unwrap().0, Adopted::New);
        let grow = |r: &mut TopicRecord| {
            r.info.partitions = 3;
            r.replicas.push(r.replicas[0].clone());
        };
        // The creator is not a replica of partition 0: it may not author a change.
        let (_, by_creator) = next_version(&v0, &keys[0], grow);
        assert!(matches!(t.adopt(by_creator), Err(AdoptError::Invalid(_))));
        let (v1, signed) = next_version(&v0, p0_key(&keys, &v0), grow);
        assert_eq!(t.adopt(signed.clone()).unwrap().0, Adopted::Changed);
        assert_eq!(t.adopt(signed).unwrap().0, Adopted::Kept, "the same version again");
        assert_eq!(t.get("orders").unwrap().info.partitions, 3);
        // Version 0 again (a stale relay) changes nothing.
        assert_eq!(t.adopt(sign_as(&keys[0], &v0)).unwrap().0, Adopted::Kept);
        // A change that moves an existing partition is refused.
        let (_, moved) = next_version(&v1, p0_key(&keys, &v0), |r| r.replicas[1].reverse());
        assert!(matches!(t.adopt(moved), Err(AdoptError::Invalid(_))));
        assert_eq!(t.get("orders").unwrap().record, v1);
    }

    #[test]
    fn a_tombstone_is_final_and_the_name_comes_back_as_a_new_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let t = topics(dir.path());
        let (keys, v0) = created();
        let author = p0_key(&keys, &v0);
        t.adopt(sign_as(&keys[0], &v0)).unwrap();
        assert_eq!(t.next_incarnation("orders"), 0);
        let (v1, grown) = next_version(&v0, author, |r| r.info.config.retention_ms = Some(1));
        let (tomb, deleted) = next_version(&v0, author, |r| r.revision.deleted = true);
        assert_eq!(t.adopt(deleted).unwrap().0, Adopted::Changed);
        assert_eq!(t.get("orders").err().map(|e| e.code), Some(ErrorCode::UnknownTopicOrPartition));
        assert!(t.all().is_empty());
        assert_eq!(t.records().len(), 1, "the tombstone is still sent to peers");
        // A change of the same version, or a later one, never revives it.
        assert_eq!(t.adopt(grown).unwrap().0, Adopted::Kept);
        let (_, later) = next_version(&v1, author, |_| {});
        assert_eq!(t.adopt(later).unwrap().0, Adopted::Kept);
        assert!(t.get("orders").is_err());
        // A new creation of the name: incarnation 1, any creator, a fresh creation id.
        assert_eq!(t.next_incarnation("orders"), 1);
        let mut again = v0.clone();
        again.info.creation_id = 77;
        again.revision.incarnation = 1;
        again.creator = keys[1].public().to_peer_id().node_id();
        assert_eq!(t.adopt(sign_as(&keys[1], &again)).unwrap().0, Adopted::Changed);
        let held = t.get("orders").unwrap();
        assert_eq!((held.info.creation_id, held.storage_name().as_str()), (77, "orders~1"));
        // The old life's tombstone arriving late changes nothing.
        assert_eq!(t.adopt(sign_as(author, &tomb)).unwrap().0, Adopted::Kept);
        // Reloaded from the store: the new incarnation.
        t.ctx.store.flush().unwrap();
        drop(held);
        drop(t);
        assert_eq!(topics(dir.path()).get("orders").unwrap().info.creation_id, 77);
    }

    /// `v0` re-created as incarnation `k` by `key`, with creation id `id`.
    fn reborn(v0: &TopicRecord, key: &Keypair, k: u64, id: u64) -> (TopicRecord, SignedRecord) {
        let mut r = v0.clone();
        r.info.creation_id = id;
        r.revision.incarnation = k;
        r.creator = key.public().to_peer_id().node_id();
        let signed = sign_as(key, &r);
        (r, signed)
    }

    /// Adopt on `t` lives `0..lives` of "orders", each deleted by partition 0's replica,
    /// then one more live one; returns its creation id.
    fn live_through(t: &Topics, keys: &[Keypair], v0: &TopicRecord, lives: u64) -> u64 {
        for k in 0..=lives {
            let (life, signed) = reborn(v0, &keys[0], k, 100 + k);
            assert_ne!(t.adopt(signed).unwrap().0, Adopted::Kept, "life {k}");
            if k < lives {
                let (_, tomb) = next_version(&life, p0_key(keys, &life), |r| r.revision.deleted = true);
                assert_eq!(t.adopt(tomb).unwrap().0, Adopted::Changed, "delete of life {k}");
            }
        }
        100 + lives
    }

    #[test]
    fn a_live_topic_ends_only_by_its_tombstone_and_a_node_away_catches_up() {
        let (keys, v0) = created();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = topics(da.path());
        a.adopt(reborn(&v0, &keys[0], 0, 100).1).unwrap();
        // Any node signing a later life over the live topic is refused: it would end the
        // topic (and delete its data everywhere) without its partition 0's consent.
        let rogue = Keypair::generate_ed25519();
        let err = a.adopt(reborn(&v0, &rogue, 1, 9).1).unwrap_err();
        assert!(matches!(err, AdoptError::Live { held: 0, incarnation: 1, .. }), "{err}");
        assert_eq!(a.get("orders").unwrap().info.creation_id, 100);
        // Node b saw two deletes and re-creations while a was away: it sends the lives'
        // tombstones before its live record, and a follows them to the third life.
        let b = topics(db.path());
        let current = live_through(&b, &keys, &v0, 2);
        let sent = b.records();
        assert_eq!(sent.len(), 3, "two archived tombstones, then the live record");
        for r in sent {
            a.adopt(r).unwrap();
        }
        assert_eq!(a.get("orders").unwrap().info.creation_id, current);
        assert_eq!(a.records().len(), 3, "a archived the tombstones too");
        // The archive is durable, and bounded.
        b.ctx.store.flush().unwrap();
        drop(b);
        assert_eq!(topics(db.path()).records().len(), 3);
        let dc = tempfile::tempdir().unwrap();
        let c = topics(dc.path());
        live_through(&c, &keys, &v0, super::super::tombstones::KEPT_PER_NAME as u64 + 3);
        assert_eq!(c.records().len(), super::super::tombstones::KEPT_PER_NAME + 1);
    }

    #[test]
    fn placement_spreads_owners_and_never_repeats_a_node_in_a_set() {
        let nodes: Vec<NodeId> = ["c", "a", "b"].into_iter().map(NodeId::new).collect();
        let r = place_replicas("orders", 6, 2, &nodes);
        assert_eq!(r.len(), 6);
        for set in &r {
            assert_eq!(set.len(), 2);
            assert_ne!(set[0], set[1]);
        }
        let mut owners: Vec<&NodeId> = r.iter().map(|s| &s[0]).collect();
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), 3, "every node owns some partitions");
        assert_eq!(r, place_replicas("orders", 6, 2, &["b".into(), "a".into(), "c".into()]), "deterministic");
    }
}
