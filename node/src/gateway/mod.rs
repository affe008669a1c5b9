//! The gateway: any node is an entry point to the whole mesh. [`Gateway::client`] is the
//! one client API: the libp2p client protocol, a Kafka listener and the HTTP admin port
//! all hand it their requests, so every entry point routes, forwards and refuses alike.
//!
//! The gateway is built from its components: the [`Router`] (`route.rs`: where a
//! partition or group request is served, and forwarding it there), the service registry
//! and the outbox. Serving peers (`peer.rs`: forwarded client requests, `PeerRequest`)
//! and the outbox forwarder task (`outbox.rs`) are apart from routing. The gateway owns
//! no state of its own: it decides what a request means and who serves it, never how a
//! partition, a group or the mesh keeps its state.
//!
//! Internal topics (`__*`) are written only by this node's own group coordinator, which
//! appends through its replica directly: a produce to one is refused on every path here,
//! from a client or forwarded by a peer.

mod outbox;
mod peer;
mod route;

pub use outbox::forward_outbox;
pub use route::{RouteSettings, Router};

use crate::broker::{Broker, NewTopic, Topic};
use crate::mesh::Mesh;
use crate::network::{NetworkHandle, PeerId};
use crate::outbox::Outbox;
use crate::resilience::Resilience;
use crate::services::Services;
use meshlog_protocol::group::{self, GroupRequest, GroupResponse, OFFSETS_TOPIC};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, ClientResult, ProduceRequest, ProduceResponse,
};
use meshlog_protocol::types::Acks;
use meshlog_protocol::{ErrorCode, WireError};
use std::sync::Arc;

/// The shape of the offsets topic, for the node that creates it on first use.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsTopic {
    /// Its partitions (one group coordinator each).
    pub partitions: u32,
    /// Its replication factor, capped at the live nodes when it is created.
    pub replication_factor: u16,
}

/// Serves client and peer requests: routes each to where it is served.
pub struct Gateway {
    router: Router,
    services: Arc<Services>,
    outbox: Arc<Outbox>,
    offsets_topic: OffsetsTopic,
}

impl Gateway {
    /// A gateway that routes through `router`, serves the service registry from
    /// `services`, queues `acks=local` produces in `outbox`, and creates the offsets
    /// topic as `offsets_topic` says.
    pub fn new(
        router: Router,
        services: Arc<Services>,
        outbox: Arc<Outbox>,
        offsets_topic: OffsetsTopic,
    ) -> Gateway {
        Gateway { router, services, outbox, offsets_topic }
    }

    /// The local broker (read access for status).
    pub fn broker(&self) -> &Arc<Broker> {
        self.router.broker()
    }

    /// The mesh view (read access for status).
    pub fn mesh(&self) -> &Arc<Mesh> {
        self.router.mesh()
    }

    /// The network handle (this node's PeerId, connected peers).
    pub fn net(&self) -> &NetworkHandle {
        self.router.net()
    }

    /// The resilience layer (read access for status: breaker states).
    pub fn resilience(&self) -> &Arc<Resilience> {
        self.router.resilience()
    }

    /// The service registry (read access for status).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// The store-and-forward outbox (read access for status: its depth).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The client API: serve a request from a client, or from a node forwarding one
    /// that is not served locally (`from`: the principal that owns what the request
    /// registers, and pays its creation quota). Every entry point calls this one.
    pub async fn client(&self, from: PeerId, req: ClientRequest) -> ClientResult {
        refuse_internal_write(&req)?;
        match req {
            ClientRequest::CreateTopic { name, partitions, replication_factor, config } => {
                self.mesh().admit_creation(&from.to_string(), partitions)?;
                let new = NewTopic { name, partitions, replication_factor, config, internal: false };
                self.mesh().create_topic(new).await.map(ClientResponse::TopicCreated)
            }
            ClientRequest::ListTopics => Ok(ClientResponse::Topics(
                self.broker().topics().all().iter().map(|t| t.info.clone()).collect(),
            )),
            ClientRequest::DescribeTopic { name } => self.router.describe(&name).await,
            ClientRequest::Produce(p) if p.acks == Acks::Local => self.accept_locally(p).await,
            ClientRequest::Produce(ref p) => {
                let (t, part) = (p.topic.clone(), p.partition);
                self.router.route(&t, part, req).await
            }
            ClientRequest::Fetch(ref f) => {
                let (t, part) = (f.topic.clone(), f.partition);
                self.router.route(&t, part, req).await
            }
            ClientRequest::ListOffsets { ref topic, partition, .. }
            | ClientRequest::EpochEnd { ref topic, partition, .. } => {
                let t = topic.clone();
                self.router.route(&t, partition, req).await
            }
            // Made by the leader of the topic's partition 0 (DESIGN.md decision 16).
            ClientRequest::DeleteTopic { ref name } => {
                let t = name.clone();
                self.router.route(&t, 0, req).await
            }
            ClientRequest::AlterTopic(ref a) => {
                let t = a.name.clone();
                self.router.route(&t, 0, req).await
            }
            ClientRequest::Group(g) => self.group(g).await,
            ClientRequest::ListGroups => self.list_groups().await,
            other => self.client_mesh(&from.to_string(), other).await,
        }
    }

    /// The offsets topic, created (by whichever node is asked first) on first use.
    pub async fn offsets_topic(&self) -> Result<Arc<Topic>, WireError> {
        match self.mesh().topic(OFFSETS_TOPIC).await {
            Err(e) if e.code == ErrorCode::UnknownTopicOrPartition => {}
            other => return other,
        }
        let OffsetsTopic { partitions, replication_factor: rf } = self.offsets_topic;
        let live = self.mesh().live_nodes().len().max(1);
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
        match self.mesh().create_topic(new).await {
            Ok(_) => tracing::info!(partitions, replication_factor = rf, "created the offsets topic"),
            Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.await_offsets_topic().await
    }

    /// The offsets topic once its record is here. A creation that lost a race (another
    /// node created it at the same moment) is refused before the winner's record has
    /// reached this node by gossip or the DHT: look again, with backoff, for as long as
    /// a request waits for a leader.
    async fn await_offsets_topic(&self) -> Result<Arc<Topic>, WireError> {
        let deadline = tokio::time::Instant::now() + self.router.leader_wait();
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            match self.mesh().topic(OFFSETS_TOPIC).await {
                Err(e)
                    if e.code == ErrorCode::UnknownTopicOrPartition
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Route a group request to its coordinator: the leader of the group's offsets
    /// partition.
    async fn group(&self, req: GroupRequest) -> ClientResult {
        let t = self.offsets_topic().await?;
        if let Some(name) = req.group() {
            group::validate_group_name(name)?;
        }
        let p = req.offsets_partition(t.info.partitions);
        let answer = self.router.route(OFFSETS_TOPIC, p, ClientRequest::Group(req)).await;
        answer.map(|a| self.without_deleted_topics(a)).map_err(|e| match e.code {
            ErrorCode::LeaderNotAvailable | ErrorCode::NotLeaderOrFollower => WireError::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("no coordinator for {OFFSETS_TOPIC}-{p} right now: {}", e.message),
            ),
            _ => e,
        })
    }

    /// A coordinator's answer without the committed offsets of deleted topics (fetched
    /// offsets and a group's description): a group never resumes a deleted topic's
    /// positions.
    fn without_deleted_topics(&self, answer: ClientResponse) -> ClientResponse {
        match answer {
            ClientResponse::Group(GroupResponse::Offsets(mut v)) => {
                v.retain(|(tp, _)| !self.deleted(&tp.topic));
                ClientResponse::Group(GroupResponse::Offsets(v))
            }
            ClientResponse::Group(GroupResponse::Group(mut d)) => {
                d.offsets.retain(|(tp, _)| !self.deleted(&tp.topic));
                ClientResponse::Group(GroupResponse::Group(d))
            }
            other => other,
        }
    }

    /// Whether this node holds `topic`'s tombstone (a topic it does not know yet is
    /// not taken for deleted).
    fn deleted(&self, topic: &str) -> bool {
        self.broker().topics().held_record(topic).is_some_and(|t| t.deleted())
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

    /// Serve a service-registry or cluster-status request.
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
                let members = self.mesh().live_nodes().iter().filter_map(crate::network::peer_of).collect();
                Ok(ClientResponse::Services(self.services.gather(members, None).await))
            }
            ClientRequest::ClusterStatus => {
                let mut status = self.mesh().cluster_status();
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
        let t = self.mesh().topic(&p.topic).await?;
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
