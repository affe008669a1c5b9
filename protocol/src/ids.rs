//! Ids that say what they carry: [`NodeId`] (a peer id on the wire and in records),
//! [`PartitionId`], [`Offset`] and the one leader [`Epoch`] of the whole crate graph.
//!
//! Every type here is `#[serde(transparent)]`: it encodes exactly as the bare value it
//! wraps did (`tests/wire_golden.rs` pins the bytes), so nodes with and without these
//! types speak the same wire. None derefs to its raw value: code that needs the number
//! (a storage key, a Kafka field, a CLI argument) asks for it with `.get()` at that edge.
//! Validating a [`NodeId`] as a libp2p PeerId is the network layer's job (this crate
//! imports no libp2p).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A node's identity as carried on the wire and in records: its libp2p PeerId as text
/// (base58). The empty id means "none" (e.g. no leader known).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// Characters [`NodeId::short`] keeps.
    pub const SHORT_LEN: usize = 8;

    /// A node id from its text form (not checked here: the network layer parses it into a
    /// PeerId where one is needed and refuses a malformed one there).
    pub fn new(id: impl Into<String>) -> NodeId {
        NodeId(id.into())
    }

    /// The "no node" id (empty text).
    pub fn none() -> NodeId {
        NodeId(String::new())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the "no node" id.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last [`NodeId::SHORT_LEN`] characters, for people reading logs and tables
    /// (PeerIds share their leading characters).
    pub fn short(&self) -> &str {
        let start = self.0.char_indices().rev().nth(Self::SHORT_LEN - 1).map_or(0, |(i, _)| i);
        &self.0[start..]
    }

    /// The text, consumed.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The ids' texts joined by `sep`, for messages and tables.
    pub fn join(ids: &[NodeId], sep: &str) -> String {
        let texts: Vec<&str> = ids.iter().map(NodeId::as_str).collect();
        texts.join(sep)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<NodeId, Self::Err> {
        Ok(NodeId::new(s))
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> NodeId {
        NodeId(id)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> NodeId {
        NodeId(id.to_string())
    }
}

impl From<&String> for NodeId {
    fn from(id: &String) -> NodeId {
        NodeId(id.clone())
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for NodeId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for NodeId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// Defines a `Copy` integer newtype with `new`/`get`, `Display`, `FromStr` and `From`
/// the raw integer (and back).
macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident($raw:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name($raw);

        impl $name {
            /// Wraps the raw number.
            pub const fn new(raw: $raw) -> $name {
                $name(raw)
            }

            /// The raw number, for an edge that needs it (storage keys, Kafka fields).
            pub const fn get(self) -> $raw {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<$name, Self::Err> {
                s.parse().map($name)
            }
        }

        impl From<$raw> for $name {
            fn from(raw: $raw) -> $name {
                $name(raw)
            }
        }

        impl From<$name> for $raw {
            fn from(id: $name) -> $raw {
                id.0
            }
        }
    };
}

int_id! {
    /// A partition's number within its topic (`0..partitions`).
    PartitionId(u32)
}

int_id! {
    /// A position in a partition's log. Offsets on the wire are unsigned; Kafka's
    /// negative sentinels (earliest, latest) are [`crate::types::OffsetSpec`] values.
    Offset(u64)
}

int_id! {
    /// A leadership epoch: the replica core's, the driver's, the leases' and the one
    /// clients see. Epochs only grow; 0 means none elected yet.
    Epoch(u64)
}

impl PartitionId {
    /// The partition as an index into a topic's per-partition vectors.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl Offset {
    /// The offset `n` positions later (saturating: offsets never wrap).
    pub const fn add(self, n: u64) -> Offset {
        Offset(self.0.saturating_add(n))
    }
}

impl Epoch {
    /// No epoch yet (no leader elected).
    pub const ZERO: Epoch = Epoch(0);

    /// The largest epoch. Every stored batch carries the epoch that wrote it in Kafka's
    /// 32-bit `partitionLeaderEpoch`, and the replica core's entries are rebuilt from
    /// that field, so a larger epoch could not be stored faithfully; a message naming a
    /// larger one is malformed. At one election per second the range lasts 68 years;
    /// Kafka's leader epochs have the same bound.
    pub const MAX: Epoch = Epoch(i32::MAX as u64);

    /// The next epoch, or `None` at [`Epoch::MAX`]: no arithmetic on an epoch a peer sent
    /// can overflow, and a replica whose promise reached the end campaigns no more
    /// (it still follows a leader of that epoch).
    pub fn next(self) -> Option<Epoch> {
        (self < Epoch::MAX).then(|| Epoch(self.0 + 1))
    }

    /// The epoch as Kafka's 32-bit `partitionLeaderEpoch` (epochs above
    /// [`Epoch::MAX`] are malformed and clamp to it).
    pub fn to_i32(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn ids_encode_as_their_raw_values() {
        let raw = codec::encode(&("n1".to_string(), 3u32, 1u64 << 33, 7u64)).unwrap();
        let typed = codec::encode(&(
            NodeId::new("n1"),
            PartitionId::new(3),
            Offset::new(1 << 33),
            Epoch::new(7),
        ))
        .unwrap();
        assert_eq!(raw, typed);
        let back: (NodeId, PartitionId, Offset, Epoch) = codec::decode(&typed).unwrap();
        assert_eq!(
            back,
            (NodeId::new("n1"), PartitionId::new(3), Offset::new(1 << 33), Epoch::new(7))
        );
    }

    #[test]
    fn epoch_next_stops_at_max() {
        assert_eq!(Epoch::new(4).next(), Some(Epoch::new(5)));
        assert_eq!(Epoch::MAX.next(), None);
        assert_eq!(Epoch::MAX.to_i32(), i32::MAX);
        assert_eq!(Epoch::new(u64::MAX).to_i32(), i32::MAX);
    }

    #[test]
    fn short_keeps_the_distinct_tail() {
        assert_eq!(NodeId::new("12D3KooWA1a1a1a1").short(), "A1a1a1a1");
        assert_eq!(NodeId::new("abc").short(), "abc");
        assert_eq!(NodeId::none().short(), "");
        assert_eq!(NodeId::join(&[NodeId::new("a"), NodeId::new("b")], ", "), "a, b");
    }

    #[test]
    fn numbers_parse_and_print() {
        assert_eq!("12".parse::<PartitionId>().unwrap(), PartitionId::new(12));
        assert!("-1".parse::<Offset>().is_err());
        assert_eq!(Epoch::new(9).to_string(), "9");
        assert_eq!(PartitionId::new(2).index(), 2);
    }
}
