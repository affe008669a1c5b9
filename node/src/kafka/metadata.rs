//! Metadata: in `leader` mode every live node with a listener is a broker and each
//! partition names its real leader, replicas, ISR and epoch (`route.rs`); in
//! `through-me` mode this node is the only broker and leads every partition. Topics
//! named but missing are created when the request and the config allow it.

use super::route::View;
use super::{kafka_code, Kafka};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use meshlog_protocol::types::TopicInfo;
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;

/// The cluster id clients see.
pub const CLUSTER_ID: &str = "meshlog";
/// Replication factor of an auto-created topic (lowered to the live nodes if fewer).
pub const AUTO_CREATE_REPLICATION: u16 = 3;

impl Kafka {
    /// Answer a Metadata request of `version`.
    pub(super) async fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let view = self.to_leaders().then(|| self.view());
        let (host, port) = &self.advertised;
        let brokers: Vec<(i32, String, u16)> = match &view {
            Some(v) => v.brokers.values().map(|b| (b.id, b.host.clone(), b.port)).collect(),
            None => vec![(self.broker_id, host.clone(), *port)],
        };
        let brokers = brokers
            .into_iter()
            .map(|(id, host, port)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(i32::from(port))
            })
            .collect();
        let mut r = MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
            .with_controller_id(BrokerId(self.broker_id));
        let known = match self.ask(ClientRequest::ListTopics).await {
            Ok(ClientResponse::Topics(t)) => t.into_iter().map(|t| (t.name.clone(), t)).collect(),
            _ => BTreeMap::new(),
        };
        // v0: an empty list means every topic; v1+: null does.
        let names: Option<Vec<String>> = req.topics.map(|ts| {
            ts.into_iter().filter_map(|t| t.name).map(|n| n.0.to_string()).collect::<Vec<String>>()
        });
        let names = names.filter(|n| !(version == 0 && n.is_empty()));
        let allow_create = (version < 4 || req.allow_auto_topic_creation) && self.settings.auto_create_topics;
        r.topics = match names {
            None => known.values().map(|t| self.topic(t, version, view.as_ref())).collect(),
            Some(names) => {
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    out.push(match known.get(&name) {
                        Some(t) => self.topic(t, version, view.as_ref()),
                        None => self.missing(name, allow_create, version, view.as_ref()).await,
                    });
                }
                out
            }
        };
        r
    }

    /// A known topic: each partition as `view` places it, or led by this node (no
    /// view: `through-me`).
    fn topic(&self, t: &TopicInfo, version: i16, view: Option<&View>) -> MetadataResponseTopic {
        let me = BrokerId(self.broker_id);
        let record = view.and_then(|_| self.gateway.broker().topics().get(&t.name).ok());
        let partitions = (0..t.partitions)
            .map(|p| {
                let mut part = MetadataResponsePartition::default().with_partition_index(p as i32);
                let placed = view.zip(record.as_ref()).map(|(v, r)| v.placement(&t.name, p, r.replicas(p)));
                let Some(placed) = placed else {
                    // Through this node, which does not know the epoch without asking
                    // the leader: clients then do not fence on epochs.
                    part = part.with_leader_id(me).with_replica_nodes(vec![me]).with_isr_nodes(vec![me]);
                    if version >= 7 {
                        part.leader_epoch = -1;
                    }
                    return part;
                };
                if placed.leader < 0 {
                    part.error_code = ErrorCode::LeaderNotAvailable.as_i16();
                }
                part.leader_id = BrokerId(placed.leader);
                part.replica_nodes = placed.replicas.into_iter().map(BrokerId).collect();
                part.isr_nodes = placed.isr.into_iter().map(BrokerId).collect();
                if version >= 7 {
                    part.leader_epoch = placed.epoch;
                }
                part
            })
            .collect();
        let mut topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
            .with_partitions(partitions);
        if version >= 1 {
            topic.is_internal = t.name.starts_with("__");
        }
        topic
    }

    /// A topic the mesh does not know: created if allowed, else UNKNOWN_TOPIC_OR_PARTITION.
    async fn missing(
        &self,
        name: String,
        allow_create: bool,
        version: i16,
        view: Option<&View>,
    ) -> MetadataResponseTopic {
        let failed = |code: i16, name: String| {
            MetadataResponseTopic::default()
                .with_error_code(code)
                .with_name(Some(TopicName(StrBytes::from_string(name))))
        };
        if !allow_create {
            return failed(ErrorCode::UnknownTopicOrPartition.as_i16(), name);
        }
        match self.create(&name).await {
            Ok(t) => self.topic(&t, version, view),
            Err(e) => {
                tracing::debug!(topic = %name, error = %e, "Kafka auto-create refused");
                failed(kafka_code(&e), name)
            }
        }
    }

    /// Create `name` with the auto-create shape (or find it, if another creation won).
    async fn create(&self, name: &str) -> Result<TopicInfo, WireError> {
        let live = self.gateway.mesh().live_nodes().len().clamp(1, usize::from(u16::MAX)) as u16;
        let req = ClientRequest::CreateTopic {
            name: name.to_string(),
            partitions: self.settings.auto_create_partitions,
            replication_factor: AUTO_CREATE_REPLICATION.min(live),
            config: BTreeMap::new(),
        };
        match self.ask(req).await {
            Ok(ClientResponse::TopicCreated(t)) => {
                tracing::info!(topic = %t.name, partitions = t.partitions, "topic created for a Kafka client");
                Ok(t)
            }
            Err(e) if e.code == ErrorCode::TopicAlreadyExists => {
                match self.ask(ClientRequest::DescribeTopic { name: name.to_string() }).await? {
                    ClientResponse::Topic(d) => Ok(d.topic),
                    other => Err(WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}"))),
                }
            }
            Ok(other) => Err(WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}"))),
            Err(e) => Err(e),
        }
    }
}
