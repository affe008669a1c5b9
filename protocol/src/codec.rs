//! The one module that turns messages into bytes and back.
//!
//! Encoding is serde + bincode 2.0.1 (pinned: 3.0.0 on the registry is a tombstone)
//! with bincode's standard config (little-endian, varint integers). Swapping the
//! encoding means changing this file and bumping [`crate::frame::WIRE_VERSION`].
//!
//! Decoding is bounded: bincode's allocation limit is chosen from the input's size, so
//! a hostile message of `n` bytes can never make the decoder reserve more than
//! [`ALLOC_FACTOR`]` * n` rounded up to the next tier (at least 64 KiB), whatever
//! lengths it claims.

use bincode::config;
use serde::{de::DeserializeOwned, Serialize};

/// How many bytes of memory the decoder may reserve per byte of input. Wire sizes of
/// our types are at most this many times smaller than their in-memory sizes.
pub const ALLOC_FACTOR: usize = 8;

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
    /// The value could not be encoded (a bug, or an unsupported type).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encode a message body.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config::standard()).map_err(|e| CodecError::Encode(e.to_string()))
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

/// Decode exactly one message body from `bytes`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let need = bytes.len().saturating_mul(ALLOC_FACTOR);
    let (msg, used) = if need <= 64 << 10 {
        decode_limited::<T, { 64 << 10 }>(bytes)?
    } else if need <= 1 << 20 {
        decode_limited::<T, { 1 << 20 }>(bytes)?
    } else if need <= 16 << 20 {
        decode_limited::<T, { 16 << 20 }>(bytes)?
    } else {
        decode_limited::<T, { 256 << 20 }>(bytes)?
    };
    if used != bytes.len() {
        return Err(CodecError::Trailing { consumed: used, trailing: bytes.len() - used });
    }
    Ok(msg)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    bincode::serde::decode_from_slice(bytes, config::standard().with_limit::<LIMIT>())
        .map_err(|e| CodecError::Decode(e.to_string()))
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
    fn huge_claimed_length_is_rejected_not_allocated() {
        // A varint claiming a 2^40-byte vector in 9 bytes.
        let bytes = [0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
