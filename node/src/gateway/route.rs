//! Routing: where a partition request is served, and getting it there. A partition
//! request goes to the partition's leader, as this node's own replica knows it or as
//! gossip announced it, then to the other replicas of its set: a replica that does not
//! lead answers `NOT_LEADER_OR_FOLLOWER` and the request moves on to the leader it names.
//! Reads may be served by any replica up to its high watermark, so a dead leader does not
//! stop them. Also the topic description gathered from every replica and the DHT.
//!
//! The router serves a request here (this node's replica or group coordinator) or
//! forwards it once; it never decides what a client may ask (the gateway's client API
//! does) and never serves requests from peers (`peer.rs`).

use crate::broker::Broker;
use crate::group::Coordinator;
use crate::mesh::{Mesh, TopicChange};
use crate::network::{peer_of, NetworkHandle, ToNodeId};
use crate::resilience::{CallKind, Resilience};
use meshlog_protocol::group::OFFSETS_TOPIC;
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ClientResult, PeerRequest, PeerResponse};
use meshlog_protocol::types::{PartitionStatus, TopicDescription};
use meshlog_protocol::{Epoch, ErrorCode, NodeId, WireError};
use std::sync::Arc;
use std::time::Duration;

/// How long routing waits on others.
#[derive(Debug, Clone, Copy)]
pub struct RouteSettings {
    /// Budget for asking the mesh about a partition (the DHT's providers).
    pub peer_timeout: Duration,
    /// How long a partition request waits for an election to produce a leader.
    pub leader_wait: Duration,
}

/// Sends a partition or group request to the node that serves it: this one, or a peer
/// through the resilience layer.
pub struct Router {
    broker: Arc<Broker>,
    mesh: Arc<Mesh>,
    net: NetworkHandle,
    resilience: Arc<Resilience>,
    groups: Arc<Coordinator>,
    settings: RouteSettings,
}

/// How authoritative a partition status is: (from its leader, epoch, HW).
type StatusRank = (bool, Epoch, u64);

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

impl Router {
    /// A router serving here through `broker` (partitions) and `groups` (the offsets
    /// partitions this node leads), and forwarding through the mesh's network under
    /// `resilience`.
    pub fn new(
        broker: Arc<Broker>,
        mesh: Arc<Mesh>,
        resilience: Arc<Resilience>,
        groups: Arc<Coordinator>,
        settings: RouteSettings,
    ) -> Router {
        let net = mesh.net().clone();
        Router { broker, mesh, net, resilience, groups, settings }
    }

    /// The local broker.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The network handle requests are forwarded through.
    pub fn net(&self) -> &NetworkHandle {
        &self.net
    }

    /// The resilience layer every forwarded call goes through (its breakers' states).
    pub fn resilience(&self) -> &Arc<Resilience> {
        &self.resilience
    }

    /// The mesh (membership, topic records, leases).
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// How long a request waits for a partition (or a topic) that is on its way.
    pub(super) fn leader_wait(&self) -> std::time::Duration {
        self.settings.leader_wait
    }

    /// Serve a partition request at its leader (here or forwarded), trying the other
    /// replicas of its set when the leader is unknown, wrong or unreachable. While the
    /// partition has no leader (an election), it waits up to `leader_wait` for one.
    pub(super) async fn route(&self, topic: &str, partition: u32, req: ClientRequest) -> ClientResult {
        let t = self.mesh.topic(topic).await?;
        t.check_partition(partition)?;
        let set = t.replicas(partition).to_vec();
        let deadline = tokio::time::Instant::now() + self.settings.leader_wait;
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

    /// Serve a request routed to this node: a partition request on its replica, a
    /// group request by its coordinator. Never forwards.
    pub(super) async fn serve_local(&self, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::Group(g) => {
                let t = self.broker.topics().get(OFFSETS_TOPIC)?;
                self.groups.handle(g.offsets_partition(t.info.partitions), g).await
            }
            ClientRequest::DeleteTopic { name } => {
                self.mesh.change_topic(&name, TopicChange::Delete).await.map(ClientResponse::TopicChanged)
            }
            ClientRequest::AlterTopic(a) => {
                let name = a.name.clone();
                self.mesh.change_topic(&name, TopicChange::Alter(a)).await.map(ClientResponse::TopicChanged)
            }
            other => self.broker.handle_local(other).await,
        }
    }

    /// The leader of `topic`-`p` as this node knows it: its own replica's view, else
    /// the last gossip announcement.
    fn leader_of(&self, topic: &str, p: u32) -> Option<NodeId> {
        if let Some(r) = self.broker.replica(topic, p) {
            if let Some(l) = r.leader() {
                return Some(l.clone());
            }
        }
        self.mesh.leader_hint(topic, p)
    }

    /// One pass over the replica set, leader first.
    async fn route_once(&self, topic: &str, partition: u32, set: &[NodeId], req: &ClientRequest) -> Routed {
        let kind = CallKind::of(req);
        // A produce that may have reached an unreachable node must not be sent elsewhere
        // unless a retry is harmless (an idempotent producer's).
        let may_move_on_unreachable = !matches!(kind, CallKind::Produce { idempotent: false, .. });
        // A write goes only to the replica this node knows leads (its own replica's view
        // or the leader's lease), never to the other members in turn: an honest one
        // refuses it anyway, and one that acknowledged it would be a member acking a
        // write it never stored (seen from a rogue member in tests/hostile.rs). With no
        // leader known, `route` waits for the next lease and asks again.
        let leader_only = matches!(kind, CallKind::Produce { .. });
        let mut tried: Vec<NodeId> = Vec::new();
        let mut next = self.leader_of(topic, partition);
        let mut last = WireError::new(
            ErrorCode::LeaderNotAvailable,
            format!("{topic}-{partition} has no reachable replica (replicas: {})", NodeId::join(set, ", ")),
        );
        for _ in 0..=set.len() {
            let target = match next.take().filter(|n| !tried.contains(n) && set.contains(n)) {
                Some(n) => n,
                None if leader_only => break,
                None => match set.iter().find(|r| !tried.contains(r) && self.mesh.is_live(r)) {
                    Some(r) => r.clone(),
                    None => break,
                },
            };
            tried.push(target.clone());
            let (result, reach) = if target == *self.mesh.local() {
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
        target: &NodeId,
        topic: &str,
        partition: u32,
        req: &ClientRequest,
        kind: CallKind,
    ) -> (ClientResult, Reach) {
        let Some(peer) = peer_of(target) else {
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
    pub(super) async fn describe(&self, name: &str) -> ClientResult {
        let t = self.mesh.topic(name).await?;
        // Per partition: the best answer, ranked by (from its leader, epoch, HW).
        let mut statuses: Vec<Option<(StatusRank, PartitionStatus)>> = vec![None; t.info.partitions as usize];
        let mut nodes: Vec<NodeId> = t.record.replicas.iter().flatten().cloned().collect();
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
    async fn holders(&self, topic: &str, p: u32) -> Vec<NodeId> {
        let ask = self.net.get_providers(crate::mesh::partition_key(topic, p)); // a DHT query, not a peer call
        let mut v: Vec<NodeId> = match tokio::time::timeout(self.settings.peer_timeout, ask).await {
            Ok(Ok(peers)) => peers.iter().map(ToNodeId::node_id).collect(),
            _ => Vec::new(),
        };
        v.sort();
        v
    }

    /// The partition states `owner` holds of `topic` (none when it cannot be asked).
    async fn statuses_of(&self, owner: &NodeId, topic: &str) -> Vec<PartitionStatus> {
        if owner == self.mesh.local() {
            return self.broker.local_statuses(topic).unwrap_or_default();
        }
        let Some(peer) = peer_of(owner) else { return Vec::new() };
        let ask = || self.net.peer_request(peer, PeerRequest::PartitionStatuses { topic: topic.to_string() });
        match self.resilience.call(&peer, CallKind::Status, ask).await {
            Ok(PeerResponse::Partitions(v)) => v,
            _ => Vec::new(),
        }
    }
}

/// Whether an error says a leader accepted a write and then lost its leadership: the
/// write may survive, so it is not sent elsewhere (the producer decides).
fn is_leadership_lost(e: &WireError) -> bool {
    e.message.contains(crate::broker::driver::LEADERSHIP_LOST)
}
