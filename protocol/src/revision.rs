//! Versioned topic records (DESIGN.md decision 16): which life of a name a record
//! belongs to (its incarnation), which version of that life it is, and the order every
//! node applies to two records of one name, so that all of them converge on the same one
//! without a coordinator.
//!
//! - A creation is version 0, signed by its creator. Each change (more partitions, a
//!   config change, a delete) is the held record with the version one higher, signed by
//!   its *author*: the node leading the topic's partition 0, in the epoch it writes down.
//! - A delete is a tombstone: a version with `deleted` set. It is final for its
//!   incarnation: no later version of that incarnation is taken over it.
//! - A re-creation after a delete is a new incarnation (one more than the tombstone's),
//!   with a fresh creation id; its partitions live under their own storage and
//!   replication name ([`replica_name`]), so nothing of the old life mixes into it.
//!
//! On the wire and in stores a record at `Revision::default()` (a first creation) is
//! encoded exactly as before versioning, so older nodes and older stores read it; any
//! other is [`REVISED_TAG`] followed by the record and its revision. Pure: no I/O.

use crate::codec::{self, CodecError};
use crate::ids::{Epoch, NodeId};
use crate::mesh::{is_peer_id_shaped, InvalidRecord, TopicRecord};
use serde::{Deserialize, Serialize};

/// First byte of a revised record's encoding. An unrevised record starts with its name's
/// length as a bincode varint: 1 to 249 (names are at most 249 bytes), never 255.
pub const REVISED_TAG: u8 = 0xFF;

/// Separates a topic's name from its incarnation in [`replica_name`]; never in a name.
pub const INCARNATION_SEPARATOR: char = '~';
/// The largest incarnation a record may carry: no real mesh deletes and re-creates a
/// name four billion times, and the bound leaves the next incarnation (one more) no way
/// to wrap.
pub const MAX_INCARNATION: u64 = u32::MAX as u64;

/// Where a topic record stands in its name's history.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Revision {
    /// Which life of the name: 0 for its first creation, one more than the tombstone it
    /// follows for a re-creation after a delete.
    pub incarnation: u64,
    /// 0 as created; one more with every change.
    pub version: u64,
    /// A tombstone: the topic was deleted (final for this incarnation).
    pub deleted: bool,
    /// The signer of a version above 0: the leader of partition 0 (empty at version 0).
    pub author: NodeId,
    /// The epoch of partition 0 in which the author led when it wrote this version.
    pub epoch: Epoch,
}

impl Revision {
    /// Check the revision's own shape against the record's partition 0 replica set.
    pub fn validate(&self, partition0: &[NodeId]) -> Result<(), String> {
        if self.incarnation > MAX_INCARNATION {
            return Err(format!("incarnation {} is above the largest", self.incarnation));
        }
        if self.version == 0 {
            if !self.author.is_empty() || self.deleted || self.epoch != Epoch::ZERO {
                return Err("version 0 is a creation: no author, epoch or delete".into());
            }
            return Ok(());
        }
        if !is_peer_id_shaped(self.author.as_str()) {
            return Err("its author is not a PeerId".into());
        }
        if !partition0.contains(&self.author) {
            return Err("its author is not a replica of partition 0".into());
        }
        if self.epoch > Epoch::MAX {
            return Err(format!("epoch {} is above the largest", self.epoch));
        }
        Ok(())
    }
}

/// The encoding of a topic record (the payload a node signs).
pub fn encode_record(record: &TopicRecord) -> Result<Vec<u8>, CodecError> {
    if record.revision == Revision::default() {
        return codec::encode(record);
    }
    let mut out = vec![REVISED_TAG];
    codec::encode_into(&(record, &record.revision), &mut out)?;
    Ok(out)
}

/// Decode a topic record in either form.
pub fn decode_record(bytes: &[u8]) -> Result<TopicRecord, CodecError> {
    match bytes.split_first() {
        Some((&REVISED_TAG, rest)) => {
            let (mut record, revision): (TopicRecord, Revision) = codec::decode(rest)?;
            record.revision = revision;
            Ok(record)
        }
        _ => codec::decode(bytes),
    }
}

/// The name a partition of this record is stored and replicated under: the topic's name
/// for its first incarnation (as before versioning), `name~k` for incarnation `k`.
pub fn replica_name(name: &str, incarnation: u64) -> String {
    if incarnation == 0 {
        name.to_string()
    } else {
        format!("{name}{INCARNATION_SEPARATOR}{incarnation}")
    }
}

/// The topic name and incarnation a [`replica_name`] stands for (`None` if malformed).
pub fn parse_replica_name(s: &str) -> Option<(&str, u64)> {
    match s.split_once(INCARNATION_SEPARATOR) {
        None => Some((s, 0)),
        // One spelling per incarnation: no 0, no leading zeros.
        Some((name, text)) => match text.parse::<u64>() {
            Ok(k) if k > 0 && k.to_string() == text => Some((name, k)),
            _ => None,
        },
    }
}

/// How a record relates to the one held for its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The same record.
    Same,
    /// It supersedes the held one (a later version or a later incarnation).
    Newer,
    /// The held one supersedes it.
    Older,
    /// Another creation of the same incarnation: the creation settle rule decides.
    Rival,
}

/// How `new` relates to `held` (records of one name). Every node decides alike.
pub fn relation(new: &TopicRecord, held: &TopicRecord) -> Relation {
    let (n, h) = (&new.revision, &held.revision);
    if n.incarnation != h.incarnation {
        return if n.incarnation > h.incarnation { Relation::Newer } else { Relation::Older };
    }
    if (new.info.creation_id, &new.creator) != (held.info.creation_id, &held.creator) {
        return Relation::Rival;
    }
    // One creation: a tombstone is final, then the later version, then (two authors of
    // one version in two epochs) the later epoch, then a fixed order of the rest.
    fn key(r: &TopicRecord) -> (bool, u64, Epoch, &str) {
        let v = &r.revision;
        (v.deleted, v.version, v.epoch, v.author.as_str())
    }
    let bytes = |r: &TopicRecord| encode_record(r).unwrap_or_default();
    match key(new).cmp(&key(held)).then_with(|| bytes(new).cmp(&bytes(held))) {
        std::cmp::Ordering::Greater => Relation::Newer,
        std::cmp::Ordering::Less => Relation::Older,
        std::cmp::Ordering::Equal => Relation::Same,
    }
}

/// Check that `new`, a later version of the creation `held` is of, is a change its
/// author may make: the same topic (name, creation, replication factor), the same
/// partition 0 set (whose member signs it), no partition removed or moved, and
/// `min.insync.replicas` unchanged (running replicas hold it). Both are valid records.
pub fn check_change(new: &TopicRecord, held: &TopicRecord) -> Result<(), InvalidRecord> {
    let bad =
        |reason: &str| Err(InvalidRecord { topic: held.info.name.clone(), reason: reason.into() });
    let (n, h) = (&new.info, &held.info);
    if n.name != h.name || n.creation_id != h.creation_id || n.created_at_ms != h.created_at_ms {
        return bad("a change names another creation");
    }
    if n.replication_factor != h.replication_factor || new.creator != held.creator {
        return bad("a change may not alter the replication factor or the creator");
    }
    if new.replicas.first() != held.replicas.first() {
        return bad("a change may not alter partition 0's replica set");
    }
    if new.revision.deleted {
        return Ok(());
    }
    if n.partitions < h.partitions || new.replicas[..h.partitions as usize] != held.replicas[..] {
        return bad("a change may only add partitions");
    }
    if n.config.min_insync_replicas != h.config.min_insync_replicas {
        return bad("min.insync.replicas cannot be changed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TopicConfig, TopicInfo};

    const A: &str = "12D3KooWA1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    const B: &str = "12D3KooWB2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
    const C: &str = "12D3KooWC3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

    fn created() -> TopicRecord {
        let info = TopicInfo {
            name: "orders".into(),
            partitions: 2,
            replication_factor: 2,
            config: TopicConfig::from_pairs(&Default::default(), 2).unwrap(),
            creation_id: 7,
            created_at_ms: 1,
        };
        let replicas = vec![vec![A.into(), B.into()], vec![B.into(), C.into()]];
        TopicRecord { info, replicas, creator: C.into(), revision: Revision::default() }
    }

    /// `r` changed by `author` in `epoch`: one version later.
    fn changed(r: &TopicRecord, author: &str, epoch: u64) -> TopicRecord {
        let mut n = r.clone();
        n.revision.version += 1;
        n.revision.author = author.into();
        n.revision.epoch = Epoch::new(epoch);
        n
    }

    fn grown(r: &TopicRecord, author: &str, epoch: u64) -> TopicRecord {
        let mut n = changed(r, author, epoch);
        n.info.partitions += 1;
        n.replicas.push(vec![C.into(), A.into()]);
        n
    }

    fn deleted(r: &TopicRecord, author: &str, epoch: u64) -> TopicRecord {
        let mut n = changed(r, author, epoch);
        n.revision.deleted = true;
        n
    }

    #[test]
    fn an_incarnation_past_the_largest_is_refused_so_the_next_one_cannot_wrap() {
        let mut r = created();
        r.revision.incarnation = MAX_INCARNATION;
        assert!(r.revision.validate(&r.replicas[0]).is_ok());
        r.revision.incarnation = u64::MAX;
        let why = r.revision.validate(&r.replicas[0]).unwrap_err();
        assert!(why.contains("above the largest"), "{why}");
    }

    #[test]
    fn a_created_record_encodes_as_before_and_a_revised_one_round_trips() {
        let r = created();
        assert_eq!(encode_record(&r).unwrap(), codec::encode(&r).unwrap());
        assert_eq!(decode_record(&codec::encode(&r).unwrap()).unwrap(), r);
        let g = grown(&r, A, 3);
        let bytes = encode_record(&g).unwrap();
        assert_eq!(bytes[0], REVISED_TAG);
        assert_eq!(decode_record(&bytes).unwrap(), g);
        // An older decoder (plain `TopicRecord`) refuses it rather than misreading it.
        assert!(codec::decode::<TopicRecord>(&bytes).is_err());
    }

    #[test]
    fn revisions_are_ordered_alike_everywhere() {
        let v0 = created();
        let v1 = grown(&v0, A, 3);
        assert_eq!(relation(&v1, &v0), Relation::Newer);
        assert_eq!(relation(&v0, &v1), Relation::Older);
        assert_eq!(relation(&v1, &v1.clone()), Relation::Same);
        // Two authors of version 1 in two epochs: the later epoch wins, on either side.
        let rival_v1 = grown(&v0, B, 4);
        assert_eq!(relation(&rival_v1, &v1), Relation::Newer);
        assert_eq!(relation(&v1, &rival_v1), Relation::Older);
        // A tombstone is final: a later grow of the same incarnation loses to it.
        let tomb = deleted(&v0, A, 3);
        let later = grown(&v1, A, 3);
        assert_eq!(relation(&later, &tomb), Relation::Older);
        assert_eq!(relation(&tomb, &later), Relation::Newer);
        // Another creation of the same incarnation: the settle rule decides.
        let mut rival = created();
        rival.info.creation_id = 3;
        assert_eq!(relation(&rival, &v0), Relation::Rival);
        // A re-creation after the delete supersedes anything of the first life.
        let mut again = created();
        again.info.creation_id = 99;
        again.revision.incarnation = 1;
        assert_eq!(relation(&again, &tomb), Relation::Newer);
        assert_eq!(relation(&again, &v1), Relation::Newer);
        assert_eq!(relation(&tomb, &again), Relation::Older);
    }

    #[test]
    fn only_partition_zero_replicas_author_and_changes_only_add() {
        let v0 = created();
        grown(&v0, A, 1).validate().unwrap();
        deleted(&v0, B, 1).validate().unwrap();
        let e = grown(&v0, C, 1).validate().unwrap_err();
        assert!(e.reason.contains("not a replica of partition 0"), "{e}");
        let mut forged_creation = v0.clone();
        forged_creation.revision.deleted = true;
        assert!(forged_creation.validate().is_err(), "a tombstone at version 0");
        check_change(&grown(&v0, A, 1), &v0).unwrap();
        check_change(&deleted(&v0, A, 1), &v0).unwrap();
        let mut shrunk = changed(&v0, A, 1);
        shrunk.info.partitions = 1;
        shrunk.replicas.pop();
        assert!(check_change(&shrunk, &v0).is_err());
        let mut moved = changed(&v0, A, 1);
        moved.replicas[1] = vec![A.into(), C.into()];
        assert!(check_change(&moved, &v0).is_err());
        let mut new_p0 = changed(&v0, C, 1);
        new_p0.replicas[0] = vec![C.into(), B.into()];
        new_p0.validate().unwrap();
        assert!(
            check_change(&new_p0, &v0).is_err(),
            "an author that moved itself into partition 0"
        );
        let mut weaker = changed(&v0, A, 1);
        weaker.info.config.min_insync_replicas = 1;
        assert!(check_change(&weaker, &v0).is_err());
    }

    #[test]
    fn replica_names_keep_incarnations_apart() {
        assert_eq!(replica_name("orders", 0), "orders");
        assert_eq!(replica_name("orders", 2), "orders~2");
        assert_eq!(parse_replica_name("orders"), Some(("orders", 0)));
        assert_eq!(parse_replica_name("orders~2"), Some(("orders", 2)));
        assert_eq!(parse_replica_name("orders~0"), None);
        assert_eq!(parse_replica_name("orders~02"), None);
        assert_eq!(parse_replica_name("orders~x"), None);
    }
}
