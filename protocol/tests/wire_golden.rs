//! The wire format, byte for byte: one value of every message that names a node, a
//! partition, an offset or an epoch, encoded and compared with the bytes an older node
//! sends. A type change that moves a byte (a newtype that is not transparent, a field
//! reordered) fails here, not in a mixed-version mesh.
//!
//! The expected bytes were captured from the encoding before those fields had their own
//! types (`NodeId`, `PartitionId`, `Offset`, `Epoch`); they must never change.

use meshlog_protocol::codec;
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupDescription, GroupListing, GroupResponse, GroupState,
    MemberDescription, TopicPartition,
};
use meshlog_protocol::ids::Epoch;
use meshlog_protocol::mesh::{
    BreakerStatus, ClusterStatus, GossipMessage, Heartbeat, LeaderLeases, MemberStatus,
    OutboxDepth, ServiceInstance, TopicRecord,
};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, FetchRequest, FetchResponse, PeerRequest, ProduceRequest,
    ProduceResponse, ReplicateBundle, ReplicateMessage,
};
use meshlog_protocol::types::{
    Acks, OffsetSpec, PartitionStatus, TopicConfig, TopicDescription, TopicInfo,
};
use serde::Serialize;
use std::collections::BTreeMap;

const A: &str = "12D3KooWA1a1a1a1";
const B: &str = "12D3KooWB2b2b2b2";

fn hex<T: Serialize>(v: &T) -> String {
    codec::encode(v).unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

fn info() -> TopicInfo {
    TopicInfo {
        name: "orders".into(),
        partitions: 2,
        replication_factor: 2,
        config: TopicConfig::default(),
        creation_id: 99,
        created_at_ms: 1_700_000_000_000,
    }
}

fn status() -> PartitionStatus {
    PartitionStatus {
        partition: 1,
        leader: A.into(),
        epoch: Epoch::new(7),
        replicas: vec![A.into(), B.into()],
        isr: vec![A.into()],
        log_start_offset: 3,
        high_watermark: 300,
        log_end_offset: 70_000,
        size_bytes: 1 << 20,
        online: true,
        holders: vec![B.into()],
    }
}

/// Every value checked, by name.
fn values() -> Vec<(&'static str, String)> {
    let record = TopicRecord {
        info: info(),
        replicas: vec![vec![A.into(), B.into()], vec![B.into(), A.into()]],
        creator: A.into(),
        revision: Default::default(),
    };
    let hb = Heartbeat {
        peer: A.into(),
        addrs: vec!["/ip4/1.2.3.4/tcp/9".into()],
        seq: 5,
        incarnation: 6,
        partitions: 3,
        kafka: None,
    };
    let leases = LeaderLeases {
        leader: B.into(),
        lease_ms: 3000,
        partitions: vec![("orders".into(), 1, Epoch::new(7)), ("x".into(), 0, Epoch::new(1 << 31))],
    };
    let cluster = ClusterStatus {
        node: A.into(),
        members: vec![MemberStatus {
            peer: B.into(),
            addrs: vec![],
            state: "up".into(),
            last_seen_ms_ago: 12,
            partitions: 2,
        }],
        topics: BTreeMap::from([("orders".into(), vec![vec![A.into(), B.into()]])]),
        breakers: vec![BreakerStatus { peer: B.into(), state: "open".into(), retry_in_ms: 50 }],
        outbox: vec![OutboxDepth { topic: "orders".into(), partition: 1, batches: 2, bytes: 300 }],
        partitions: vec![("orders".into(), status())],
    };
    let service = ServiceInstance {
        name: "api".into(),
        instance_id: "i1".into(),
        endpoint: "http://x".into(),
        meta: BTreeMap::new(),
        ttl_ms: 1000,
        node: B.into(),
        expires_in_ms: 900,
    };
    let produce = ClientRequest::Produce(ProduceRequest {
        topic: "orders".into(),
        partition: 1,
        acks: Acks::All,
        timeout_ms: 500,
        leader_epoch: Some(Epoch::new(7)),
        batch: vec![1, 2, 3],
    });
    let fetch = ClientRequest::Fetch(FetchRequest {
        topic: "orders".into(),
        partition: 70_000,
        offset: 1 << 33,
        max_bytes: 1 << 20,
        max_wait_ms: 100,
        leader_epoch: None,
    });
    let list = ClientRequest::ListOffsets {
        topic: "orders".into(),
        partition: 1,
        spec: OffsetSpec::Timestamp(-5),
    };
    let produced = ClientResponse::Produced(ProduceResponse {
        base_offset: Some(300),
        record_count: 2,
        accepted_locally: false,
        duplicate: true,
    });
    let fetched = ClientResponse::Fetched(FetchResponse {
        high_watermark: 300,
        log_start_offset: 3,
        records: vec![9, 9],
    });
    let described =
        ClientResponse::Topic(TopicDescription { topic: info(), partitions: vec![status()] });
    let replicate = PeerRequest::Replicate(ReplicateMessage {
        topic: "orders".into(),
        partition: 1,
        message: vec![4],
        records: vec![5, 6],
    });
    let bundle = ReplicateBundle {
        messages: vec![
            ReplicateMessage {
                topic: "orders".into(),
                partition: 1,
                message: vec![4],
                records: vec![5, 6],
            },
            ReplicateMessage {
                topic: "logs".into(),
                partition: 0,
                message: vec![7],
                records: vec![],
            },
        ],
    };
    let tp = TopicPartition::new("orders", 1);
    let committed = CommittedOffset { offset: 300, metadata: "m".into() };
    let group = GroupResponse::Group(GroupDescription {
        group: "g".into(),
        state: GroupState::Stable,
        generation: 3,
        assignor: Assignor::Range,
        coordinator: A.into(),
        members: vec![MemberDescription {
            member_id: "m1".into(),
            client_id: "c".into(),
            topics: vec!["orders".into()],
            partitions: vec![tp.clone()],
        }],
        offsets: vec![(tp, committed)],
    });
    let groups = GroupResponse::Groups(vec![GroupListing {
        group: "g".into(),
        state: GroupState::Empty,
        members: 0,
        coordinator: B.into(),
    }]);
    vec![
        ("topic record", hex(&record)),
        ("heartbeat", hex(&GossipMessage::Heartbeat(hb))),
        ("leave", hex(&GossipMessage::Leave { peer: A.into() })),
        ("leases", hex(&GossipMessage::Leases(leases))),
        ("cluster status", hex(&ClientResponse::Cluster(cluster))),
        ("service", hex(&ClientResponse::ServiceRegistered(service))),
        ("produce", hex(&produce)),
        ("fetch", hex(&fetch)),
        ("list offsets", hex(&list)),
        ("produced", hex(&produced)),
        ("fetched", hex(&fetched)),
        ("offset", hex(&ClientResponse::Offset { offset: 1 << 40 })),
        ("described", hex(&described)),
        ("replicate", hex(&replicate)),
        ("replicate bundle", hex(&bundle)),
        ("group", hex(&ClientResponse::Group(group))),
        ("groups", hex(&ClientResponse::Group(groups))),
    ]
}

/// The bytes every value above encodes to, captured before the id types existed.
const GOLDEN: &[(&str, &str)] = &[
    (
        "topic record",
        concat!(
            "066f7264657273020201fc00840c2400fc0c0010000100fc005c260563fd0068e5cf8b0100000202",
            "10313244334b6f6f57413161316131613110313244334b6f6f574232623262326232021031324433",
            "4b6f6f57423262326232623210313244334b6f6f57413161316131613110313244334b6f6f574131",
            "613161316131",
        ),
    ),
    (
        "heartbeat",
        concat!(
            "0010313244334b6f6f57413161316131613101122f6970342f312e322e332e342f7463702f390506",
            "0300"
        ),
    ),
    ("leave", "0210313244334b6f6f574131613161316131"),
    ("leases", "0310313244334b6f6f574232623262326232fbb80b02066f72646572730107017800fc00000080"),
    (
        "cluster status",
        concat!(
            "0910313244334b6f6f5741316131613161310110313244334b6f6f57423262326232623200027570",
            "0c0201066f7264657273010210313244334b6f6f57413161316131613110313244334b6f6f574232",
            "6232623262320110313244334b6f6f574232623262326232046f70656e3201066f72646572730102",
            "fb2c0101066f72646572730110313244334b6f6f574131613161316131070210313244334b6f6f57",
            "413161316131613110313244334b6f6f5742326232623262320110313244334b6f6f574131613161",
            "31613103fb2c01fc70110100fc00001000010110313244334b6f6f574232623262326232",
        ),
    ),
    (
        "service",
        concat!(
            "060361706902693108687474703a2f2f7800fbe80310313244334b6f6f574232623262326232fb84",
            "03"
        ),
    ),
    ("produce", "03066f72646572730102fbf401010703010203"),
    ("fetch", "04066f7264657273fc70110100fd0000000002000000fc000010006400"),
    ("list offsets", "05066f7264657273010209"),
    ("produced", "0301fb2c01020001"),
    ("fetched", "04fb2c0103020909"),
    ("offset", "05fd0000000000010000"),
    (
        "described",
        concat!(
            "02066f7264657273020201fc00840c2400fc0c0010000100fc005c260563fd0068e5cf8b01000001",
            "0110313244334b6f6f574131613161316131070210313244334b6f6f574131613161316131103132",
            "44334b6f6f5742326232623262320110313244334b6f6f57413161316131613103fb2c01fc701101",
            "00fc00001000010110313244334b6f6f574232623262326232",
        ),
    ),
    ("replicate", "04066f7264657273010104020506"),
    // Two messages: the count, then each as a bare `ReplicateMessage` (the request's
    // bytes above without its variant tag 04).
    ("replicate bundle", "02066f7264657273010104020506046c6f677300010700"),
    (
        "group",
        concat!(
            "0a05016703030010313244334b6f6f57413161316131613101026d31016301066f72646572730106",
            "6f72646572730101066f726465727301fb2c01016d",
        ),
    ),
    ("groups", "0a06010167000010313244334b6f6f574232623262326232"),
];

#[test]
fn the_wire_format_has_not_moved() {
    let got = values();
    if std::env::var_os("WIRE_GOLDEN_PRINT").is_some() {
        for (name, hex) in &got {
            println!("    (\"{name}\", \"{hex}\"),");
        }
    }
    assert_eq!(got.len(), GOLDEN.len(), "one expected encoding per value");
    for ((name, hex), (golden_name, golden)) in got.iter().zip(GOLDEN) {
        assert_eq!(name, golden_name);
        assert_eq!(hex, golden, "{name} encodes differently");
    }
}

/// A revised topic record (decision 16) as signed and stored: the tag byte, the record as
/// before, then its revision. A first creation (no revision) is the plain record above.
#[test]
fn a_revised_topic_record_has_pinned_bytes() {
    use meshlog_protocol::mesh::Revision;
    use meshlog_protocol::revision::{decode_record, encode_record};
    let mut record = TopicRecord {
        info: info(),
        replicas: vec![vec![A.into(), B.into()], vec![B.into(), A.into()]],
        creator: A.into(),
        revision: Revision::default(),
    };
    assert_eq!(encode_record(&record).unwrap(), codec::encode(&record).unwrap());
    record.revision = Revision {
        incarnation: 2,
        version: 3,
        deleted: true,
        author: B.into(),
        epoch: Epoch::new(7),
    };
    let bytes = encode_record(&record).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, REVISED_RECORD, "a revised record encodes differently");
    assert_eq!(decode_record(&bytes).unwrap(), record);
}

const REVISED_RECORD: &str = concat!(
    "ff066f7264657273020201fc00840c2400fc0c0010000100fc005c260563fd0068e5cf8b01000002",
    "0210313244334b6f6f57413161316131613110313244334b6f6f5742326232623262320210313244",
    "334b6f6f57423262326232623210313244334b6f6f57413161316131613110313244334b6f6f5741",
    "3161316131613102030110313244334b6f6f57423262326232623207",
);
