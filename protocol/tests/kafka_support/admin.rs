//! Producer ids and the admin requests, as an admin client sends them.

use super::{at, s, tags, topic};
use kafka_protocol::messages::create_partitions_request::*;
use kafka_protocol::messages::create_topics_request::*;
use kafka_protocol::messages::delete_topics_request::*;
use kafka_protocol::messages::describe_configs_request::*;
use kafka_protocol::messages::offset_for_leader_epoch_request::*;
use kafka_protocol::messages::*;

pub fn build(key: ApiKey, v: i16) -> RequestKind {
    match key {
        ApiKey::InitProducerId => InitProducerIdRequest::default()
            .with_transactional_id(if v % 2 == 0 { None } else { Some(TransactionalId(s("tx-1"))) })
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(if v >= 3 { 4711 } else { -1 }))
            .with_producer_epoch(if v >= 3 { 2 } else { -1 })
            .with_unknown_tagged_fields(tags(v >= 2))
            .into(),
        ApiKey::CreateTopics => create_topics(v).into(),
        ApiKey::DeleteTopics => delete_topics(v).into(),
        ApiKey::DescribeConfigs => describe_configs(v).into(),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(v).into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .with_endpoint_type(1)
            .with_unknown_tagged_fields(tags(true))
            .into(),
        ApiKey::CreatePartitions => create_partitions(v).into(),
        ApiKey::SaslHandshake => {
            SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")).into()
        }
        ApiKey::SaslAuthenticate => SaslAuthenticateRequest::default()
            .with_auth_bytes(bytes::Bytes::from_static(
                b"n,,n=meshlog1.AAAA,r=fyko+d2lbbFgONRv9qkxdawL",
            ))
            .with_unknown_tagged_fields(tags(v >= 2))
            .into(),
        other => panic!("no sample request for {other:?}"),
    }
}

fn create_topics(v: i16) -> CreateTopicsRequest {
    let configs = vec![
        CreatableTopicConfig::default()
            .with_name(s("retention.ms"))
            .with_value(Some(s("86400000")))
            .with_unknown_tagged_fields(tags(v >= 5)),
        CreatableTopicConfig::default().with_name(s("cleanup.policy")).with_value(None),
    ];
    let assigned = CreatableTopic::default()
        .with_name(topic("placed"))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![
            CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                .with_unknown_tagged_fields(tags(v >= 5)),
            CreatableReplicaAssignment::default().with_partition_index(1),
        ]);
    let plain = CreatableTopic::default()
        .with_name(topic("orders"))
        .with_num_partitions(6)
        .with_replication_factor(3)
        .with_configs(configs)
        .with_unknown_tagged_fields(tags(v >= 5));
    CreateTopicsRequest::default()
        .with_topics(vec![plain, assigned])
        .with_timeout_ms(30_000)
        .with_validate_only(v % 2 == 1)
        .with_unknown_tagged_fields(tags(v >= 5))
}

fn delete_topics(v: i16) -> DeleteTopicsRequest {
    let states = vec![
        DeleteTopicState::default()
            .with_name(Some(topic("orders")))
            .with_unknown_tagged_fields(tags(true)),
        DeleteTopicState::default().with_name(Some(topic("payments"))),
    ];
    DeleteTopicsRequest::default()
        .with_topics(at(v >= 6, states))
        .with_topic_names(at(v <= 5, vec![topic("orders"), topic("payments")]))
        .with_timeout_ms(30_000)
        .with_unknown_tagged_fields(tags(v >= 4))
}

fn describe_configs(v: i16) -> DescribeConfigsRequest {
    let resources = vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configuration_keys(Some(vec![s("retention.ms"), s("cleanup.policy")]))
            .with_unknown_tagged_fields(tags(v >= 4)),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))
            .with_configuration_keys(None),
    ];
    DescribeConfigsRequest::default()
        .with_resources(resources)
        .with_include_synonyms(v >= 1)
        .with_include_documentation(v >= 3)
        .with_unknown_tagged_fields(tags(v >= 4))
}

fn offset_for_leader_epoch(v: i16) -> OffsetForLeaderEpochRequest {
    let partitions = vec![
        OffsetForLeaderPartition::default()
            .with_partition(0)
            .with_current_leader_epoch(5)
            .with_leader_epoch(4)
            .with_unknown_tagged_fields(tags(v >= 4)),
        OffsetForLeaderPartition::default()
            .with_partition(1)
            .with_current_leader_epoch(-1)
            .with_leader_epoch(2),
    ];
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(if v >= 3 { -1 } else { -2 }))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic("orders"))
            .with_partitions(partitions)])
        .with_unknown_tagged_fields(tags(v >= 4))
}

fn create_partitions(v: i16) -> CreatePartitionsRequest {
    let placed = CreatePartitionsTopic::default()
        .with_name(topic("orders"))
        .with_count(8)
        .with_assignments(Some(vec![
            CreatePartitionsAssignment::default()
                .with_broker_ids(vec![BrokerId(1), BrokerId(2)])
                .with_unknown_tagged_fields(tags(v >= 2)),
            CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(3)]),
        ]));
    let plain = CreatePartitionsTopic::default()
        .with_name(topic("payments"))
        .with_count(12)
        .with_assignments(None)
        .with_unknown_tagged_fields(tags(v >= 2));
    CreatePartitionsRequest::default()
        .with_topics(vec![placed, plain])
        .with_timeout_ms(30_000)
        .with_validate_only(v == 1)
        .with_unknown_tagged_fields(tags(v >= 2))
}
