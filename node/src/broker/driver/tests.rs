//! The driver with a real store: what it does with replication messages from a peer.

use super::*;
use crate::network::Keypair;
use crate::replica::Epoch;
use crate::storage::{StoreOptions, SEGMENT_BYTES};
use std::time::Instant;

/// How long a condition may take before the test fails.
const WAIT_BUDGET: Duration = Duration::from_secs(10);

fn settings() -> ReplicaSettings {
    // An election timeout no test reaches: this replica only ever follows.
    ReplicaSettings {
        heartbeat_ms: 50,
        election_timeout_ms: 600_000,
        lease_ms: 400,
        replica_lag_max_ms: 1_000,
        max_message_bytes: 1 << 20,
    }
}

/// Replica 1 of a set of two in `dir`, and the PeerId of replica 0 (the leader).
fn follower(dir: &std::path::Path) -> (ReplicaHandle, PeerId, mpsc::Receiver<Outbound>) {
    let store = Arc::new(
        Store::open(dir, &StoreOptions { cache_capacity_bytes: 16 << 20, segment_bytes: SEGMENT_BYTES })
            .unwrap(),
    );
    let commit = GroupCommit::start(store.clone()).unwrap();
    let (outbound, rx) = mpsc::channel(1024);
    let ctx = DriverContext {
        store,
        commit,
        outbound,
        settings: settings(),
        store_lost: false,
        recent: Default::default(),
        stats: Default::default(),
        ticker: Default::default(),
    };
    let leader = Keypair::generate_ed25519().public().to_peer_id();
    let me = Keypair::generate_ed25519().public().to_peer_id();
    let handle =
        ReplicaHandle::open(&ctx, "t", 0, vec![leader.to_string().into(), me.to_string().into()], 1, 1)
            .unwrap();
    (handle, leader, rx)
}

/// A fetch answer of epoch 1 carrying `entries` and their batches.
fn answer(entries: Vec<Entry>, records: Vec<u8>) -> ReplicateMessage {
    let msg = Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: FetchBody::Entries(entries) };
    ReplicateMessage { topic: "t".into(), partition: 0, message: codec::encode(&msg).unwrap(), records }
}

/// A batch as epoch 1's leader stores it at `base`.
fn stored(mut bytes: Vec<u8>, base: i64) -> Vec<u8> {
    batch::set_base_offset(&mut bytes, base).unwrap();
    batch::set_partition_leader_epoch(&mut bytes, 1).unwrap();
    bytes
}

async fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_BUDGET;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_structurally_bad_batch_from_the_leader_is_refused_and_the_replica_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (replica, leader, _out) = follower(dir.path());
    // A batch with lastOffsetDelta -1 and a good CRC (its count once wrapped to 0; now
    // it reads as one offset, and the entry says so).
    let mut one = batch::BatchBuilder::new();
    one.push(0, None, Some(b"v"), &[]);
    let mut bad = batch::retain_records(&one.build().unwrap(), |_| false).unwrap().unwrap();
    bad[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&bad[batch::ATTRIBUTES_OFFSET..]);
    bad[batch::CRC_OFFSET..batch::ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    let bad = stored(bad, 0);
    assert!(batch::verify_crc(&bad).is_ok(), "only the structure is wrong");
    let forged = Entry { base: 0, count: 1, epoch: Epoch::new(1), producer: None, epoch_start: false };
    replica.deliver(&leader, answer(vec![forged], bad));
    // The same answer with a good batch (the leader's marker) is then taken.
    let marker = stored(batch::leader_change_marker(0, 1), 0);
    let entry = Entry { base: 0, count: 1, epoch: Epoch::new(1), producer: None, epoch_start: true };
    replica.deliver(&leader, answer(vec![entry], marker));
    let leader_name = leader.to_string();
    wait_until("the good batch is stored", || replica.status().log_end_offset == 1).await;
    let status = replica.status();
    assert!(status.online, "the replica did not stop: {status:?}");
    assert_eq!(status.leader, leader_name);
    let kept = replica.part.read_batches(0, 1, 1 << 20).unwrap();
    assert!(
        batch::parse_header(&kept[0].1).unwrap().is_control(),
        "offset 0 holds the marker, not the bad batch"
    );
}

#[tokio::test]
async fn a_batch_too_large_to_store_is_refused_before_it_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (replica, leader, _out) = follower(dir.path());
    let mut big = batch::BatchBuilder::new();
    big.push(0, None, Some(&vec![7u8; MAX_BATCH_BYTES]), &[]);
    let big = stored(big.build().unwrap(), 0);
    let entry = Entry { base: 0, count: 1, epoch: Epoch::new(1), producer: None, epoch_start: false };
    replica.deliver(&leader, answer(vec![entry], big));
    let marker = stored(batch::leader_change_marker(0, 1), 0);
    let entry = Entry { base: 0, count: 1, epoch: Epoch::new(1), producer: None, epoch_start: true };
    replica.deliver(&leader, answer(vec![entry], marker));
    wait_until("the marker is stored", || replica.status().log_end_offset == 1).await;
    assert!(replica.status().online);
}

/// A one-record batch of exactly `len` bytes.
fn batch_of_len(len: usize) -> Vec<u8> {
    let mut value = len;
    loop {
        let mut b = batch::BatchBuilder::new();
        b.push(0, None, Some(&vec![1u8; value]), &[]);
        let bytes = b.build().unwrap();
        match bytes.len().cmp(&len) {
            std::cmp::Ordering::Equal => return bytes,
            std::cmp::Ordering::Greater => value -= bytes.len() - len,
            std::cmp::Ordering::Less => value += len - bytes.len(),
        }
    }
}

#[tokio::test]
async fn every_batch_validation_admits_at_the_largest_max_message_bytes_can_be_stored() {
    use meshlog_protocol::types::MAX_MESSAGE_BYTES_CEILING;
    let dir = tempfile::tempdir().unwrap();
    let (replica, _, _out) = follower(dir.path());
    let config = TopicConfig { max_message_bytes: MAX_MESSAGE_BYTES_CEILING, ..TopicConfig::default() };
    let ceiling = MAX_MESSAGE_BYTES_CEILING as usize;
    let edge = batch_of_len(ceiling);
    let header = check_batch(&edge, &config).expect("validation admits a batch at the ceiling");
    replica.part.store_batch(0, &edge, header.last_offset_delta as u32 + 1).expect("and the log stores it");
    assert_eq!(replica.part.offsets().1, 1);
    let over = batch_of_len(ceiling + 1);
    assert!(check_batch(&over, &config).is_err(), "one byte more is refused by validation");
}
