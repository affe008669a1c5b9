//! Realistic Kafka requests, one per accepted (API, version), built with kafka-protocol's
//! own structs the way clients fill them: non-empty arrays, nullable fields both set and
//! null, and an unknown tagged field wherever the version is flexible (so every kind of
//! length is on the wire for the hostile tests to corrupt).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::*;
use kafka_protocol::messages::list_offsets_request::*;
use kafka_protocol::messages::metadata_request::*;
use kafka_protocol::messages::produce_request::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::batch::{BatchBuilder, Header};
use meshlog_protocol::kafka::accepted_versions;

mod admin;
mod group;

pub fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

pub fn topic(text: &'static str) -> TopicName {
    TopicName(s(text))
}

/// `value` in versions where the field exists, the crate's default elsewhere (the
/// crate refuses to encode a field the version lacks).
pub fn at<T: Default>(present: bool, value: T) -> T {
    if present {
        value
    } else {
        T::default()
    }
}

/// An unknown tagged field, on flexible versions only.
pub fn tags(flexible: bool) -> std::collections::BTreeMap<i32, Bytes> {
    let mut out = std::collections::BTreeMap::new();
    if flexible {
        out.insert(17, Bytes::from_static(b"tagged"));
    }
    out
}

/// Every accepted (API, version) with a realistic request for it.
pub fn samples() -> Vec<(ApiKey, i16, RequestKind)> {
    let mut out = Vec::new();
    for (key, min, max) in accepted_versions() {
        for v in min..=max {
            out.push((key, v, build(key, v)));
        }
    }
    out
}

/// The request body as a client would send it.
pub fn encode(req: &RequestKind, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    req.encode(&mut buf, version).unwrap_or_else(|e| panic!("encode {req:?} v{version}: {e:#}"));
    buf.freeze()
}

fn build(key: ApiKey, v: i16) -> RequestKind {
    match key {
        ApiKey::ApiVersions => api_versions(v).into(),
        ApiKey::Metadata => metadata(v).into(),
        ApiKey::Produce => produce(v).into(),
        ApiKey::Fetch => fetch(v).into(),
        ApiKey::ListOffsets => list_offsets(v).into(),
        _ => group::build(key, v).unwrap_or_else(|| admin::build(key, v)),
    }
}

fn api_versions(v: i16) -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(at(v >= 3, s("librdkafka")))
        .with_client_software_version(at(v >= 3, s("2.16.0")))
        .with_unknown_tagged_fields(tags(v >= 3))
}

fn metadata(v: i16) -> MetadataRequest {
    let topics = vec![
        MetadataRequestTopic::default()
            .with_name(Some(topic("orders")))
            .with_unknown_tagged_fields(tags(v >= 9)),
        MetadataRequestTopic::default().with_name(Some(topic("payments"))),
    ];
    MetadataRequest::default()
        .with_topics(Some(topics))
        .with_allow_auto_topic_creation(v < 4 || v % 2 == 0)
        .with_include_topic_authorized_operations(v >= 8)
        .with_unknown_tagged_fields(tags(v >= 9))
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::with_producer(4711, 0, 0);
    let headers = [Header { key: "trace".into(), value: Some(b"abc".to_vec()) }];
    b.push(1_700_000_000_000, Some(b"key-1"), Some(b"value-1"), &headers);
    b.push(1_700_000_000_001, None, Some(b"value-2"), &[]);
    Bytes::from(b.build().expect("a batch with records builds"))
}

fn produce(v: i16) -> ProduceRequest {
    let partitions = vec![
        PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(batch()))
            .with_unknown_tagged_fields(tags(v >= 9)),
        PartitionProduceData::default().with_index(3).with_records(None),
    ];
    let data =
        TopicProduceData::default().with_name(topic("orders")).with_partition_data(partitions);
    ProduceRequest::default()
        .with_transactional_id(if v % 2 == 0 { None } else { Some(TransactionalId(s("tx-1"))) })
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![data])
        .with_unknown_tagged_fields(tags(v >= 9))
}

fn fetch(v: i16) -> FetchRequest {
    let partition = FetchPartition::default()
        .with_partition(2)
        .with_current_leader_epoch(if v >= 9 { 7 } else { -1 })
        .with_fetch_offset(1234)
        .with_last_fetched_epoch(if v >= 12 { 6 } else { -1 })
        .with_log_start_offset(if v >= 5 { 10 } else { -1 })
        .with_partition_max_bytes(1 << 20)
        .with_unknown_tagged_fields(tags(v >= 12));
    let topics = vec![FetchTopic::default()
        .with_topic(topic("orders"))
        .with_partitions(vec![partition.clone(), partition.with_partition(5)])];
    let forgotten =
        vec![ForgottenTopic::default().with_topic(topic("old")).with_partitions(vec![0, 1, 2])];
    FetchRequest::default()
        .with_cluster_id(at(v >= 12, Some(s("mesh-1"))))
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(52_428_800)
        .with_isolation_level(1)
        .with_session_id(at(v >= 7, 0))
        .with_session_epoch(if v >= 7 { 3 } else { -1 })
        .with_topics(topics)
        .with_forgotten_topics_data(at(v >= 7, forgotten))
        .with_rack_id(at(v >= 11, s("rack-a")))
        .with_unknown_tagged_fields(tags(v >= 12))
}

fn list_offsets(v: i16) -> ListOffsetsRequest {
    let partitions = vec![
        ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_current_leader_epoch(if v >= 4 { 3 } else { -1 })
            .with_timestamp(-1),
        ListOffsetsPartition::default()
            .with_partition_index(1)
            .with_timestamp(1_700_000_000_000)
            .with_unknown_tagged_fields(tags(v >= 6)),
    ];
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(at(v >= 2, 1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic("orders"))
            .with_partitions(partitions)])
        .with_unknown_tagged_fields(tags(v >= 6))
}
