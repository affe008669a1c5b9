//! The gateway: any node is an entry point to the whole mesh. Client requests are
//! served here if this node owns the partition (or the request is about the mesh), and
//! forwarded over the mesh to the owner otherwise. Forwarded requests are served locally
//! only, so a disagreement about ownership costs an error, never a loop.

use crate::broker::{Broker, NewTopic};
use crate::mesh::Mesh;
use crate::network::{NetworkHandle, PeerId};
use crate::outbox::Outbox;
use crate::resilience::{CallKind, Resilience};
use crate::services::Services;
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
}

impl Gateway {
    /// Serve a request from a client.
    pub async fn client(&self, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::CreateTopic { name, partitions, replication_factor, config } => {
                let new = NewTopic { name, partitions, replication_factor, config };
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
            other => self.client_mesh(other).await,
        }
    }

    async fn client_mesh(&self, req: ClientRequest) -> ClientResult {
        match req {
            ClientRequest::RegisterService(reg) => {
                self.services.register(reg).await.map(ClientResponse::ServiceRegistered)
            }
            ClientRequest::DeregisterService { name, instance_id } => self
                .services
                .deregister(&name, &instance_id)
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

    /// Serve a partition request here if this node owns the partition, else forward it.
    pub(crate) async fn route(&self, topic: &str, partition: u32, req: ClientRequest) -> ClientResult {
        let t = self.mesh.topic(topic).await?;
        t.check_partition(partition)?;
        let owner = t.owner(partition).unwrap_or_default().to_string();
        if owner == self.mesh.local() {
            return self.broker.handle_local(req).await;
        }
        let peer: PeerId = owner.parse().map_err(|_| {
            WireError::new(ErrorCode::Unknown, format!("{topic}-{partition} has an invalid owner '{owner}'"))
        })?;
        let kind = call_kind(&req);
        let forward = || self.net.peer_request(peer, PeerRequest::Forward(req.clone()));
        match self.resilience.call(&peer, kind, forward).await {
            Ok(PeerResponse::Forwarded(result)) => result,
            Ok(PeerResponse::Error(e)) => Err(e),
            Ok(_) => Err(WireError::new(ErrorCode::Unknown, format!("owner {owner} answered out of turn"))),
            Err(e) => Err(WireError::new(
                ErrorCode::LeaderNotAvailable,
                format!("{topic}-{partition} is owned by {owner}, which cannot be reached: {e}"),
            )),
        }
    }

    /// A topic with the state of every partition, asked of each owner.
    async fn describe(&self, name: &str) -> ClientResult {
        let t = self.mesh.topic(name).await?;
        let mut statuses: Vec<Option<PartitionStatus>> = vec![None; t.info.partitions as usize];
        let mut owners: Vec<String> = t.record.replicas.iter().filter_map(|r| r.first().cloned()).collect();
        owners.sort();
        owners.dedup();
        // Ask every owner and the DHT at once: a dead owner costs one short timeout.
        let asks = owners.iter().map(|o| self.statuses_of(o, name));
        let holders = (0..t.info.partitions).map(|p| self.holders(name, p));
        let (answers, holders) =
            futures::join!(futures::future::join_all(asks), futures::future::join_all(holders));
        for s in answers.into_iter().flatten() {
            if let Some(slot) = statuses.get_mut(s.partition as usize) {
                *slot = Some(s);
            }
        }
        let mut partitions: Vec<PartitionStatus> = statuses
            .into_iter()
            .enumerate()
            .map(|(p, s)| s.unwrap_or_else(|| unknown_status(p as u32, t.replicas(p as u32))))
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

    /// Serve a request from another node.
    pub async fn peer(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Forward(
                r @ (ClientRequest::Produce(_) | ClientRequest::Fetch(_) | ClientRequest::ListOffsets { .. }),
            ) => PeerResponse::Forwarded(self.broker.handle_local(r).await),
            PeerRequest::Forward(other) => PeerResponse::Forwarded(self.client(other).await),
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

/// The resilience class of a client request: fetches and reads may be retried, a
/// produce without an idempotent producer may not.
pub fn call_kind(req: &ClientRequest) -> CallKind {
    match req {
        ClientRequest::Produce(p) => {
            let idempotent =
                meshlog_protocol::batch::parse_header(&p.batch).is_ok_and(|h| h.has_producer_id());
            CallKind::Produce { timeout: Duration::from_millis(p.timeout_ms as u64), idempotent }
        }
        ClientRequest::Fetch(f) => CallKind::Fetch { wait: Duration::from_millis(f.max_wait_ms as u64) },
        ClientRequest::CreateTopic { .. }
        | ClientRequest::RegisterService(_)
        | ClientRequest::DeregisterService { .. } => CallKind::Admin,
        _ => CallKind::Metadata,
    }
}

/// A partition whose owner did not answer: offsets unknown.
fn unknown_status(p: u32, replicas: &[String]) -> PartitionStatus {
    PartitionStatus {
        partition: p,
        leader: replicas.first().cloned().unwrap_or_default(),
        replicas: replicas.to_vec(),
        log_start_offset: 0,
        high_watermark: 0,
        log_end_offset: 0,
        size_bytes: 0,
        online: false,
        holders: Vec::new(),
    }
}

/// How long the forwarder waits before retrying partitions it could not deliver to.
const OUTBOX_RETRY: Duration = Duration::from_millis(500);

/// Deliver the outbox: the oldest batch of each partition, in order, until the node
/// stops. A batch leaves the outbox only once the partition's owner acknowledged it
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
            _ = crate::server::stopped(&mut shutdown) => return,
        }
    }
}
