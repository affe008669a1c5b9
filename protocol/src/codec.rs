//! The one module that turns messages into bytes and back.
//!
//! Encoding is serde + bincode 2.0.1 (pinned: 3.0.0 on the registry is a tombstone)
//! with bincode's standard config (little-endian, varint integers). Swapping the
//! encoding means changing this file and bumping [`crate::frame::WIRE_VERSION`].
//!
//! Decoding is bounded in memory (see [`budget`]): every allocation a decoded value
//! makes (strings, byte blobs, the slots of sequences and maps) is charged to a budget
//! of [`ALLOC_FACTOR`] bytes per input byte, at least [`MIN_DECODE_BUDGET_BYTES`],
//! *before* it is made, and no length prefix may claim more than the input that
//! follows it. A hostile message of `n` bytes can therefore never make a decoder hold
//! more than [`decode_budget`]`(n)` bytes, whatever lengths and shapes it claims.

mod budget;

use bincode::config;
use serde::{de::DeserializeOwned, Serialize};

/// How many bytes of memory a decoded value may hold per byte of its input. Honest
/// messages stay below it: the densest honest shape, a replica's fetch answer with the
/// entries of a young log (56-byte entries of five one-byte varints), grows up to 11x,
/// and up to 23x with `Vec`'s doubling (pinned by `tests/decode_budget_props.rs`).
pub const ALLOC_FACTOR: usize = 32;
/// The budget of a small message, whatever its length: a few thousand small elements.
pub const MIN_DECODE_BUDGET_BYTES: usize = 64 << 10;

/// The memory budget [`decode`] gives an input of `input_len` bytes.
pub fn decode_budget(input_len: usize) -> usize {
    input_len.saturating_mul(ALLOC_FACTOR).max(MIN_DECODE_BUDGET_BYTES)
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Decode(String),
    /// The bytes decode but leave trailing garbage.
    #[error("malformed message: {trailing} trailing bytes after a {consumed}-byte message")]
    Trailing {
        /// Bytes the message used.
        consumed: usize,
        /// Bytes left over.
        trailing: usize,
    },
    /// Decoding would hold more memory than the input's budget allows.
    #[error("malformed message: a {input}-byte message needs more than {budget} bytes of memory to decode")]
    OverBudget {
        /// Bytes of input.
        input: usize,
        /// The memory budget it was given.
        budget: usize,
    },
    /// The value could not be encoded (a bug, or an unsupported type).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encode a message body.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encode a message body, appending to `out`.
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    // Straight into `out`, sized first (a pass that copies nothing): a produce or a
    // fetch answer is mostly record bytes, and an intermediate Vec growing by doubling
    // copied each of them about twice more.
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut size, config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    out.reserve(size.bytes_written);
    bincode::serde::encode_into_std_write(msg, out, config::standard())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decode exactly one message body from `bytes`, within [`decode_budget`] of memory;
/// trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with_budget(bytes, decode_budget(bytes.len()))
}

/// Decode exactly one message body from `bytes`, holding at most `budget_bytes` of
/// memory for it (for callers that know a tighter or a larger honest bound).
pub fn decode_with_budget<T: DeserializeOwned>(
    bytes: &[u8],
    budget_bytes: usize,
) -> Result<T, CodecError> {
    let budget = budget::Budget::new(bytes, budget_bytes);
    let mut decoder = bincode::serde::OwnedSerdeDecoder::from_reader(
        budget::BudgetReader(&budget),
        config::standard(),
    );
    let result = T::deserialize(budget::Budgeted { de: decoder.as_deserializer(), b: &budget });
    let msg = match result {
        Ok(msg) => msg,
        Err(_) if budget.exceeded() => {
            return Err(CodecError::OverBudget { input: bytes.len(), budget: budget_bytes });
        }
        Err(e) => return Err(CodecError::Decode(e.to_string())),
    };
    let used = budget.consumed();
    if used != bytes.len() {
        return Err(CodecError::Trailing { consumed: used, trailing: bytes.len() - used });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let v: (u32, String, Vec<u8>) = (7, "x".into(), vec![1, 2, 3]);
        let mut bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&bytes).unwrap(), v);
        bytes.push(0);
        assert!(matches!(
            decode::<(u32, String, Vec<u8>)>(&bytes),
            Err(CodecError::Trailing { trailing: 1, .. })
        ));
    }

    #[test]
    fn many_tiny_elements_are_charged_their_memory() {
        // 40,000 empty strings: 40 KB of input, 1.5 MiB of `String` slots once the Vec
        // has doubled past them (over 32x). bincode's own limit let this through.
        let many = vec![String::new(); 40_000];
        let bytes = encode(&many).unwrap();
        assert!(bytes.len() < 41_000);
        assert!(matches!(decode::<Vec<String>>(&bytes), Err(CodecError::OverBudget { .. })));
        // Nested: one-element inner vectors of empty strings (24 + 96 bytes per 2).
        let nested = vec![vec![String::new()]; 30_000];
        let bytes = encode(&nested).unwrap();
        assert!(matches!(decode::<Vec<Vec<String>>>(&bytes), Err(CodecError::OverBudget { .. })));
        // The same with a budget that covers it decodes.
        assert_eq!(
            decode_with_budget::<Vec<String>>(&encode(&many).unwrap(), 4 << 20).unwrap(),
            many
        );
    }

    #[test]
    fn maps_of_tiny_entries_are_charged() {
        type Map = std::collections::BTreeMap<String, String>;
        let map: Map = (0..20_000).map(|i| (i.to_string(), String::new())).collect();
        let bytes = encode(&map).unwrap();
        // Each entry is charged a share of its B-tree node: over 8 bytes per input byte.
        let tight = bytes.len() * 8;
        assert!(matches!(
            decode_with_budget::<Map>(&bytes, tight),
            Err(CodecError::OverBudget { .. })
        ));
        assert_eq!(decode_with_budget::<Map>(&bytes, bytes.len() * ALLOC_FACTOR).unwrap(), map);
    }

    #[test]
    fn claimed_lengths_beyond_the_input_are_refused_before_allocation() {
        // A sequence claiming 2^32 elements, and a string claiming 60,000 bytes, in a
        // few bytes of input.
        let seq = [0xfc, 0, 0, 0, 0x01, 1, 2];
        let err = decode::<Vec<u64>>(&seq).unwrap_err();
        assert!(
            err.to_string().contains("claims 16777216 elements but only 2 bytes follow"),
            "{err}"
        );
        let string = [0xfb, 0x60, 0xea, b'a'];
        let err = decode::<String>(&string).unwrap_err();
        assert!(err.to_string().contains("claims 60000 elements but only 1 bytes follow"), "{err}");
    }

    #[test]
    fn huge_claimed_length_is_rejected_not_allocated() {
        // A varint claiming a 2^40-byte vector in 9 bytes.
        let bytes = [0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
