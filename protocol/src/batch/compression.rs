//! Compressed batches: Kafka's codecs (attribute bits 0-2: 1 gzip, 2 snappy, 3 lz4,
//! 4 zstd). A node stores and serves a compressed batch as the producer sent it (its
//! header and CRC-32C are checked, never its records); only what must look inside (the
//! client's decoding, compaction, a timestamp lookup) decompresses, through
//! [`decompress`], into a buffer bounded by the caller: a decompression bomb is an error
//! ([`BatchError::DecompressedTooLarge`]), never an allocation it dictates.
//!
//! Pure-Rust decoders only: `flate2` (miniz_oxide), `snap`, `lz4_flex`, `ruzstd`. Snappy
//! comes in two forms: a raw block (librdkafka) or snappy-java's framing (Java clients),
//! told apart by the framing's magic.

use super::BatchError;
use std::io::Read;

/// The most a batch's records may decompress to, by default (64 MiB: a 1 MiB batch
/// compressed 64 to 1). Larger is refused, not allocated.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Kafka's compression codecs, by attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// 0: the records are stored as they are.
    None,
    /// 1: gzip (RFC 1952).
    Gzip,
    /// 2: snappy (a raw block, or snappy-java's framing).
    Snappy,
    /// 3: the LZ4 frame format.
    Lz4,
    /// 4: zstd.
    Zstd,
}

impl Codec {
    /// The codec of attribute bits 0-2; 5 to 7 are no codec Kafka defines.
    pub fn of(bits: u8) -> Result<Codec, BatchError> {
        match bits {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(BatchError::UnsupportedCompression(other)),
        }
    }

    /// Kafka's name for it (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// snappy-java's stream header: magic, then version and compatible version (i32 each).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// Decompress a batch's records section (`input`, after the 61-byte header) with
/// `codec`, into at most `max` bytes.
pub fn decompress(codec: Codec, input: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Codec::None => {
            if input.len() > max {
                return Err(BatchError::DecompressedTooLarge { codec: codec.name(), max });
            }
            Ok(input.to_vec())
        }
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), codec, max),
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), codec, max),
        Codec::Zstd => zstd(input, max),
        Codec::Snappy if input.starts_with(&XERIAL_MAGIC) => xerial(input, max),
        Codec::Snappy => {
            let mut out = Vec::new();
            snappy_block(input, max, &mut out)?;
            Ok(out)
        }
    }
}

fn failed(codec: Codec, e: impl std::fmt::Display) -> BatchError {
    BatchError::Decompress { codec: codec.name(), reason: e.to_string() }
}

/// Read `r` to its end, refusing more than `max` bytes (read no further than one past).
fn read_bounded(r: impl Read, codec: Codec, max: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    r.take(limit).read_to_end(&mut out).map_err(|e| failed(codec, e))?;
    if out.len() > max {
        return Err(BatchError::DecompressedTooLarge { codec: codec.name(), max });
    }
    Ok(out)
}

/// Every zstd frame in `input`, one after another (a producer may concatenate them).
fn zstd(input: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    let mut rest = input;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let left = max - out.len();
        let frame = ruzstd::decoding::StreamingDecoder::new(&mut rest)
            .map_err(|e| failed(Codec::Zstd, e))?;
        // Each pass consumes at least a frame header, so the loop ends.
        let part = read_bounded(frame, Codec::Zstd, left)?;
        out.extend_from_slice(&part);
    }
    Ok(out)
}

/// One raw snappy block appended to `out`; its declared length is checked first.
fn snappy_block(block: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let len = snap::raw::decompress_len(block).map_err(|e| failed(Codec::Snappy, e))?;
    if len > max.saturating_sub(out.len()) {
        return Err(BatchError::DecompressedTooLarge { codec: Codec::Snappy.name(), max });
    }
    let at = out.len();
    out.resize(at + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[at..])
        .map_err(|e| failed(Codec::Snappy, e))?;
    out.truncate(at + n);
    Ok(())
}

/// snappy-java's framing: the header, then blocks, each an i32 length and a raw block.
fn xerial(input: &[u8], max: usize) -> Result<Vec<u8>, BatchError> {
    let mut rest =
        input.get(XERIAL_HEADER_LEN..).ok_or_else(|| failed(Codec::Snappy, "truncated header"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = match rest.split_first_chunk::<4>() {
            Some((l, tail)) => (usize::try_from(i32::from_be_bytes(*l)), tail),
            None => return Err(failed(Codec::Snappy, "truncated block length")),
        };
        let len = len.map_err(|_| failed(Codec::Snappy, "negative block length"))?;
        let block = tail.get(..len).ok_or_else(|| failed(Codec::Snappy, "truncated block"))?;
        snappy_block(block, max, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
