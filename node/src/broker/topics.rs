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
use crate::network::{verify_record, PeerId};
use crate::storage::{keys, StorageError};
use meshlog_protocol::codec;
use meshlog_protocol::mesh::{InvalidRecord, SignedRecord, TopicRecord};
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
        held_creator: String,
        /// Who signed the refused one.
        creator: String,
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
    local_peer: String,
    map: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises adoptions so that compare-and-replace is atomic.
    adopt_lock: std::sync::Mutex<()>,
    /// The creation settle window (`topic_settle_ms`).
    settle_ms: AtomicU64,
}

/// Check a record's shape and that `signer` (from its verified signature) is its creator.
pub fn check_record(record: &TopicRecord, signer: &PeerId) -> Result<(), InvalidRecord> {
    record.validate()?;
    let bad = |reason: String| InvalidRecord { topic: record.info.name.clone(), reason };
    if record.creator != signer.to_string() {
        return Err(bad(format!("it claims creator {} but is signed by {signer}", record.creator)));
    }
    for (p, set) in record.replicas.iter().enumerate() {
        if let Some(r) = set.iter().find(|r| r.parse::<PeerId>().is_err()) {
            return Err(bad(format!("partition {p} names '{r}', which is not a PeerId")));
        }
    }
    Ok(())
}

/// Verify a signed record and decode it.
pub fn open_signed(signed: &SignedRecord) -> Result<TopicRecord, InvalidRecord> {
    let bad = |reason: String| InvalidRecord { topic: "?".into(), reason };
    let signer = verify_record(signed).map_err(|e| bad(e.to_string()))?;
    let record: TopicRecord = codec::decode(&signed.payload).map_err(|e| bad(e.to_string()))?;
    check_record(&record, &signer)?;
    Ok(record)
}

impl Topics {
    /// Load every topic record from the store and start the replicas held here.
    pub fn load(ctx: DriverContext, local_peer: String) -> Result<Topics, StorageError> {
        let mut map = BTreeMap::new();
        let mut total_partitions = 0u64;
        for (key, bytes) in ctx.store.meta_scan(keys::TOPIC_PREFIX)? {
            // A record stored by an older build was never validated: check it as if it
            // came from a peer, so a forged one is not reopened at every start.
            let decoded = codec::decode::<SignedRecord>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|signed| Ok((open_signed(&signed).map_err(|e| e.to_string())?, signed)));
            let (record, signed) = match decoded {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "invalid topic record in the store skipped");
                    continue;
                }
            };
            if map.len() >= MAX_TOPICS
                || total_partitions + record.info.partitions as u64 > MAX_TOTAL_PARTITIONS
            {
                tracing::warn!(%key, "topic record in the store skipped: over this node's topic caps");
                continue;
            }
            total_partitions += record.info.partitions as u64;
            let topic = open_topic(&ctx, &local_peer, record, signed, None)?;
            map.insert(topic.info.name.clone(), Arc::new(topic));
        }
        Ok(Topics {
            ctx,
            local_peer,
            map: RwLock::new(map),
            adopt_lock: std::sync::Mutex::new(()),
            settle_ms: AtomicU64::new(DEFAULT_SETTLE_MS),
        })
    }

    /// Set the creation settle window (`topic_settle_ms`).
    pub fn set_settle_window(&self, settle: Duration) {
        self.settle_ms.store(settle.as_millis().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Topics held and their partitions summed.
    fn totals(&self) -> (usize, u64) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        (map.len(), map.values().map(|t| t.info.partitions as u64).sum())
    }

    /// Refuse a new topic of `partitions` partitions that would exceed a cap.
    fn check_caps(&self, name: &str, partitions: u32) -> Result<(), String> {
        let (topics, total) = self.totals();
        if topics >= MAX_TOPICS {
            return Err(format!("the mesh holds {topics} topics, the most a node accepts ({MAX_TOPICS})"));
        }
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
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| {
            WireError::new(ErrorCode::UnknownTopicOrPartition, format!("unknown topic '{name}'"))
        })
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
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
        let settle =
            Duration::from_millis(self.settle_ms.load(Ordering::Relaxed)) * SETTLE_WINDOWS_UNTIL_FINAL;
        // The name's clock starts at its first adoption here: replacements within the
        // window do not extend it.
        let mut adopted_at = Some(now);
        let outcome = match self.get(&name) {
            Err(_) => {
                let over = |reason| AdoptError::OverCap { name: name.clone(), reason };
                self.check_caps(&name, record.info.partitions).map_err(over)?;
                Adopted::New
            }
            Ok(cur) if cur.record == record || !record.wins_over(&cur.record) => {
                return Ok((Adopted::Kept, record))
            }
            // A settled record is final. Later changes to a topic (config, partitions,
            // replica sets: DESIGN.md decision 16) come as a versioned record of the same
            // creation, authored by the leader of the topic's partition 0; that path is to be
            // checked here, before this refusal, and is not built yet.
            Ok(cur) if cur.adopted_at.is_none_or(|at| now.saturating_duration_since(at) > settle) => {
                return Err(AdoptError::Settled {
                    name,
                    held_creator: cur.record.creator.clone(),
                    creator: record.creator,
                });
            }
            Ok(cur) => {
                adopted_at = cur.adopted_at;
                Adopted::Replaced
            }
        };
        let bytes = codec::encode(&signed).map_err(|e| StorageError::encode("topic record", e))?;
        let topic = open_topic(&self.ctx, &self.local_peer, record.clone(), signed, adopted_at)?;
        self.ctx.store.meta_put(&keys::topic(&name), &bytes)?;
        if outcome == Adopted::Replaced {
            tracing::warn!(topic = %name, "a concurrently created record for this topic won; replaced");
        } else {
            tracing::info!(topic = %name, partitions = topic.info.partitions, "topic adopted");
        }
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(topic));
        Ok((outcome, record))
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
    local: &str,
    record: TopicRecord,
    signed: SignedRecord,
    adopted_at: Option<Instant>,
) -> Result<Topic, StorageError> {
    let mut partitions = Vec::with_capacity(record.info.partitions as usize);
    let min_insync = record.info.config.min_insync_replicas as usize;
    for p in 0..record.info.partitions {
        let set =
            record.replicas.get(p as usize).map_or_else(Vec::new, |s| s.iter().map(NodeId::from).collect());
        partitions.push(match set.iter().position(|r| r == local) {
            Some(me) => Some(Arc::new(ReplicaHandle::open(ctx, &record.info.name, p, set, me, min_insync)?)),
            None => None,
        });
    }
    Ok(Topic { info: record.info.clone(), record, signed, partitions, adopted_at })
}

impl Topic {
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
    pub fn replicas(&self, p: u32) -> &[String] {
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
                    self.replicas(p).join(", ")
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
pub fn place_replicas(name: &str, partitions: u32, rf: u16, nodes: &[String]) -> Vec<Vec<String>> {
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
        };
        // This node holds no replica of the test records, so no replica is started.
        Topics::load(ctx, Keypair::generate_ed25519().public().to_peer_id().to_string()).unwrap()
    }

    /// A record of `name` by `key`, placed on two other nodes.
    fn signed(key: &Keypair, name: &str, creation_id: u64, partitions: u32) -> SignedRecord {
        let nodes: Vec<String> =
            (0..2).map(|_| Keypair::generate_ed25519().public().to_peer_id().to_string()).collect();
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
        let record = TopicRecord { info, replicas, creator: key.public().to_peer_id().to_string() };
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
        record.creator = other.public().to_peer_id().to_string();
        forged = sign_record(&key, codec::encode(&record).unwrap()).unwrap();
        assert!(matches!(t.adopt(forged), Err(AdoptError::Invalid(_))));
        // One node twice in a set.
        record.creator = key.public().to_peer_id().to_string();
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

    #[test]
    fn placement_spreads_owners_and_never_repeats_a_node_in_a_set() {
        let nodes: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        let r = place_replicas("orders", 6, 2, &nodes);
        assert_eq!(r.len(), 6);
        for set in &r {
            assert_eq!(set.len(), 2);
            assert_ne!(set[0], set[1]);
        }
        let mut owners: Vec<&String> = r.iter().map(|s| &s[0]).collect();
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), 3, "every node owns some partitions");
        assert_eq!(r, place_replicas("orders", 6, 2, &["b".into(), "a".into(), "c".into()]), "deterministic");
    }
}
