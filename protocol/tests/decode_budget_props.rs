//! Every decoder of a wire type stays within its memory budget on hostile input:
//! arbitrary bytes, valid messages of many tiny elements (the shapes that grew 17x to
//! 29x under bincode's own limit), and valid encodings with huge length prefixes
//! spliced in never panic, and never hold more than `codec::decode_budget(len)` bytes
//! at once, measured by a counting global allocator. Honest shapes decode unchanged
//! or are refused as over budget, never misread.
//!
//! Cases: `PROPTEST_CASES` (CI default below); `scripts/props.sh` runs millions.

mod props_support;

use meshlog_protocol::codec::{self, CodecError};
use meshlog_protocol::group::{
    Assignor, CommittedOffset, GroupRequest, GroupValue, JoinGroup, OffsetCommit, OffsetValue,
    OffsetsKey, StoredMember, TopicPartition,
};
use meshlog_protocol::mesh::{
    ClusterStatus, GossipMessage, Heartbeat, LeaderLeases, MemberStatus, SignedRecord, TopicRecord,
};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, ClientResult, PeerRequest, PeerResponse, ReplicateMessage,
};
use meshlog_protocol::types::{PartitionStatus, TopicConfig, TopicInfo};
use meshlog_protocol::{Epoch, NodeId};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;

/// What a failed decode may allocate beyond the budget: its error message.
const ERROR_SLACK_BYTES: usize = 1024;
/// Cases per property in the normal suite.
const CI_CASES: u32 = 256;

/// Counts the bytes live on this thread while armed (a realloc counts its growth), and
/// their peak. Per thread, so tests running in parallel do not interfere.
struct LiveAlloc;
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = LIVE.try_with(|l| {
                l.set(l.get() + delta);
                let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
            });
        }
    });
}

#[allow(unsafe_code)] // a counting allocator: the test measures what decoding allocates
unsafe impl GlobalAlloc for LiveAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: LiveAlloc = LiveAlloc;

/// Decode `bytes` as `T`, returning the result and the peak bytes held meanwhile.
fn measured<T: DeserializeOwned>(bytes: &[u8]) -> (Result<T, CodecError>, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let result = codec::decode::<T>(bytes);
    ARMED.with(|a| a.set(false));
    (result, PEAK.with(|p| p.get()).max(0) as usize)
}

/// Decode hostile bytes as `T`: never a panic, never past the budget.
fn within_budget<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (_, peak) = measured::<T>(bytes);
    let budget = codec::decode_budget(bytes.len());
    prop_assert!(
        peak <= budget + ERROR_SLACK_BYTES,
        "{}: a {}-byte input held {} bytes, budget {}",
        std::any::type_name::<T>(),
        bytes.len(),
        peak,
        budget
    );
    Ok(())
}

/// Every wire type decoded from the network or the DHT.
fn all_types(bytes: &[u8]) -> Result<(), TestCaseError> {
    within_budget::<ClientRequest>(bytes)?;
    within_budget::<ClientResult>(bytes)?;
    within_budget::<PeerRequest>(bytes)?;
    within_budget::<PeerResponse>(bytes)?;
    within_budget::<ReplicateMessage>(bytes)?;
    within_budget::<GossipMessage>(bytes)?;
    within_budget::<SignedRecord>(bytes)?;
    within_budget::<TopicRecord>(bytes)?;
    within_budget::<Vec<String>>(bytes)?;
    within_budget::<OffsetsKey>(bytes)?;
    within_budget::<OffsetValue>(bytes)?;
    within_budget::<GroupValue>(bytes)
}

/// A valid message: decodes to itself or is refused as over budget, within budget.
fn honest<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    msg: &T,
) -> Result<(), TestCaseError> {
    let bytes = codec::encode(msg).unwrap();
    let (result, peak) = measured::<T>(&bytes);
    let budget = codec::decode_budget(bytes.len());
    prop_assert!(
        peak <= budget + ERROR_SLACK_BYTES,
        "{}-byte message held {peak}, budget {budget}",
        bytes.len()
    );
    match result {
        Ok(back) => prop_assert_eq!(&back, msg),
        Err(CodecError::OverBudget { .. }) => {}
        Err(e) => prop_assert!(false, "a valid message failed to decode: {e}"),
    }
    Ok(())
}

fn tiny() -> impl Strategy<Value = String> {
    // Cheaper to generate than a regex, and the shortest strings are the hostile ones.
    prop::sample::select(&["", "", "a", "bc"][..]).prop_map(String::from)
}

/// A short node id (its form is not checked by the codec).
fn node() -> impl Strategy<Value = NodeId> {
    tiny().prop_map(NodeId::new)
}

fn many<T: Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(s, 0..1500)
}

/// Small valid messages to splice hostile length prefixes into.
fn small_message() -> impl Strategy<Value = Vec<u8>> {
    let record =
        (topic_info(), prop::collection::vec(prop::collection::vec(node(), 0..3), 0..8), node())
            .prop_map(|(info, replicas, creator)| {
                codec::encode(&TopicRecord {
                    info,
                    replicas,
                    creator,
                    revision: Default::default(),
                })
                .unwrap()
            });
    let join = (prop::collection::vec(tiny(), 0..8), prop::collection::vec(tp(), 0..8)).prop_map(
        |(topics, owned)| codec::encode(&join_group(Some(String::new()), topics, owned)).unwrap(),
    );
    let gossip = prop::collection::vec(tiny(), 0..8)
        .prop_map(|addrs| codec::encode(&heartbeat(addrs)).unwrap());
    prop_oneof![record, join, gossip]
}

fn tp() -> impl Strategy<Value = TopicPartition> {
    (tiny(), 0u32..4).prop_map(|(t, p)| TopicPartition::new(t, p))
}

fn topic_info() -> impl Strategy<Value = TopicInfo> {
    (tiny(), any::<u32>(), any::<u64>()).prop_map(|(name, partitions, creation_id)| TopicInfo {
        name,
        partitions,
        replication_factor: 3,
        config: TopicConfig::default(),
        creation_id,
        created_at_ms: 0,
    })
}

fn topic_record() -> impl Strategy<Value = TopicRecord> {
    (topic_info(), many(prop::collection::vec(node(), 0..3)), node()).prop_map(
        |(info, replicas, creator)| TopicRecord {
            info,
            replicas,
            creator,
            revision: Default::default(),
        },
    )
}

fn gossip() -> impl Strategy<Value = GossipMessage> {
    prop_oneof![
        many(tiny()).prop_map(heartbeat),
        many((tiny(), 0u32..9, (0u64..9).prop_map(Epoch::new))).prop_map(|partitions| {
            GossipMessage::Leases(LeaderLeases { leader: NodeId::none(), lease_ms: 1, partitions })
        }),
    ]
}

fn join() -> impl Strategy<Value = ClientRequest> {
    (many(tiny()), many(tp())).prop_map(|(topics, owned)| join_group(None, topics, owned))
}

/// A join of group "g" subscribing to `topics` and owning `owned`.
fn join_group(
    member_id: Option<String>,
    topics: Vec<String>,
    owned: Vec<TopicPartition>,
) -> ClientRequest {
    ClientRequest::Group(GroupRequest::Join(JoinGroup {
        group: "g".into(),
        member_id,
        client_id: String::new(),
        topics,
        assignor: Assignor::Range,
        session_timeout_ms: 1,
        rebalance_timeout_ms: 1,
        owned,
    }))
}

/// An anonymous heartbeat advertising `addrs`.
fn heartbeat(addrs: Vec<String>) -> GossipMessage {
    GossipMessage::Heartbeat(Heartbeat {
        peer: NodeId::none(),
        addrs,
        seq: 0,
        incarnation: 0,
        partitions: 0,
        kafka: None,
    })
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        join(),
        prop::collection::btree_map("[a-z]{0,3}", tiny(), 0..1500).prop_map(|config| {
            ClientRequest::CreateTopic {
                name: "t".into(),
                partitions: 1,
                replication_factor: 1,
                config,
            }
        }),
        many((tp(), 0u64..300, tiny())).prop_map(|offsets| {
            let offsets = offsets
                .into_iter()
                .map(|(tp, offset, metadata)| (tp, CommittedOffset { offset, metadata }));
            ClientRequest::Group(GroupRequest::Commit(OffsetCommit {
                group: "g".into(),
                member: None,
                offsets: offsets.collect(),
            }))
        }),
    ]
}

fn partition_status() -> impl Strategy<Value = PartitionStatus> {
    (0u32..3, prop::collection::vec(node(), 0..3))
        .prop_map(|(p, replicas)| PartitionStatus::unknown(p, &replicas))
}

fn peer_response() -> impl Strategy<Value = PeerResponse> {
    prop_oneof![
        many(Just(SignedRecord { payload: vec![], public_key: vec![], signature: vec![] }))
            .prop_map(PeerResponse::TopicRecords),
        many(partition_status()).prop_map(PeerResponse::Partitions),
    ]
}

fn cluster() -> impl Strategy<Value = ClientResult> {
    let members = many(node().prop_map(|peer| MemberStatus {
        peer,
        addrs: vec![],
        state: String::new(),
        last_seen_ms_ago: 0,
        partitions: 0,
    }));
    let topics =
        prop::collection::btree_map(tiny(), many(prop::collection::vec(node(), 0..2)), 0..4);
    (members, topics).prop_map(|(members, topics)| {
        Ok(ClientResponse::Cluster(ClusterStatus {
            node: NodeId::none(),
            members,
            topics,
            breakers: vec![],
            outbox: vec![],
            partitions: vec![],
        }))
    })
}

fn group_value() -> impl Strategy<Value = GroupValue> {
    let member = (tiny(), many(tiny()), prop::collection::vec(tp(), 0..3)).prop_map(
        |(member_id, topics, partitions)| StoredMember {
            member_id,
            client_id: String::new(),
            topics,
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            partitions,
        },
    );
    (prop::collection::vec(member, 0..40)).prop_map(|members| GroupValue {
        generation: 1,
        assignor: Assignor::Range,
        members,
    })
}

/// A length prefix claiming far more than any input holds, in bincode's varint.
fn huge_prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u16>().prop_map(|n| [&[251u8][..], &n.to_le_bytes()].concat()),
        any::<u32>().prop_map(|n| [&[252u8][..], &n.to_le_bytes()].concat()),
        any::<u64>().prop_map(|n| [&[253u8][..], &n.to_le_bytes()].concat()),
        (250u8..=255).prop_map(|b| vec![b]),
    ]
}

proptest! {
    #![proptest_config(props_support::cases(CI_CASES))]

    #[test]
    fn arbitrary_bytes_stay_within_budget(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        all_types(&bytes)?;
    }

    #[test]
    fn many_tiny_elements_stay_within_budget(
        record in topic_record(),
        gossip in gossip(),
        request in client_request(),
        response in peer_response(),
        cluster in cluster(),
        group in group_value(),
    ) {
        honest(&record)?;
        honest(&gossip)?;
        honest(&request)?;
        honest(&PeerRequest::Forward(request.clone()))?;
        honest(&response)?;
        honest(&cluster)?;
        honest(&group)?;
    }

    #[test]
    fn huge_claimed_lengths_stay_within_budget(
        bytes in small_message(),
        at in any::<prop::sample::Index>(),
        prefix in huge_prefix(),
    ) {
        let at = at.index(bytes.len() + 1);
        let spliced = [&bytes[..at], &prefix[..], &bytes[at..]].concat();
        all_types(&spliced)?;
        let mut overwritten = bytes.clone();
        let end = (at + prefix.len()).min(bytes.len());
        overwritten[at.min(end)..end].copy_from_slice(&prefix[..end - at.min(end)]);
        all_types(&overwritten)?;
    }
}

/// The densest honest shape on the wire: a replica's fetch answer listing the entries
/// of a young log (the node's `replica::Entry`: offsets, count, epoch, an optional
/// producer, a marker flag; 56 bytes, five one-byte varints on the wire).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct EntryShape {
    base: u64,
    count: u32,
    epoch: u64,
    producer: Option<(i64, i16, i32, i32)>,
    epoch_start: bool,
}

#[test]
fn honest_dense_entry_lists_always_fit_their_budget() {
    assert_eq!(std::mem::size_of::<EntryShape>(), 56);
    for base in [0u64, 300, 70_000] {
        // Lengths just past a power of two leave `Vec` at twice the slots it needs.
        for n in [1u64, 5, 257, 1025, 4097, 65_537, 200_000] {
            let entries: Vec<EntryShape> = (base..base + n)
                .map(|b| EntryShape {
                    base: b,
                    count: 1,
                    epoch: 3,
                    producer: None,
                    epoch_start: false,
                })
                .collect();
            let bytes = codec::encode(&entries).unwrap();
            let back = codec::decode::<Vec<EntryShape>>(&bytes);
            assert!(
                back.is_ok(),
                "{n} entries from {base} ({} bytes): {:?}",
                bytes.len(),
                back.err()
            );
        }
    }
}
