//! Compressed batches: each codec's batch validates by header and CRC, reads back the
//! records of the same batch uncompressed, survives compaction, and a decompression
//! bomb is refused at the bound.

use super::super::*;
use std::io::Write;

fn plain_batch(n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::with_producer(42, 0, 0);
    for i in 0..n {
        let key = format!("key-{}", i % 3);
        let value = format!("value {i}: the quick brown fox jumps over the lazy dog {i}");
        b.push(1_000 + i as i64, Some(key.as_bytes()), Some(value.as_bytes()), &[]);
    }
    b.build().unwrap()
}

fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
        Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

/// snappy-java's framing (what Java producers send), in blocks of `block` bytes.
fn xerial(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
    for chunk in data.chunks(block) {
        let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
        out.extend_from_slice(&(c.len() as i32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

/// `plain` with its records section replaced by `records` under codec bits `bits`.
fn with_records(plain: &[u8], bits: u8, records: &[u8]) -> Vec<u8> {
    let mut b = plain[..BATCH_HEADER_LEN].to_vec();
    b.extend_from_slice(records);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let attributes = i16::from_be_bytes([b[21], b[22]]) & !COMPRESSION_MASK | i16::from(bits);
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    b
}

const CODECS: [(Codec, u8); 4] =
    [(Codec::Gzip, 1), (Codec::Snappy, 2), (Codec::Lz4, 3), (Codec::Zstd, 4)];

#[test]
fn every_codec_validates_by_its_header_and_reads_back_its_records() {
    let plain = plain_batch(20);
    let want = records(&plain).unwrap();
    for (codec, bits) in CODECS {
        let b = with_records(&plain, bits, &compress(codec, &plain[BATCH_HEADER_LEN..]));
        let h = validate(&b, 1 << 20).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(h.compression(), bits);
        assert_eq!(validate_replicated(&b, 1 << 20).unwrap().records_count, 20);
        assert_eq!(verify_crc(&b).unwrap().records_count, 20);
        assert_eq!(records(&b).unwrap(), want, "{codec:?}");
    }
    let java = with_records(&plain, 2, &xerial(&plain[BATCH_HEADER_LEN..], 100));
    assert_eq!(records(&java).unwrap(), want, "snappy-java's framing");
}

#[test]
fn compaction_of_a_compressed_batch_keeps_the_chosen_records_uncompressed() {
    let plain = plain_batch(30);
    for (codec, bits) in CODECS {
        let b = with_records(&plain, bits, &compress(codec, &plain[BATCH_HEADER_LEN..]));
        let kept = retain_records(&b, |r| r.offset == 29).unwrap().expect("smaller uncompressed");
        let h = validate_replicated(&kept, 1 << 20).unwrap();
        assert_eq!(
            (h.compression(), h.records_count, h.last_offset_delta),
            (0, 1, 29),
            "{codec:?}"
        );
        assert_eq!((h.producer_id, h.base_sequence), (42, 0));
        let r = records(&kept).unwrap();
        assert_eq!(r, records(&plain).unwrap()[29..].to_vec());
        // Keeping all of them changes nothing.
        assert_eq!(retain_records(&b, |_| true).unwrap(), None);
    }
}

#[test]
fn a_decompression_bomb_is_refused_at_the_bound() {
    // 4 MiB of zeros compress to a few KiB in every codec.
    let zeros = vec![0u8; 4 << 20];
    let max = 1 << 20;
    for (codec, _) in CODECS {
        let bomb = compress(codec, &zeros);
        assert!(bomb.len() < 256 << 10, "{codec:?}: {} bytes", bomb.len());
        assert_eq!(
            decompress(codec, &bomb, max),
            Err(BatchError::DecompressedTooLarge { codec: codec.name(), max }),
            "{codec:?}"
        );
        assert_eq!(
            decompress(codec, &bomb, 4 << 20).map(|v| v.len()),
            Ok(4 << 20),
            "{codec:?} within"
        );
    }
    let bomb = xerial(&zeros, 64 << 10);
    assert!(matches!(
        decompress(Codec::Snappy, &bomb, max),
        Err(BatchError::DecompressedTooLarge { .. })
    ));
    // In a batch: records() refuses it within its bound, validate() never looks inside.
    let plain = plain_batch(1);
    let b = with_records(&plain, 1, &compress(Codec::Gzip, &zeros));
    assert!(validate(&b, 1 << 20).is_ok());
    assert_eq!(
        records_within(&b, max),
        Err(BatchError::DecompressedTooLarge { codec: "gzip", max })
    );
}

#[test]
fn garbage_and_unknown_codecs_are_errors() {
    let plain = plain_batch(3);
    for (codec, bits) in CODECS {
        let b = with_records(&plain, bits, b"certainly not compressed data");
        assert!(validate(&b, 1 << 20).is_ok(), "the CRC covers what the producer sent");
        assert!(
            matches!(records(&b), Err(BatchError::Decompress { .. })),
            "{codec:?}: {:?}",
            records(&b)
        );
    }
    for bits in 5..=7 {
        let b = with_records(&plain, bits, &plain[BATCH_HEADER_LEN..]);
        assert_eq!(validate(&b, 1 << 20), Err(BatchError::UnsupportedCompression(bits)));
        assert_eq!(records(&b), Err(BatchError::UnsupportedCompression(bits)));
    }
    let xerial_truncated =
        [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1];
    assert!(matches!(
        decompress(Codec::Snappy, &xerial_truncated, 1 << 20),
        Err(BatchError::Decompress { .. })
    ));
}
