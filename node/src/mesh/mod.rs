//! The mesh: membership, and the topic registry kept in agreement across nodes.
//!
//! Every node publishes a heartbeat on gossip; the live view follows heartbeats, leaves
//! and timeouts ([`membership`]). Topic records are signed by their creator, adopted by
//! every node under one deterministic rule (lower creation id wins while a creation
//! settles; a settled record is final), spread by gossip, stored in the Kademlia DHT, and
//! pulled from each newly connected peer (anti-entropy), so every node converges on the
//! same records. Every record is validated before adoption on every path
//! ([`crate::broker::Topics::adopt`]), and leader leases only from the partition's own
//! replicas ([`leases`]). All of this is hints (DESIGN.md decision 2): it decides where
//! requests go, never whether a write is safe.

mod changes;
pub mod leases;
pub mod membership;
pub mod quota;

pub use changes::TopicChange;

use crate::broker::{already_exists, open_signed, place_replicas, Adopted, Broker, NewTopic, Topic};
use crate::network::{peer_of, Multiaddr, NetworkHandle, PeerId, ToNodeId};
use crate::resilience::{CallKind, Resilience};
use crate::storage::{keys, Store};
use leases::{LeaseRefused, LeaseTable, PartitionFacts};
use membership::Membership;
use meshlog_protocol::codec;
use meshlog_protocol::mesh::{
    ClusterStatus, GossipMessage, Heartbeat, LeaderLeases, MemberStatus, SignedRecord, TopicRecord,
    PARTITION_KEY_PREFIX, TOPIC_KEY_PREFIX,
};
use meshlog_protocol::messages::AUTO_REPLICATION_FACTOR;
use meshlog_protocol::messages::{PeerRequest, PeerResponse};
use meshlog_protocol::revision::{self, Revision};
use meshlog_protocol::types::{PartitionStatus, TopicInfo};
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use quota::CreationQuota;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Timing of the mesh, from the node's config.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// How often this node announces itself.
    pub heartbeat_interval: Duration,
    /// A member unheard of for this long is down.
    pub member_timeout: Duration,
    /// How long a topic creation waits for concurrent creations before answering.
    pub topic_settle: Duration,
    /// Budget for one DHT lookup or peer query.
    pub lookup_timeout: Duration,
    /// How often a random member is asked for its topic records.
    pub anti_entropy_interval: Duration,
    /// This node's advertised Kafka listener (`host:port`), sent in its heartbeats.
    pub kafka_advertised: Option<String>,
}

/// A membership or registry fact from the network.
pub enum MeshEvent {
    /// A gossip message from an authenticated source.
    Gossip(PeerId, GossipMessage),
    /// A connection to a peer opened.
    Connected(PeerId),
}

/// This node's view of the mesh.
pub struct Mesh {
    net: NetworkHandle,
    resilience: Arc<Resilience>,
    broker: Arc<Broker>,
    local: NodeId,
    addrs: Vec<String>,
    incarnation: u64,
    seq: AtomicU64,
    leaving: std::sync::atomic::AtomicBool,
    members: Mutex<Membership>,
    /// Leaders announced on gossip, while their leases hold.
    leaders: Mutex<LeaseTable>,
    /// Where members were last heard from, kept across restarts (the peer book): a
    /// restarted node dials them all, not only its bootstrap address.
    store: Arc<Store>,
    /// Topic creations per client in the current minute.
    quota: Mutex<CreationQuota>,
    /// Topic changes this node authors, one at a time (`changes.rs`).
    changes: tokio::sync::Mutex<()>,
    cfg: MeshConfig,
}

/// The largest replication factor `auto` picks (min(this, the nodes in the mesh)).
pub const AUTO_REPLICATION_FACTOR_MAX: u16 = 3;

/// Most members in the peer book (as many as the live view holds).
const MAX_PEER_BOOK: usize = membership::MAX_MEMBERS;

impl Mesh {
    /// A mesh view for this node, announcing `addrs`.
    pub fn new(
        net: NetworkHandle,
        resilience: Arc<Resilience>,
        broker: Arc<Broker>,
        addrs: Vec<String>,
        store: Arc<Store>,
        cfg: MeshConfig,
    ) -> Arc<Mesh> {
        broker.topics().set_settle_window(cfg.topic_settle);
        Arc::new(Mesh {
            resilience,
            local: net.local_peer_id().node_id(),
            net,
            broker,
            addrs,
            incarnation: rand::random(),
            seq: AtomicU64::new(0),
            leaving: std::sync::atomic::AtomicBool::new(false),
            members: Mutex::new(Membership::new(cfg.member_timeout)),
            leaders: Mutex::new(LeaseTable::default()),
            store,
            quota: Mutex::new(CreationQuota::default()),
            changes: tokio::sync::Mutex::new(()),
            cfg,
        })
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Membership> {
        crate::sync::lock(&self.members)
    }

    /// This node's id.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The network handle the mesh talks through.
    pub fn net(&self) -> &NetworkHandle {
        &self.net
    }

    /// Live nodes including this one, sorted.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        let mut v = self.members().live();
        v.push(self.local.clone());
        v.sort();
        v
    }

    /// (PeerId, advertised Kafka listener) of every live node that runs one, this node
    /// included, sorted by PeerId.
    pub fn kafka_listeners(&self) -> Vec<(NodeId, String)> {
        let mut v = self.members().kafka_listeners();
        if let Some(k) = &self.cfg.kafka_advertised {
            v.push((self.local.clone(), k.clone()));
        }
        v.sort();
        v
    }

    /// Whether `peer` is this node or a live member.
    pub fn is_live(&self, peer: &NodeId) -> bool {
        *peer == self.local || self.members().is_up(peer)
    }

    /// The leader of `topic`-`p` as last announced on gossip, while its lease holds.
    /// A hint: a wrong one costs a redirect.
    pub fn leader_hint(&self, topic: &str, p: u32) -> Option<NodeId> {
        let stored = self.broker.topics().get(topic).ok()?.storage_name();
        let leader = self.leases().get(&stored, p, Instant::now())?.1.clone();
        self.is_live(&leader).then_some(leader)
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, LeaseTable> {
        crate::sync::lock(&self.leaders)
    }

    /// Announce the partitions this node leads (on election, and with every heartbeat
    /// to renew the leases).
    pub async fn announce_leases(&self) {
        let partitions = self.broker.leaderships();
        if partitions.is_empty() || self.leaving.load(Ordering::Relaxed) {
            return;
        }
        let lease_ms = 3 * self.cfg.heartbeat_interval.as_millis() as u64;
        self.on_leases(&LeaderLeases {
            leader: self.local.clone(),
            lease_ms,
            partitions: partitions.clone(),
        });
        let msg = LeaderLeases { leader: self.local.clone(), lease_ms, partitions };
        self.net.publish(GossipMessage::Leases(msg)).await;
    }

    /// Take the valid leases of an announcement: only for partitions of adopted topics
    /// (of the incarnation held here: leases name partitions by their stored name),
    /// from a member of the partition's replica set, with a bounded epoch.
    fn on_leases(&self, l: &LeaderLeases) {
        let mut topics: HashMap<&str, Option<Arc<Topic>>> = HashMap::new();
        for (stored, _, _) in &l.partitions {
            topics.entry(stored.as_str()).or_insert_with(|| {
                let (name, incarnation) = revision::parse_replica_name(stored)?;
                let t = self.broker.topics().get(name).ok()?;
                (t.record.revision.incarnation == incarnation).then_some(t)
            });
        }
        let facts = |stored: &str, p: u32| {
            let t = topics.get(stored)?.as_ref()?;
            t.check_partition(p).ok()?;
            let local_epoch = self.broker.replica(&t.info.name, p).map(|r| r.view().epoch);
            Some(PartitionFacts { replicas: t.replicas(p), local_epoch })
        };
        let refused = self.leases().apply(l, Instant::now(), facts);
        // A lease for a topic whose record has not arrived yet is normal right after a
        // creation; a lease from outside the set or with a wild epoch is not.
        let (unknown, bad): (Vec<_>, Vec<_>) =
            refused.iter().partition(|r| matches!(r, LeaseRefused::UnknownPartition { .. }));
        if let Some(first) = bad.first() {
            tracing::warn!(leader = %l.leader, refused = bad.len(), first = %first, "leases refused");
        }
        if let Some(first) = unknown.first() {
            tracing::debug!(leader = %l.leader, refused = unknown.len(), first = %first, "leases for unknown partitions");
        }
    }

    /// Heartbeats, failure detection, reconnection and anti-entropy until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.dial_peer_book().await;
        let mut beat = tokio::time::interval(self.cfg.heartbeat_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut entropy = tokio::time::interval(self.cfg.anti_entropy_interval);
        loop {
            tokio::select! {
                _ = beat.tick() => self.tick().await,
                _ = entropy.tick() => {
                    let live = self.members().live();
                    if let Some(peer) = live.get(rand::random_range(0..live.len().max(1))) {
                        if let Some(p) = peer_of(peer) {
                            tokio::spawn(self.clone().pull_topics(p));
                        }
                    }
                }
                _ = crate::sync::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Dial every member of the peer book (a restarted node finds the mesh again even
    /// if its bootstrap node is gone).
    async fn dial_peer_book(&self) {
        let book = match self.store.meta_scan(keys::PEER_PREFIX) {
            Ok(b) => b,
            Err(e) => return tracing::warn!(error = %e, "cannot read the peer book"),
        };
        for (key, value) in book {
            let id = key.trim_start_matches(keys::PEER_PREFIX);
            let (Ok(peer), Ok(addrs)) = (id.parse::<PeerId>(), codec::decode::<Vec<String>>(&value)) else {
                continue;
            };
            if id != self.local.as_str() {
                self.net.connect(peer, parse_addrs(&addrs)).await;
            }
        }
    }

    /// Charge a topic creation by `principal` (the client's PeerId) to its quota.
    pub fn admit_creation(&self, principal: &str, partitions: u32) -> Result<(), WireError> {
        crate::sync::lock(&self.quota).admit(principal, partitions, Instant::now())
    }

    /// Remember where a member was heard from (durable with the next flush), while the
    /// peer book has room.
    fn note_peer(&self, hb: &Heartbeat) {
        let key = keys::peer(hb.peer.as_str());
        let known = self.store.meta_get(&key).ok().flatten().is_some();
        let full = self.store.meta_scan(keys::PEER_PREFIX).map_or(true, |b| b.len() >= MAX_PEER_BOOK);
        if !known && full {
            return tracing::debug!(peer = %hb.peer, "peer book full; member not remembered");
        }
        let Ok(bytes) = codec::encode(&hb.addrs) else { return };
        if let Err(e) = self.store.meta_put(&key, &bytes) {
            tracing::debug!(error = %e, "cannot update the peer book");
        }
    }

    /// Tell the mesh this node is leaving (before the network stops).
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        self.net.publish(GossipMessage::Leave { peer: self.local.clone() }).await;
    }

    async fn tick(&self) {
        if self.leaving.load(Ordering::Relaxed) {
            return;
        }
        let addrs = match self.net.current_listen_addrs().await {
            Ok(a) => a.iter().map(ToString::to_string).collect(),
            Err(_) => self.addrs.clone(),
        };
        let hb = Heartbeat {
            peer: self.local.clone(),
            addrs,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            incarnation: self.incarnation,
            partitions: self.broker.held_partition_count(),
            kafka: self.cfg.kafka_advertised.clone(),
        };
        self.net.publish(GossipMessage::Heartbeat(hb)).await;
        self.announce_leases().await;
        let (swept, live): (membership::Swept, Vec<(NodeId, Vec<String>)>) = {
            let mut m = self.members();
            let swept = m.sweep(Instant::now());
            let live = m
                .live()
                .into_iter()
                .map(|p| {
                    let addrs = m.addrs(&p);
                    (p, addrs)
                })
                .collect();
            (swept, live)
        };
        for peer in swept.down {
            tracing::warn!(%peer, "member is down (no heartbeat)");
        }
        // A member gone for long leaves the peer book too, so the book stays bounded.
        for peer in swept.forgotten {
            if let Err(e) = self.store.meta_delete(&keys::peer(peer.as_str())) {
                tracing::debug!(error = %e, "cannot update the peer book");
            }
        }
        self.leases().sweep(Instant::now());
        // Keep a connection to every live member: gossip and forwarding need it.
        for (peer, addrs) in live {
            if let Some(p) = peer_of(&peer) {
                self.net.connect(p, parse_addrs(&addrs)).await;
            }
        }
    }

    /// Apply a fact from the network.
    pub async fn on_event(self: &Arc<Self>, ev: MeshEvent) {
        match ev {
            MeshEvent::Gossip(_, GossipMessage::Heartbeat(hb)) => {
                let new = self.members().on_heartbeat(&hb, Instant::now());
                if new {
                    tracing::info!(peer = %hb.peer, addrs = ?hb.addrs, kafka = ?hb.kafka, "member is up");
                    self.note_peer(&hb);
                    if let Some(p) = peer_of(&hb.peer) {
                        self.net.connect(p, parse_addrs(&hb.addrs)).await;
                    }
                }
            }
            MeshEvent::Gossip(_, GossipMessage::Leave { peer }) => {
                tracing::info!(%peer, "member left");
                self.members().on_leave(&peer);
            }
            MeshEvent::Gossip(_, GossipMessage::Leases(l)) => self.on_leases(&l),
            MeshEvent::Gossip(source, GossipMessage::Topic(signed)) => {
                if let Err(e) = self.ingest(signed).await {
                    tracing::warn!(%source, error = %e, "topic record rejected");
                }
            }
            MeshEvent::Connected(peer) => {
                self.resilience.reset(&peer);
                tokio::spawn(self.clone().pull_topics(peer));
            }
        }
    }

    /// Ask `peer` for every topic record it holds and adopt the valid ones.
    async fn pull_topics(self: Arc<Self>, peer: PeerId) {
        let ask = || self.net.peer_request(peer, PeerRequest::TopicRecords);
        match self.resilience.call(&peer, CallKind::Metadata, ask).await {
            Ok(PeerResponse::TopicRecords(records)) => {
                for r in records {
                    if let Err(e) = self.ingest(r).await {
                        tracing::warn!(%peer, error = %e, "topic record from peer rejected");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "topic sync failed"),
        }
    }

    /// Verify, validate and adopt a signed topic record; returns what adoption did.
    /// The replicas and stored partitions a delete or a re-creation left behind are
    /// stopped and deleted before it returns.
    async fn ingest(&self, signed: SignedRecord) -> Result<Adopted, String> {
        let topics = self.broker.topics();
        let (outcome, record) = topics.adopt(signed).map_err(|e| e.to_string())?;
        if outcome != Adopted::Kept {
            topics.flush().await.map_err(|e| e.to_string())?;
            topics.retire().await.map_err(|e| e.to_string())?;
            if !record.revision.deleted {
                self.provide_owned(&record).await;
            }
        }
        Ok(outcome)
    }

    async fn provide_owned(&self, record: &TopicRecord) {
        for (p, set) in record.replicas.iter().enumerate() {
            if set.contains(&self.local) {
                self.net.start_providing(partition_key(&record.info.name, p as u32)).await;
            }
        }
    }

    /// Create a topic on behalf of a client: validate, place replicas on live nodes,
    /// sign, adopt, announce (gossip + DHT), wait for concurrent creations, and answer
    /// only if this creation won.
    pub async fn create_topic(&self, mut req: NewTopic) -> Result<TopicInfo, WireError> {
        let live = self.live_nodes();
        if req.replication_factor == AUTO_REPLICATION_FACTOR {
            req.replication_factor = live.len().clamp(1, AUTO_REPLICATION_FACTOR_MAX as usize) as u16;
        }
        let config = self.broker.topics().validate_new(&req, live.len())?;
        // A record in the DHT this node does not hold: a live topic (the name is taken)
        // or the tombstone of a deleted one (free, for the next incarnation).
        if let Some(signed) = self.dht_topic(&req.name).await {
            if let Err(e) = self.ingest(signed).await {
                tracing::debug!(topic = %req.name, error = %e, "topic record from the DHT not adopted");
            }
            if self.broker.topics().get(&req.name).is_ok() {
                return Err(already_exists(&req.name));
            }
        }
        let revision =
            Revision { incarnation: self.broker.topics().next_incarnation(&req.name), ..Default::default() };
        let info = TopicInfo {
            name: req.name.clone(),
            partitions: req.partitions,
            replication_factor: req.replication_factor,
            config,
            creation_id: rand::random(),
            created_at_ms: crate::time::unix_ms() as u64,
        };
        let replicas = place_replicas(&req.name, req.partitions, req.replication_factor, &live);
        let record = TopicRecord { info: info.clone(), replicas, creator: self.local.clone(), revision };
        let internal = |e: String| WireError::new(ErrorCode::Unknown, e);
        let payload = revision::encode_record(&record).map_err(|e| internal(e.to_string()))?;
        let signed = self.net.sign(payload).map_err(|e| internal(e.to_string()))?;
        match self.ingest(signed.clone()).await.map_err(internal)? {
            Adopted::Kept => return Err(already_exists(&req.name)),
            Adopted::New | Adopted::Replaced | Adopted::Changed => {}
        }
        self.net.publish(GossipMessage::Topic(signed.clone())).await;
        self.net.put_record(topic_key(&req.name), signed).await;
        tokio::time::sleep(self.cfg.topic_settle).await;
        let now = self.broker.topics().get(&req.name)?;
        if now.info.creation_id != info.creation_id {
            return Err(WireError::new(
                ErrorCode::TopicAlreadyExists,
                format!(
                    "topic '{}' was created concurrently by {}, whose creation won",
                    req.name, now.record.creator
                ),
            ));
        }
        Ok(info)
    }

    /// A topic by name: from this node's registry, else looked up in the DHT.
    pub async fn topic(&self, name: &str) -> Result<Arc<Topic>, WireError> {
        if let Ok(t) = self.broker.topics().get(name) {
            return Ok(t);
        }
        if let Some(signed) = self.dht_topic(name).await {
            if let Err(e) = self.ingest(signed).await {
                tracing::warn!(topic = name, error = %e, "topic record from the DHT rejected");
            }
        }
        self.broker.topics().get(name)
    }

    async fn dht_topic(&self, name: &str) -> Option<SignedRecord> {
        let found = tokio::time::timeout(self.cfg.lookup_timeout, self.net.get_record(topic_key(name))).await;
        let mut best: Option<(TopicRecord, SignedRecord)> = None;
        for signed in found.ok()?.ok()? {
            // An invalid record must not hide a valid one (or block a creation).
            let rec = match open_signed(&signed) {
                Ok(rec) if rec.info.name == name => rec,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "topic record in the DHT refused");
                    continue;
                }
            };
            let better = |b: &TopicRecord| match revision::relation(&rec, b) {
                revision::Relation::Newer => true,
                revision::Relation::Rival => rec.wins_over(b),
                revision::Relation::Same | revision::Relation::Older => false,
            };
            if best.as_ref().is_none_or(|(b, _)| better(b)) {
                best = Some((rec, signed));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Every topic record this node holds, as signed by their creators.
    /// Tombstones of deleted topics included, so a node that was away learns of a delete.
    pub fn signed_records(&self) -> Vec<SignedRecord> {
        self.broker.topics().records()
    }

    /// Members by state (`up`, `down`, `left`), this node counted as up: the counts of
    /// `cluster_status().members` without building the status.
    pub fn member_counts(&self) -> [(&'static str, usize); 3] {
        let mut counts = self.members().count_by_state();
        counts[0].1 += 1;
        counts
    }

    /// Members (this node first) and the replica sets of every topic.
    pub fn cluster_status(&self) -> ClusterStatus {
        let mut members = vec![MemberStatus {
            peer: self.local.clone(),
            addrs: self.addrs.clone(),
            state: "up".into(),
            last_seen_ms_ago: 0,
            partitions: self.broker.held_partition_count(),
        }];
        members.extend(self.members().status(Instant::now()));
        let topics = self
            .broker
            .topics()
            .all()
            .iter()
            .map(|t| (t.info.name.clone(), t.record.replicas.clone()))
            .collect();
        let mut partitions = Vec::new();
        for t in self.broker.topics().all() {
            for p in 0..t.info.partitions {
                let status = match t.local(p) {
                    Ok(r) => r.status(),
                    Err(_) => {
                        let mut s = PartitionStatus::unknown(p, t.replicas(p));
                        if let Some((epoch, leader)) = self.leases().get(&t.storage_name(), p, Instant::now())
                        {
                            (s.epoch, s.leader) = (epoch, leader.clone());
                        }
                        s
                    }
                };
                partitions.push((t.info.name.clone(), status));
            }
        }
        ClusterStatus {
            node: self.local.clone(),
            members,
            topics,
            breakers: self.resilience.breaker_states(),
            outbox: Vec::new(),
            partitions,
        }
    }
}

fn parse_addrs(addrs: &[String]) -> Vec<Multiaddr> {
    addrs.iter().filter_map(|a| a.parse().ok()).collect()
}

/// The DHT key of a topic record.
pub fn topic_key(name: &str) -> String {
    format!("{TOPIC_KEY_PREFIX}{name}")
}

/// The DHT provider key of a partition.
pub fn partition_key(topic: &str, p: u32) -> String {
    format!("{PARTITION_KEY_PREFIX}{topic}/{p}")
}
