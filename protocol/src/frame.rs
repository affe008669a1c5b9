//! Frames: how messages travel on a byte stream.
//!
//! ```text
//! +----------------+-----------+------------------------------+
//! | length: u32 BE | version u8| body (codec, `length-1` bytes)|
//! +----------------+-----------+------------------------------+
//! ```
//! `length` counts the version byte and the body. A reader checks `length` against its
//! limit *before* allocating anything for the body, so an oversized or garbage prefix
//! costs four bytes of reading and nothing else. The version byte lets a node refuse a
//! frame from an incompatible build with a clear error instead of misreading it; the
//! libp2p protocol name (`/meshlog/client/1`) negotiates the major version up front.

use crate::codec::{self, CodecError};
use serde::{de::DeserializeOwned, Serialize};

/// The wire format version written in every frame.
pub const WIRE_VERSION: u8 = 1;
/// Bytes before the body: the length prefix and the version byte.
pub const FRAME_HEADER_LEN: usize = 5;
/// The hard upper bound on a frame's `length` field, whatever a config says.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// The default limit: room for a fetch response of 16 MiB of batches plus headers.
pub const DEFAULT_MAX_FRAME_BYTES: usize = (16 << 20) + (64 << 10);

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over the reader's limit; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Claimed length.
        len: usize,
        /// The reader's limit.
        max: usize,
    },
    /// A zero length cannot hold the version byte.
    #[error("empty frame")]
    Empty,
    /// Fewer bytes than the prefix promised.
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The sender speaks another wire version.
    #[error("unsupported wire version {got} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
    },
    /// The body is not a valid message.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Check a length prefix against `max` and return the number of bytes that follow it.
/// Call this before allocating the body buffer.
pub fn body_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    let max = max.min(MAX_FRAME_BYTES);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    Ok(len)
}

/// Encode `msg` as one complete frame (prefix, version, body), refusing frames over `max`.
pub fn encode_frame<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; FRAME_HEADER_LEN];
    out[4] = WIRE_VERSION;
    codec::encode_into(msg, &mut out)?;
    let len = out.len() - 4;
    let max = max.min(MAX_FRAME_BYTES);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decode a frame's contents (the `length` bytes after the prefix: version and body).
pub fn decode_body<T: DeserializeOwned>(contents: &[u8]) -> Result<T, FrameError> {
    let (&version, body) = contents.split_first().ok_or(FrameError::Empty)?;
    if version != WIRE_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version });
    }
    Ok(codec::decode(body)?)
}

/// Decode one frame from the front of `bytes`, returning the message and the bytes used.
pub fn decode_frame<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<(T, usize), FrameError> {
    let prefix: [u8; 4] = match bytes.get(..4) {
        Some(p) => [p[0], p[1], p[2], p[3]],
        None => return Err(FrameError::Truncated { need: 4, have: bytes.len() }),
    };
    let len = body_len(prefix, max)?;
    let contents =
        bytes.get(4..4 + len).ok_or(FrameError::Truncated { need: 4 + len, have: bytes.len() })?;
    Ok((decode_body(contents)?, 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let msg = ("hello".to_string(), 42u64);
        let f = encode_frame(&msg, DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_eq!(f[4], WIRE_VERSION);
        let (back, used): ((String, u64), usize) =
            decode_frame(&f, DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_eq!(back, msg);
        assert_eq!(used, f.len());
    }

    #[test]
    fn oversized_prefix_is_refused_before_allocation() {
        let err = body_len(u32::MAX.to_be_bytes(), DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
    }

    #[test]
    fn wrong_version_is_named() {
        let mut f = encode_frame(&1u8, 1024).unwrap();
        f[4] = 9;
        let err = decode_frame::<u8>(&f, 1024).unwrap_err();
        assert!(err.to_string().contains("unsupported wire version 9"), "{err}");
    }

    #[test]
    fn encoder_refuses_oversized_messages() {
        let big = vec![0u8; 2048];
        assert!(matches!(encode_frame(&big, 1024), Err(FrameError::TooLarge { .. })));
    }
}
