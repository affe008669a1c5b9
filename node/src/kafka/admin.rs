//! The admin APIs: DescribeCluster, DescribeConfigs (a topic's real config, flagged
//! default or set at creation, and this node's defaults as a broker's), CreateTopics
//! (with validate-only, errors per topic), DeleteTopics and CreatePartitions (through
//! the client API's `DeleteTopic` and `AlterTopic`, served by the leader of the topic's
//! partition 0; errors per topic, in Kafka's codes).

use super::metadata::{AUTO_CREATE_REPLICATION, CLUSTER_ID};
use super::{kafka_code, Kafka};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::messages::{AlterTopic, ClientRequest, ClientResponse};
use meshlog_protocol::types::{validate_topic_name, validate_topic_shape, TopicConfig};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;

/// Kafka's resource types in DescribeConfigs.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's type of a config value (DescribeConfigs v3+): BOOLEAN 1, INT 3, LONG 5,
/// LIST 7.
fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" | "log.cleanup.policy" => 7,
        "auto.create.topics.enable" => 1,
        "max.message.bytes"
        | "message.max.bytes"
        | "min.insync.replicas"
        | "num.partitions"
        | "default.replication.factor"
        | "socket.request.max.bytes" => 3,
        _ => 5,
    }
}

/// One config entry as DescribeConfigs gives it.
fn entry(
    name: &str,
    value: String,
    source: i8,
    read_only: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(read_only)
        .with_config_source(source);
    if version >= 3 {
        e.config_type = config_type(name);
    }
    e
}

/// The defaults a topic of replication factor `rf` gets (what "default" means for it).
fn defaults(rf: u16) -> BTreeMap<String, String> {
    TopicConfig::from_pairs(&BTreeMap::new(), rf).map(|c| c.to_pairs()).unwrap_or_default()
}

impl Kafka {
    /// DescribeCluster: the brokers Metadata lists.
    pub(super) fn describe_cluster(&self, _req: DescribeClusterRequest) -> DescribeClusterResponse {
        let (host, port) = &self.advertised;
        let brokers: Vec<(i32, String, u16)> = if self.to_leaders() {
            self.view().brokers.into_values().map(|b| (b.id, b.host, b.port)).collect()
        } else {
            vec![(self.broker_id, host.clone(), *port)]
        };
        DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
            .with_controller_id(BrokerId(self.broker_id))
            .with_brokers(
                brokers
                    .into_iter()
                    .map(|(id, host, port)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(i32::from(port))
                    })
                    .collect(),
            )
    }

    /// DescribeConfigs: each resource's entries (filtered by the keys asked), or its error.
    pub(super) async fn describe_configs(
        &self,
        req: DescribeConfigsRequest,
        version: i16,
    ) -> DescribeConfigsResponse {
        let mut out = DescribeConfigsResponse::default();
        for res in req.resources {
            let mut r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match self.config_entries(&res, version).await {
                Ok(entries) => {
                    let wanted = res.configuration_keys.as_ref();
                    r.configs =
                        entries.into_iter().filter(|e| wanted.is_none_or(|w| w.contains(&e.name))).collect();
                }
                Err(e) => {
                    r.error_code = kafka_code(&e);
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
            }
            out.results.push(r);
        }
        out
    }

    async fn config_entries(
        &self,
        res: &DescribeConfigsResource,
        version: i16,
    ) -> Result<Vec<DescribeConfigsResourceResult>, WireError> {
        let name = res.resource_name.to_string();
        match res.resource_type {
            RESOURCE_TOPIC => {
                let t = self.gateway.mesh().topic(&name).await?;
                let dflt = defaults(t.info.replication_factor);
                let entries = t.info.config.to_pairs().into_iter().map(|(k, v)| {
                    let source = if dflt.get(&k) == Some(&v) { SOURCE_DEFAULT } else { SOURCE_DYNAMIC_TOPIC };
                    entry(&k, v, source, false, version)
                });
                Ok(entries.collect())
            }
            RESOURCE_BROKER if name.is_empty() || name == self.broker_id.to_string() => {
                Ok(self.broker_entries(version))
            }
            RESOURCE_BROKER => Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("this is broker {}; ask broker {name} for its own configs", self.broker_id),
            )),
            other => Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("resource type {other} is not described here (topics: 2, brokers: 4)"),
            )),
        }
    }

    /// This node's defaults under Kafka's broker names: fixed while it runs (read-only).
    fn broker_entries(&self, version: i16) -> Vec<DescribeConfigsResourceResult> {
        let d = TopicConfig::default();
        let forever = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        let s = &self.settings;
        let pairs = [
            ("auto.create.topics.enable", s.auto_create_topics.to_string(), SOURCE_STATIC_BROKER),
            ("num.partitions", s.auto_create_partitions.to_string(), SOURCE_STATIC_BROKER),
            ("default.replication.factor", AUTO_CREATE_REPLICATION.to_string(), SOURCE_DEFAULT),
            ("log.retention.ms", forever(d.retention_ms), SOURCE_DEFAULT),
            ("log.retention.bytes", forever(d.retention_bytes), SOURCE_DEFAULT),
            ("log.cleanup.policy", d.cleanup_policy.as_str().to_string(), SOURCE_DEFAULT),
            ("message.max.bytes", d.max_message_bytes.to_string(), SOURCE_DEFAULT),
            ("min.insync.replicas", d.min_insync_replicas.to_string(), SOURCE_DEFAULT),
            ("socket.request.max.bytes", s.max_request_bytes.to_string(), SOURCE_STATIC_BROKER),
        ];
        pairs.into_iter().map(|(k, v, source)| entry(k, v, source, true, version)).collect()
    }

    /// CreateTopics: each topic created (or only checked, `validate_only`), or its error.
    pub(super) async fn create_topics(&self, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
        let mut out = CreateTopicsResponse::default();
        for topic in req.topics {
            let name = topic.name.0.to_string();
            let mut r = CreatableTopicResult::default().with_name(topic.name.clone());
            match self.create_one(&topic, req.validate_only).await {
                Ok((partitions, rf, config)) if version >= 5 => {
                    let dflt = defaults(rf);
                    let configs = config.to_pairs().into_iter().map(|(k, v)| {
                        let source =
                            if dflt.get(&k) == Some(&v) { SOURCE_DEFAULT } else { SOURCE_DYNAMIC_TOPIC };
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_string(k))
                            .with_value(Some(StrBytes::from_string(v)))
                            .with_config_source(source)
                    });
                    r.num_partitions = partitions as i32;
                    r.replication_factor = rf as i16;
                    r.configs = Some(configs.collect());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(topic = %name, error = %e, "Kafka CreateTopics refused");
                    r.error_code = kafka_code(&e);
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
            }
            out.topics.push(r);
        }
        out
    }

    /// Create (or with `validate_only`, check) one topic: (partitions, rf, config).
    async fn create_one(
        &self,
        t: &CreatableTopic,
        validate_only: bool,
    ) -> Result<(u32, u16, TopicConfig), WireError> {
        let name = t.name.0.to_string();
        if !t.assignments.is_empty() {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "manual replica assignments are not supported: the mesh places replicas itself",
            ));
        }
        let live = self.gateway.mesh().live_nodes().len().clamp(1, usize::from(u16::MAX));
        let partitions = match t.num_partitions {
            -1 => self.settings.auto_create_partitions,
            n => u32::try_from(n).unwrap_or(0),
        };
        let rf = match t.replication_factor {
            -1 => AUTO_CREATE_REPLICATION.min(live as u16),
            n => u16::try_from(n).unwrap_or(0),
        };
        let mut config = BTreeMap::new();
        for c in &t.configs {
            let Some(v) = &c.value else {
                return Err(WireError::new(
                    ErrorCode::InvalidConfig,
                    format!("config {} has no value", c.name),
                ));
            };
            config.insert(c.name.to_string(), v.to_string());
        }
        validate_topic_name(&name)?;
        validate_topic_shape(partitions, rf, live)?;
        let checked = TopicConfig::from_pairs(&config, rf)?;
        if validate_only {
            if self.gateway.mesh().topic(&name).await.is_ok() {
                return Err(WireError::new(
                    ErrorCode::TopicAlreadyExists,
                    format!("topic '{name}' already exists"),
                ));
            }
            return Ok((partitions, rf, checked));
        }
        let req = ClientRequest::CreateTopic { name, partitions, replication_factor: rf, config };
        match self.ask(req).await? {
            ClientResponse::TopicCreated(info) => {
                tracing::info!(topic = %info.name, partitions, "topic created by a Kafka admin client");
                Ok((info.partitions, info.replication_factor, info.config))
            }
            other => Err(WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}"))),
        }
    }

    /// DeleteTopics: each topic deleted through the client API (by the leader of its
    /// partition 0), or its error (UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION
    /// for an internal one; a topic named by id only is unknown: meshlog has no ids).
    pub(super) async fn delete_topics(&self, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let names: Vec<Option<TopicName>> = if version >= 6 {
            req.topics.into_iter().map(|t| t.name).collect()
        } else {
            req.topic_names.into_iter().map(Some).collect()
        };
        let mut out = DeleteTopicsResponse::default();
        for name in names {
            let result = match &name {
                Some(n) => self.ask(ClientRequest::DeleteTopic { name: n.0.to_string() }).await.map(|_| ()),
                None => Err(WireError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    "topics are deleted by name here: meshlog has no topic ids",
                )),
            };
            let mut r = DeletableTopicResult::default().with_name(name.clone());
            if let Err(e) = result {
                tracing::debug!(topic = ?name, error = %e, "Kafka DeleteTopics refused");
                r.error_code = kafka_code(&e);
                if version >= 5 {
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
            }
            out.responses.push(r);
        }
        out
    }

    /// CreatePartitions: each topic grown to its `count` through the client API (or only
    /// checked, `validate_only`), or its error (INVALID_PARTITIONS for a count not above
    /// the current one, UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST for manual
    /// assignments: the mesh places replicas itself).
    pub(super) async fn create_partitions(&self, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
        let mut out = CreatePartitionsResponse::default();
        for t in req.topics {
            let result = match (u32::try_from(t.count), &t.assignments) {
                (_, Some(a)) if !a.is_empty() => Err(WireError::new(
                    ErrorCode::InvalidRequest,
                    "manual replica assignments are not supported: the mesh places replicas itself",
                )),
                (Err(_), _) => Err(WireError::new(
                    ErrorCode::InvalidPartitions,
                    format!("{} is not a partition count", t.count),
                )),
                (Ok(count), _) => {
                    let alter = AlterTopic {
                        name: t.name.0.to_string(),
                        partitions: Some(count),
                        config: BTreeMap::new(),
                        validate_only: req.validate_only,
                    };
                    self.ask(ClientRequest::AlterTopic(alter)).await.map(|_| ())
                }
            };
            let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            if let Err(e) = result {
                tracing::debug!(topic = %t.name.0, error = %e, "Kafka CreatePartitions refused");
                r.error_code = kafka_code(&e);
                r.error_message = Some(StrBytes::from_string(e.message));
            }
            out.results.push(r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_types_follow_kafka() {
        assert_eq!(config_type("cleanup.policy"), 7);
        assert_eq!(config_type("retention.ms"), 5);
        assert_eq!(config_type("retention.bytes"), 5);
        assert_eq!(config_type("min.insync.replicas"), 3);
        assert_eq!(config_type("max.message.bytes"), 3, "Kafka's max.message.bytes is an INT");
        assert_eq!(config_type("auto.create.topics.enable"), 1);
    }

    #[test]
    fn defaults_depend_on_the_replication_factor() {
        assert_eq!(defaults(1)["min.insync.replicas"], "1");
        assert_eq!(defaults(3)["min.insync.replicas"], "2");
        assert_eq!(defaults(3)["cleanup.policy"], "delete");
        let e = entry("retention.ms", "5".into(), SOURCE_DEFAULT, false, 3);
        assert_eq!((e.config_type, e.config_source, e.read_only), (5, SOURCE_DEFAULT, false));
        assert_eq!(
            entry("retention.ms", "5".into(), SOURCE_DEFAULT, false, 2).config_type,
            0,
            "v1-2 have no type"
        );
    }
}
