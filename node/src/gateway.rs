//! The gateway: any node is an entry point to the whole mesh. A partition request goes
//! to the partition's leader, as this node's own replica knows it or as gossip announced
//! it, then to the other replicas of its set: a replica that does not lead answers
//! `NOT_LEADER_OR_FOLLOWER` and the request moves on to the leader it names. Reads may
//! be served by any replica up to its high watermark, so a dead leader does not stop
//! them. Forwarded requests are served locally only, so a disagreement about who leads
//! costs a redirect, never a loop.
//!
//! Internal topics (`__*`) are written only by this node's own group coordinator, which
//! appends through its replica directly: a produce to one is refused on every path here,
//! from a client or forwarded by a peer.

use crate::broker::{Broker, NewTopic, Topic};
use crate::group::Coordinator;
use crate::mesh::Mesh;
use crate::network::{NetworkHandle, PeerId};
use crate::outbox::Outbox;
use crate::resilience::{CallKind, Resilience};
use crate::services::Services;
use meshlog_protocol::group::{self, GroupRequest, GroupResponse, OFFSETS_TOPIC};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, ClientResult, PeerRequest, PeerResponse, ProduceRequest, ProduceResponse,
};
use meshlog_protocol::types::Acks;
use meshlog_protocol::types::{PartitionStatus, TopicDescription};
use meshlog_protocol::{ErrorCode, WireError};
use std::sync::Arc;
use std::time::Duration;

/// Routes client and peer requests.
pub struct Gateway {
    /// The local broker.
    pub broker: Arc<Broker>,
    /// The mesh view.
    pub mesh: Arc<Mesh>,
    /// The service registry.
    pub services: Arc<Services>,
    /// The network.
    pub net: NetworkHandle,
    /// Timeouts, breakers and retries for every call to a peer.
    pub resilience: Arc<Resilience>,
    /// The store-and-forward outbox (`acks=local`).
    pub outbox: Arc<Outbox>,
    /// Budget for asking a peer about its state.
    pub peer_timeout: Duration,
    /// How long a partition request waits for an election to produce a leader.
    pub leader_wait: Duration,
    /// The consumer-group coordinator (for the offsets partitions this node leads).
    pub groups: Arc<Coordinator>,
    /// Partitions and replication factor of the offsets topic, if this node creates it.
    pub offsets_topic: (u32, u16),
}

/// How authoritative a partition status is: (from its leader, epoch, HW).
type StatusRank = (bool, u64, u64);

/// The outcome of one pass over a partition's replicas.
enum Routed {
    /// An answer (or an error that another pass would not change).
    Done(ClientResult),
    /// No replica leads right now (or none could be reached): a pass later may do.
    NoLeader(WireError),
}

/// Whether a forwarded request reached its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// It answered.
    Answered,
    /// It certainly never got the request.
    NotSent,
    /// It may have got it (lost in transit, timed out).
    Unknown,
}

/// First and largest pause between passes while waiting for a leader.
const LEADER_POLL_MIN: Duration = Duration::from_millis(20);
const LEADER_POLL_MAX: Duration = Duration::from_millis(250);

impl Gateway {
    /// Serve a request from a client, or a node forwarding one (`from`: the principal
    /// that owns what the request registers, and pays its creation quota).
    pub async fn client(&self, from: PeerId, req: ClientRequest) -> ClientResult {
        refuse_internal_write(&req)?;
        match req {
            ClientRequest::CreateTopic { name, partitions, replication_factor, config } => {
                self.mesh.admit_creation(&from.to_string(), partitions)?;
                let new = NewTopic { name, partitions, replication_factor, config, internal: false };
                self.mesh.create_topic(new).await.map(ClientResponse::TopicCreated)
            }
            ClientRequest::ListTopics => Ok(ClientResponse::Topics(
                self.broker.topics().all().iter().map(|t| t.info.clone()).collect(),
            )),
            ClientRequest::DescribeTopic { name } => self.describe(&name).await,
            ClientRequest::Produce(p) if p.acks == Acks::Local => self.accept_locally(p).await,
            ClientRequest::Produce(ref p) => {
                let (t, part) = (p.topic.clone(), p.partition);
                self.route(&t, part, req).await
            }
            ClientRequest::Fetch(ref f) => {
                let (t, part) = (f.topic.clone(), f.partition);
                self.route(&t, part, req).await
            }
            ClientRequest::ListOffsets { ref topic, partition, .. } => {
                let t = topic.clone();
                self.route(&t, partition, req).await
            }
            ClientRequest::Group(g) => self.group(g).await,
            ClientRequest::ListGroups => self.list_groups().await,
            other => self.client_mesh(&from.to_string(), other).await,
        }
    }

    /// The offsets topic, created (by whichever node is asked first) on first use.
    async fn offsets_topic(&self) -> Result<Arc<Topic>, WireError> {
        match self.mesh.topic(OFFSETS_TOPIC).await {
            Err(e) if e.code == ErrorCode::UnknownTopicOrPartition => {}
            other => return other,
        }
        let (partitions, rf) = self.offsets_topic;
        let live = self.mesh.live_nodes().len().max(1);
        let rf = rf.min(live.min(u16::MAX as usize) as u16);
        let mut config = std::collections::BTreeMap::new();
        config.insert("cleanup.policy".to_string(), "compact".to_string());
        let new = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions,
            replication_factor: rf,
            config,
            internal: true,
        };
        match self.mesh.create_topic(new).await {
            Ok(_) => tracing::info!(partitions, replication_factor = rf, "created the offsets topic"),
            Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.mesh.topic(OFFSETS_TOPIC).await
    }

    /// Route a group request to its coordinator: the leader of the group's offsets
    /// partition.
    async fn group(&self, req: GroupRequest) -> ClientResult {
        let t = self.offsets_topic().await?;
        if let Some(name) = req.group() {
            group::validate_group_name(name)?;
        }
        let p = req.offsets_partition(t.info.partitions);
        self.route(OFFSETS_TOPIC, p, ClientRequest::Group(req)).await.map_err(|e| match e.code {
            ErrorCode::LeaderNotAvailable | ErrorCode::NotLeaderOrFollower => WireError::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("no coordinator for {OFFSETS_TOPIC}-{p} right now: {}", e.message),
            ),
            _ => e,
        })
    }

    /// Every group, from the coordinators of every offsets partition.
    async fn list_groups(&self) -> ClientResult {
        let t = self.offsets_topic().await?;
        let asks = (0..t.info.partitions).map(|shard| self.group(GroupRequest::List { shard }));
        let mut groups = Vec::new();
        for answer in futures::future::join_all(asks).await {
            match answer? {
                ClientResponse::Group(GroupResponse::Groups(v)) => groups.extend(v),
                other => {
                    return Err(WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}")));
                }
            }
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(ClientResponse::Group(GroupResponse::Groups(groups)))
    }

    /// Serve a request routed to this node: a partition request on its replica, a
    /// group request by its coordinator.
    async fn serve_local(&self, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::Group(g) => {
                let t = self.broker.topics().get(OFFSETS_TOPIC)?;
                self.groups.handle(g.offsets_partition(t.info.partitions), g).await
            }
            other => self.broker.handle_local(other).await,
        }
    }

    async fn client_mesh(&self, from: &str, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::RegisterService(reg) => {
                self.services.register(reg, from).await.map(ClientResponse::ServiceRegistered)
            }
            ClientRequest::DeregisterService { name, instance_id } => self
                .services
                .deregister(&name, &instance_id, from)
                .await
                .map(|()| ClientResponse::ServiceDeregistered),
            ClientRequest::DiscoverService { name } => {
                Ok(ClientResponse::Services(self.services.discover(&name).await))
            }
            ClientRequest::ListServices => {
                let members = self.mesh.live_nodes().iter().filter_map(|p| p.parse().ok()).collect();
                Ok(ClientResponse::Services(self.services.gather(members, None).await))
            }
            ClientRequest::ClusterStatus => {
                let mut status = self.mesh.cluster_status();
                status.outbox = self.outbox.depth();
                Ok(ClientResponse::Cluster(status))
            }
            // `client` routes every other request itself.
            other => Err(WireError::new(ErrorCode::InvalidRequest, format!("misrouted request {other:?}"))),
        }
    }

    /// `acks=local`: make the batch durable in this node's outbox and answer at once;
    /// the forwarder delivers it in order, exactly once.
    async fn accept_locally(&self, p: ProduceRequest) -> ClientResult {
        let t = self.mesh.topic(&p.topic).await?;
        t.check_partition(p.partition)?;
        let max = t.info.config.max_message_bytes as usize;
        let header = meshlog_protocol::batch::validate(&p.batch, max)
            .map_err(|e| WireError::new(ErrorCode::CorruptMessage, format!("invalid record batch: {e}")))?;
        self.outbox.enqueue(&p.topic, p.partition, p.batch).await?;
        let record_count = header.last_offset_delta as u32 + 1;
        Ok(ClientResponse::Produced(ProduceResponse {
            base_offset: None,
            record_count,
            accepted_locally: true,
            duplicate: false,
        }))
    }

    /// The leader of `topic`-`p` as this node knows it: its own replica's view, else
    /// the last gossip announcement.
    fn leader_of(&self, topic: &str, p: u32) -> Option<String> {
        if let Some(r) = self.broker.replica(topic, p) {
            if let Some(l) = r.leader() {
                return Some(l.to_string());
            }
        }
        self.mesh.leader_hint(topic, p)
    }

    /// Serve a partition request at its leader (here or forwarded), trying the other
    /// replicas of its set when the leader is unknown, wrong or unreachable. While the
    /// partition has no leader (an election), it waits up to `leader_wait` for one.
    pub(crate) async fn route(&self, topic: &str, partition: u32, req: ClientRequest) -> ClientResult {
        let t = self.mesh.topic(topic).await?;
        t.check_partition(partition)?;
        let set = t.replicas(partition).to_vec();
        let deadline = tokio::time::Instant::now() + self.leader_wait;
        let mut pause = LEADER_POLL_MIN;
        loop {
            match self.route_once(topic, partition, &set, &req).await {
                Routed::Done(result) => return result,
                Routed::NoLeader(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(%topic, partition, error = %e, "no leader yet; waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LEADER_POLL_MAX);
                }
                Routed::NoLeader(e) => return Err(e),
            }
        }
    }

    /// One pass over the replica set, leader first.
    async fn route_once(&self, topic: &str, partition: u32, set: &[String], req: &ClientRequest) -> Routed {
        let kind = CallKind::of(req);
        // A produce that may have reached an unreachable node must not be sent elsewhere
        // unless a retry is harmless (an idempotent producer's).
        let may_move_on_unreachable = !matches!(kind, CallKind::Produce { idempotent: false, .. });
        let mut tried: Vec<String> = Vec::new();
        let mut next = self.leader_of(topic, partition);
        let mut last = WireError::new(
            ErrorCode::LeaderNotAvailable,
            format!("{topic}-{partition} has no reachable replica (replicas: {})", set.join(", ")),
        );
        for _ in 0..=set.len() {
            let target = match next.take().filter(|n| !tried.contains(n) && set.contains(n)) {
                Some(n) => n,
                None => match set.iter().find(|r| !tried.contains(r) && self.mesh.is_live(r)) {
                    Some(r) => r.clone(),
                    None => break,
                },
            };
            tried.push(target.clone());
            let (result, reach) = if target == self.mesh.local() {
                (self.serve_local(req.clone()).await, Reach::Answered)
            } else {
                self.forward(&target, topic, partition, req, kind).await
            };
            match result {
                Err(e) if reach == Reach::Unknown && !may_move_on_unreachable => return Routed::Done(Err(e)),
                // An unreachable replica says less than one that answered: keep the answer.
                Err(e) if reach != Reach::Answered => {
                    if last.code == ErrorCode::LeaderNotAvailable {
                        last = e;
                    }
                }
                Err(e) if e.code == ErrorCode::NotLeaderOrFollower && !is_leadership_lost(&e) => last = e,
                Err(e) if e.code == ErrorCode::LeaderNotAvailable => last = e,
                // A replica behind the client's epoch or offset: another one may have it.
                Err(e)
                    if e.code == ErrorCode::UnknownLeaderEpoch || e.code == ErrorCode::OffsetNotAvailable =>
                {
                    last = e
                }
                other => return Routed::Done(other),
            }
            next = self.leader_of(topic, partition);
        }
        Routed::NoLeader(last)
    }

    /// Forward a request to `target`, saying whether it got there.
    async fn forward(
        &self,
        target: &str,
        topic: &str,
        partition: u32,
        req: &ClientRequest,
        kind: CallKind,
    ) -> (ClientResult, Reach) {
        let Ok(peer) = target.parse::<PeerId>() else {
            let e = WireError::new(
                ErrorCode::Unknown,
                format!("{topic}-{partition}: invalid replica '{target}'"),
            );
            return (Err(e), Reach::NotSent);
        };
        let forward = || self.net.peer_request(peer, PeerRequest::Forward(req.clone()));
        match self.resilience.call(&peer, kind, forward).await {
            Ok(PeerResponse::Forwarded(result)) => (result, Reach::Answered),
            Ok(PeerResponse::Error(e)) => (Err(e), Reach::Answered),
            Ok(_) => {
                let e = WireError::new(ErrorCode::Unknown, format!("{target} answered out of turn"));
                (Err(e), Reach::Answered)
            }
            Err(e) => {
                let reach = if e.not_sent() { Reach::NotSent } else { Reach::Unknown };
                let e = WireError::new(
                    ErrorCode::LeaderNotAvailable,
                    format!("{topic}-{partition}: replica {target} cannot be reached: {e}"),
                );
                (Err(e), reach)
            }
        }
    }

    /// A topic with the state of every partition, asked of every replica: the answer
    /// of the replica that leads the highest epoch wins, else the most advanced one.
    async fn describe(&self, name: &str) -> ClientResult {
        let t = self.mesh.topic(name).await?;
        // Per partition: the best answer, ranked by (from its leader, epoch, HW).
        let mut statuses: Vec<Option<(StatusRank, PartitionStatus)>> = vec![None; t.info.partitions as usize];
        let mut nodes: Vec<String> = t.record.replicas.iter().flatten().cloned().collect();
        nodes.sort();
        nodes.dedup();
        // Ask every replica and the DHT at once: a dead node costs one short timeout.
        let asks = nodes.iter().map(|o| self.statuses_of(o, name));
        let holders = (0..t.info.partitions).map(|p| self.holders(name, p));
        let (answers, holders) =
            futures::join!(futures::future::join_all(asks), futures::future::join_all(holders));
        for (node, answer) in nodes.iter().zip(answers) {
            for s in answer {
                let Some(slot) = statuses.get_mut(s.partition as usize) else { continue };
                let rank = (s.leader == *node, s.epoch, s.high_watermark);
                if slot.as_ref().is_none_or(|(r, _)| rank > *r) {
                    *slot = Some((rank, s));
                }
            }
        }
        let mut partitions: Vec<PartitionStatus> = statuses
            .into_iter()
            .enumerate()
            .map(|(p, s)| {
                s.map(|(_, s)| s).unwrap_or_else(|| PartitionStatus::unknown(p as u32, t.replicas(p as u32)))
            })
            .collect();
        for (s, h) in partitions.iter_mut().zip(holders) {
            s.holders = h;
        }
        Ok(ClientResponse::Topic(TopicDescription { topic: t.info.clone(), partitions }))
    }

    /// The nodes the DHT lists as providers of a partition.
    async fn holders(&self, topic: &str, p: u32) -> Vec<String> {
        let ask = self.net.get_providers(crate::mesh::partition_key(topic, p)); // a DHT query, not a peer call
        let mut v: Vec<String> = match tokio::time::timeout(self.peer_timeout, ask).await {
            Ok(Ok(peers)) => peers.iter().map(ToString::to_string).collect(),
            _ => Vec::new(),
        };
        v.sort();
        v
    }

    async fn statuses_of(&self, owner: &str, topic: &str) -> Vec<PartitionStatus> {
        if owner == self.mesh.local() {
            return self.broker.local_statuses(topic).unwrap_or_default();
        }
        let Ok(peer) = owner.parse::<PeerId>() else { return Vec::new() };
        let ask = || self.net.peer_request(peer, PeerRequest::PartitionStatuses { topic: topic.to_string() });
        match self.resilience.call(&peer, CallKind::Status, ask).await {
            Ok(PeerResponse::Partitions(v)) => v,
            _ => Vec::new(),
        }
    }

    /// Serve a client request another node forwarded: partition and group requests on
    /// this node's replica or coordinator, the rest as from a client. A produce to an
    /// internal topic is refused here too: a peer must not write forged group records.
    async fn forwarded(&self, from: PeerId, r: ClientRequest) -> ClientResult {
        if let Err(e) = refuse_internal_write(&r) {
            tracing::warn!(peer = %from, error = %e, "forwarded request refused");
            return Err(e);
        }
        match r {
            ClientRequest::Produce(_)
            | ClientRequest::Fetch(_)
            | ClientRequest::ListOffsets { .. }
            | ClientRequest::Group(_) => self.serve_local(r).await,
            other => self.client(from, other).await,
        }
    }

    /// Serve a request from another node (`from`, authenticated).
    pub async fn peer(&self, from: PeerId, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Replicate(m) => {
                self.broker.deliver(&from, m);
                PeerResponse::Replicated
            }
            PeerRequest::Forward(r) => PeerResponse::Forwarded(self.forwarded(from, r).await),
            PeerRequest::TopicRecords => PeerResponse::TopicRecords(self.mesh.signed_records()),
            PeerRequest::LocalServices { name } => {
                PeerResponse::Services(self.services.local(name.as_deref()))
            }
            PeerRequest::PartitionStatuses { topic } => match self.broker.local_statuses(&topic) {
                Ok(v) => PeerResponse::Partitions(v),
                Err(e) => PeerResponse::Error(e),
            },
        }
    }
}

/// Refuse a produce to an internal topic (`__*`): only the node's own group coordinator
/// writes them, and it appends through its replica, never through a request.
pub fn refuse_internal_write(req: &ClientRequest) -> Result<(), WireError> {
    match req {
        ClientRequest::Produce(p) if p.topic.starts_with("__") => Err(WireError::new(
            ErrorCode::InvalidTopic,
            format!("'{}' is an internal topic: only its group coordinator writes to it", p.topic),
        )),
        _ => Ok(()),
    }
}

/// Whether an error says a leader accepted a write and then lost its leadership: the
/// write may survive, so it is not sent elsewhere (the producer decides).
fn is_leadership_lost(e: &WireError) -> bool {
    e.message.contains(crate::broker::driver::LEADERSHIP_LOST)
}

/// How long the forwarder waits before retrying partitions it could not deliver to.
const OUTBOX_RETRY: Duration = Duration::from_millis(500);

/// Deliver the outbox: the oldest batch of each partition, in order, until the node
/// stops. A batch leaves the outbox only once the partition's leader acknowledged it
/// with `acks=all` (a retry after a lost answer is recognised as a duplicate).
pub async fn forward_outbox(gw: Arc<Gateway>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let heads = gw.outbox.heads();
        let mut stuck = false;
        for ((topic, partition), key) in heads {
            let bytes = match gw.outbox.read(&key) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    // Listed but not stored: nothing to deliver; drop it rather than spin.
                    let _ = gw.outbox.delivered(&(topic.clone(), partition), &key);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, "outbox: cannot read a queued batch");
                    stuck = true;
                    continue;
                }
            };
            let req = ProduceRequest {
                topic: topic.clone(),
                partition,
                acks: Acks::All,
                timeout_ms: 10_000,
                leader_epoch: None,
                batch: bytes,
            };
            match gw.route(&topic, partition, ClientRequest::Produce(req)).await {
                Ok(_) => {
                    if let Err(e) = gw.outbox.delivered(&(topic.clone(), partition), &key) {
                        tracing::error!(%topic, partition, error = %e, "outbox: cannot drop a delivered batch");
                    }
                }
                Err(e) => {
                    tracing::debug!(%topic, partition, error = %e, "outbox: delivery deferred");
                    stuck = true;
                }
            }
        }
        let idle = gw.outbox.heads().is_empty();
        tokio::select! {
            _ = gw.outbox.wake.notified(), if idle => {}
            _ = tokio::time::sleep(OUTBOX_RETRY), if stuck => {}
            _ = std::future::ready(()), if !idle && !stuck => {}
            _ = crate::sync::stopped(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(topic: &str) -> ClientRequest {
        ClientRequest::Produce(ProduceRequest {
            topic: topic.into(),
            partition: 0,
            acks: Acks::All,
            timeout_ms: 1000,
            leader_epoch: None,
            batch: Vec::new(),
        })
    }

    #[test]
    fn produce_to_internal_topics_is_refused_whoever_asks() {
        let e = refuse_internal_write(&produce(OFFSETS_TOPIC)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTopic);
        assert!(refuse_internal_write(&produce("__anything")).is_err());
        assert!(refuse_internal_write(&produce("orders")).is_ok());
        let group_fetch = ClientRequest::ListOffsets {
            topic: OFFSETS_TOPIC.into(),
            partition: 0,
            spec: meshlog_protocol::types::OffsetSpec::Latest,
        };
        assert!(refuse_internal_write(&group_fetch).is_ok(), "reads stay allowed");
    }
}
