//! The sled key schema: every tree name, key and key prefix the node writes, in one
//! place, so the on-disk layout can be read (and changed) here rather than in the eight
//! modules that use it.
//!
//! Owns only the bytes of keys: what a value means is its writer's business (named in
//! the table), and this module never reads or writes the store. A key must never change
//! its bytes: existing data directories are opened with these functions, and the tests
//! below pin every one.
//!
//! Trees: `meta` (the metadata below) and `kv/<name>` ([`kv_tree`], node-local queues;
//! the outbox's is `kv/outbox`).
//!
//! | key in `meta`                  | value                                          | written by          |
//! |--------------------------------|------------------------------------------------|---------------------|
//! | `topic/<topic>`                | the topic's `SignedRecord` (bincode)           | `broker::topics`    |
//! | `tombstone/<topic>/<k>`        | incarnation k's tombstone, `SignedRecord`      | `broker::tombstones`|
//! | `replica/<topic>/<p>`          | the replica core's `HardState` (bincode)       | `broker::driver`    |
//! | `catch_up/<topic>/<p>`         | `1`: catches up before it votes (lost store)   | `broker::driver`    |
//! | `producers/<topic>/<p>`        | producer state below the log start (bincode)   | `broker::partition` |
//! | `log_start/<topic>/<p>`        | start u64 BE, its epoch u64 BE (8 bytes: old)  | `broker::partition` |
//! | `hw/<topic>/<p>`               | the high watermark, u64 BE                     | `broker::partition` |
//! | `recovery/<topic>/<p>`         | segment u64 BE, bytes of it u64 BE: flushed    | `storage`           |
//! | `store_lost`                   | `1`: this node found its store gone            | `server`            |
//! | `peer/<peer id>`               | a member's last addresses (bincode)            | `mesh`              |
//! | `outbox/producer_id`           | the node's outbox producer id, i64 BE          | `outbox`            |
//! | `outbox/seq/<topic>/<p>`       | the partition's next outbox sequence, i32 BE   | `outbox`            |
//! | `kafka/producer_ids`           | end of the reserved producer id counter, u64 BE| `kafka`             |
//!
//! | key in `kv/outbox`                                   | value                      | written by |
//! |------------------------------------------------------|----------------------------|------------|
//! | `<topic>` `0x00` `<p>` u32 BE `<n>` u64 BE           | a queued batch, as stamped | `outbox`   |
//!
//! `<p>` in a `meta` key is the partition number in decimal; a topic name never holds a
//! `/` (it names a directory), so `<topic>/<p>` splits at its last `/`.

/// The metadata tree.
pub(super) const META_TREE: &str = "meta";

/// The sled tree of the node-local key-value tree `name` ([`super::Store::kv`]).
pub(super) fn kv_tree(name: &str) -> String {
    format!("kv/{name}")
}

/// Prefix of every topic record key ([`topic`]).
pub const TOPIC_PREFIX: &str = "topic/";

/// The agreed record of topic `name`.
pub fn topic(name: &str) -> String {
    format!("{TOPIC_PREFIX}{name}")
}

/// Prefix of every archived tombstone key ([`tombstone`]).
pub const TOMBSTONE_PREFIX: &str = "tombstone/";

/// The tombstone of incarnation `incarnation` of topic `name`, kept once a later
/// incarnation replaced it.
pub fn tombstone(name: &str, incarnation: u64) -> String {
    format!("{TOMBSTONE_PREFIX}{name}/{incarnation}")
}

/// A replica's hard state (epoch, vote), saved before it acts on it.
pub fn hard_state(topic: &str, partition: u32) -> String {
    format!("replica/{topic}/{partition}")
}

/// The mark of a replica rebuilt after a lost store: it catches up before it votes.
pub fn catch_up(topic: &str, partition: u32) -> String {
    format!("catch_up/{topic}/{partition}")
}

/// The producer state of the batches deleted below a partition's log start.
pub fn producers(topic: &str, partition: u32) -> String {
    format!("producers/{topic}/{partition}")
}

/// A partition's log start and the epoch below it.
pub fn log_start(topic: &str, partition: u32) -> String {
    format!("log_start/{topic}/{partition}")
}

/// A partition's saved high watermark.
pub fn high_watermark(topic: &str, partition: u32) -> String {
    format!("hw/{topic}/{partition}")
}

/// A partition log's name in the store: the part of its keys after the kind.
pub(super) fn log_name(topic: &str, partition: u32) -> String {
    format!("{topic}/{partition}")
}

/// Where a partition log's last flush left it durable (its name from [`log_name`]).
pub(super) fn recovery(log: &str) -> String {
    format!("recovery/{log}")
}

/// Set when the node found its store lost (a wiped or replaced disk).
pub const STORE_LOST: &str = "store_lost";

/// Prefix of every peer book entry ([`peer`]).
pub const PEER_PREFIX: &str = "peer/";

/// The peer book's entry for a member (`peer` is its PeerId as text).
pub fn peer(peer: &str) -> String {
    format!("{PEER_PREFIX}{peer}")
}

/// The producer id this node stamps on its outbox batches.
pub const OUTBOX_PRODUCER_ID: &str = "outbox/producer_id";

/// The end of the Kafka listener's reserved producer id counter.
pub const KAFKA_PRODUCER_IDS: &str = "kafka/producer_ids";

/// Prefix of every outbox sequence key ([`outbox_seq`]).
pub const OUTBOX_SEQ_PREFIX: &str = "outbox/seq/";

/// The next outbox sequence of a partition.
pub fn outbox_seq(topic: &str, partition: u32) -> String {
    format!("{OUTBOX_SEQ_PREFIX}{topic}/{partition}")
}

/// The topic and partition of an [`outbox_seq`] key, if it is one.
pub fn parse_outbox_seq(key: &str) -> Option<(&str, u32)> {
    let (topic, partition) = key.strip_prefix(OUTBOX_SEQ_PREFIX)?.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

/// The name of the outbox's key-value tree (sled tree `kv/outbox`).
pub const OUTBOX_TREE: &str = "outbox";

/// The key of the `n`th batch the outbox queued (node-wide count) for a partition: in
/// key order, a partition's batches come oldest first.
pub fn outbox_item(topic: &str, partition: u32, n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 13);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The topic, partition and count of an [`outbox_item`] key, if it is one.
pub fn parse_outbox_item(k: &[u8]) -> Option<(String, u32, u64)> {
    let zero = k.iter().position(|b| *b == 0)?;
    let topic = String::from_utf8(k[..zero].to_vec()).ok()?;
    let rest = &k[zero + 1..];
    let p = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let n = u64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    Some((topic, p, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data directories written by earlier builds open with these keys: their bytes
    /// never change.
    #[test]
    fn every_key_keeps_its_bytes() {
        let pinned: [(String, &str); 19] = [
            (META_TREE.into(), "meta"),
            (kv_tree(OUTBOX_TREE), "kv/outbox"),
            (topic("orders"), "topic/orders"),
            (TOPIC_PREFIX.into(), "topic/"),
            (tombstone("orders", 2), "tombstone/orders/2"),
            (TOMBSTONE_PREFIX.into(), "tombstone/"),
            (hard_state("orders", 3), "replica/orders/3"),
            (catch_up("orders", 3), "catch_up/orders/3"),
            (producers("orders", 3), "producers/orders/3"),
            (log_start("orders", 3), "log_start/orders/3"),
            (high_watermark("orders", 3), "hw/orders/3"),
            (recovery(&log_name("orders", 3)), "recovery/orders/3"),
            (STORE_LOST.into(), "store_lost"),
            (peer("12D3KooW"), "peer/12D3KooW"),
            (PEER_PREFIX.into(), "peer/"),
            (OUTBOX_PRODUCER_ID.into(), "outbox/producer_id"),
            (outbox_seq("orders", 3), "outbox/seq/orders/3"),
            (OUTBOX_SEQ_PREFIX.into(), "outbox/seq/"),
            (KAFKA_PRODUCER_IDS.into(), "kafka/producer_ids"),
        ];
        for (key, bytes) in pinned {
            assert_eq!(key, bytes);
        }
        assert_eq!(outbox_item("t", 3, 7), b"t\0\0\0\0\x03\0\0\0\0\0\0\0\x07");
    }

    #[test]
    fn keys_with_parts_parse_back() {
        assert_eq!(parse_outbox_seq(&outbox_seq("a.b-c", 12)), Some(("a.b-c", 12)));
        assert_eq!(parse_outbox_seq("outbox/seq/t"), None);
        assert_eq!(parse_outbox_seq("outbox/producer_id"), None);
        assert_eq!(parse_outbox_item(&outbox_item("t", 3, 7)), Some(("t".into(), 3, 7)));
        assert_eq!(parse_outbox_item(b"t\0\0\0"), None);
    }
}
