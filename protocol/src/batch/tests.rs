//! Record batch tests: golden bytes, Kafka varint vectors, round trips, and errors
//! (never panics) for every kind of damage.

use super::varint::{put_varint, put_varlong, varint_len, varlong_len, zigzag32, zigzag64, Reader};
use super::*;

/// Recomputes the CRC after a test has edited CRC-covered bytes, so the
/// edit reaches the check under test instead of failing the CRC.
fn recrc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
}

/// Shorthand for a [`Header`].
fn hdr(key: &str, value: Option<&[u8]>) -> Header {
    Header { key: key.to_owned(), value: value.map(<[u8]>::to_vec) }
}

/// `put_varint` into a fresh vector.
fn enc_varint(v: i32) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, v);
    out
}

/// `put_varlong` into a fresh vector.
fn enc_varlong(v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varlong(&mut out, v);
    out
}

/// Vectors from Kafka's `ByteUtilsTest.testVarintSerde`.
const VARINTS: &[(i32, &[u8])] = &[
    (0, &[0x00]),
    (-1, &[0x01]),
    (1, &[0x02]),
    (63, &[0x7e]),
    (-64, &[0x7f]),
    (64, &[0x80, 0x01]),
    (-65, &[0x81, 0x01]),
    (150, &[0xac, 0x02]), // protobuf's "300" after zigzag
    (8191, &[0xfe, 0x7f]),
    (-8192, &[0xff, 0x7f]),
    (8192, &[0x80, 0x80, 0x01]),
    (-8193, &[0x81, 0x80, 0x01]),
    (1048575, &[0xfe, 0xff, 0x7f]),
    (-1048576, &[0xff, 0xff, 0x7f]),
    (1048576, &[0x80, 0x80, 0x80, 0x01]),
    (-1048577, &[0x81, 0x80, 0x80, 0x01]),
    (134217727, &[0xfe, 0xff, 0xff, 0x7f]),
    (-134217728, &[0xff, 0xff, 0xff, 0x7f]),
    (134217728, &[0x80, 0x80, 0x80, 0x80, 0x01]),
    (-134217729, &[0x81, 0x80, 0x80, 0x80, 0x01]),
    (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
    (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
];

#[test]
fn zigzag_known_values() {
    assert_eq!(zigzag32(0), 0);
    assert_eq!(zigzag32(-1), 1);
    assert_eq!(zigzag32(1), 2);
    assert_eq!(zigzag32(-2), 3);
    assert_eq!(zigzag32(150), 300);
    assert_eq!(zigzag32(i32::MAX), 0xffff_fffe);
    assert_eq!(zigzag32(i32::MIN), 0xffff_ffff);
    assert_eq!(zigzag64(-1), 1);
    assert_eq!(zigzag64(i64::MIN), u64::MAX);
}

#[test]
fn varint_known_values() {
    for &(v, bytes) in VARINTS {
        assert_eq!(enc_varint(v), bytes, "encode {v}");
        assert_eq!(varint_len(v), bytes.len(), "len {v}");
        let mut r = Reader::new(bytes, 0);
        assert_eq!(r.varint(), Ok(v), "decode {v}");
        assert_eq!(r.remaining(), 0);
        // Kafka's varint and varlong agree on values that fit in 32 bits.
        assert_eq!(enc_varlong(i64::from(v)), bytes, "varlong {v}");
    }
}

#[test]
fn varlong_known_values() {
    let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    for (v, bytes) in [(i64::MAX, &max), (i64::MIN, &min)] {
        assert_eq!(enc_varlong(v), bytes);
        assert_eq!(varlong_len(v), 10);
        assert_eq!(Reader::new(bytes, 0).varlong(), Ok(v));
    }
}

#[test]
fn overlong_and_truncated_varints_are_errors() {
    // Kafka's ByteUtilsTest.testInvalidVarint: a 6th byte is illegal.
    let six = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(Reader::new(&six, 0).varint(), Err(BatchError::BadVarint { offset: 0 }));
    let eleven = [0xff; 11];
    assert_eq!(Reader::new(&eleven, 0).varlong(), Err(BatchError::BadVarint { offset: 0 }));
    assert_eq!(Reader::new(&[0x80], 0).varint(), Err(BatchError::Truncated { needed: 2, have: 1 }));
}

#[test]
fn set_producer_keeps_the_batch_valid() {
    let mut b = BatchBuilder::new();
    b.push(1, Some(b"k"), Some(b"v"), &[]);
    b.push(2, None, Some(b"w"), &[]);
    let mut bytes = b.build().unwrap();
    set_producer(&mut bytes, 77, 3, 40).unwrap();
    let h = validate(&bytes, 1 << 20).unwrap();
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 3, 40));
    assert_eq!(records(&bytes).unwrap().len(), 2);
}

#[test]
fn crc32c_is_castagnoli() {
    // The standard CRC-32C check value.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn golden_single_record_batch() {
    let mut b = BatchBuilder::new();
    b.push(1000, Some(b"k"), Some(b"v"), &[]);
    let bytes = b.build().unwrap();
    #[rustfmt::skip]
    let expected: Vec<u8> = [
        &[0u8; 8][..],                                  // baseOffset 0
        &[0x00, 0x00, 0x00, 0x3a],                      // batchLength 58
        &[0xff, 0xff, 0xff, 0xff],                      // partitionLeaderEpoch -1
        &[0x02],                                        // magic
        &[0x71, 0x6a, 0x61, 0x89],                      // crc (computed independently)
        &[0x00, 0x00],                                  // attributes
        &[0x00, 0x00, 0x00, 0x00],                      // lastOffsetDelta 0
        &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],                // baseTimestamp 1000
        &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],                // maxTimestamp 1000
        &[0xff; 8],                                     // producerId -1
        &[0xff, 0xff],                                  // producerEpoch -1
        &[0xff, 0xff, 0xff, 0xff],                      // baseSequence -1
        &[0x00, 0x00, 0x00, 0x01],                      // recordsCount 1
        // record: length 8, attrs, tsDelta 0, offDelta 0, key "k", value "v", 0 headers
        &[0x10, 0x00, 0x00, 0x00, 0x02, b'k', 0x02, b'v', 0x00],
    ]
    .concat();
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), 70);
    assert_eq!(bytes[MAGIC_OFFSET], 2);
    assert_eq!(bytes[21..23], [0, 0]);
    let stored = u32::from_be_bytes(bytes[17..21].try_into().unwrap());
    assert_eq!(stored, crc32c::crc32c(&bytes[21..]));
    let h = validate(&bytes, 1 << 20).unwrap();
    assert_eq!(h.crc, 0x716a_6189);
    assert_eq!(h.total_len(), 70);
}

/// A batch captured from librdkafka (published as a fixture in the
/// rskafka test suite): key empty (not null), one header foo=bar.
#[rustfmt::skip]
const RDKAFKA_BATCH: &[u8] = &[
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4b, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x27, 0x24, 0xfe, 0xcd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x61,
    0xd5, 0x9b, 0x77, 0x00, 0x00, 0x00, 0x00, 0x61, 0xd5, 0x9b, 0x77, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x32, 0x00, 0x00,
    0x00, 0x00, 0x16, b'h', b'e', b'l', b'l', b'o', b' ', b'k', b'a', b'f', b'k', b'a', 0x02, 0x06,
    b'f', b'o', b'o', 0x06, b'b', b'a', b'r',
];

#[test]
fn decodes_and_reproduces_a_librdkafka_batch() {
    let h = validate(RDKAFKA_BATCH, 1 << 20).unwrap();
    assert_eq!(h.crc, 0x2724_fecd);
    assert_eq!(h.partition_leader_epoch, 0);
    let recs = records(RDKAFKA_BATCH).unwrap();
    let foo = vec![hdr("foo", Some(b"bar"))];
    assert_eq!(
        recs,
        vec![Record {
            offset: 0,
            timestamp: 1_641_388_919,
            key: Some(vec![]),
            value: Some(b"hello kafka".to_vec()),
            headers: foo.clone(),
        }]
    );
    let mut b = BatchBuilder::new();
    b.push(1_641_388_919, Some(b""), Some(b"hello kafka"), &foo);
    let mut ours = b.build().unwrap();
    set_partition_leader_epoch(&mut ours, 0).unwrap();
    assert_eq!(ours, RDKAFKA_BATCH);
}

/// An idempotent-producer batch exercising null/empty keys and values,
/// headers, non-monotonic timestamps and a multi-byte length prefix.
fn sample_batch() -> Vec<u8> {
    let mut b = BatchBuilder::with_producer(42, 3, 100);
    b.push(5_000, Some(b"key-a"), Some(b"value-a"), &[]);
    b.push(4_000, None, Some(b"no key"), &[hdr("h1", Some(b"x"))]);
    b.push(7_000, Some(b"key-c"), None, &[hdr("", None), hdr("ключ", Some(b""))]);
    b.push(6_000, Some(b""), Some(&[0u8; 300]), &[]);
    b.build().unwrap()
}

#[test]
fn round_trip_builder_validate_records() {
    let bytes = sample_batch();
    let h = validate(&bytes, bytes.len()).unwrap();
    assert_eq!(h.records_count, 4);
    assert_eq!(h.last_offset_delta, 3);
    assert_eq!((h.base_timestamp, h.max_timestamp), (5_000, 7_000));
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42, 3, 100));
    assert_eq!(h.partition_leader_epoch, -1);
    assert!(h.has_producer_id() && !h.is_transactional() && !h.is_control());
    let recs = records(&bytes).unwrap();
    let got: Vec<_> = recs.iter().map(|r| (r.offset, r.timestamp)).collect();
    assert_eq!(got, [(0, 5_000), (1, 4_000), (2, 7_000), (3, 6_000)]);
    assert_eq!(recs[0].key.as_deref(), Some(&b"key-a"[..]));
    assert_eq!(recs[1].key, None);
    assert_eq!(recs[1].headers, [hdr("h1", Some(b"x"))]);
    assert_eq!(recs[2].value, None);
    assert_eq!(recs[2].headers, [hdr("", None), hdr("ключ", Some(b""))]);
    assert_eq!(recs[3].key, Some(vec![]));
    assert_eq!(recs[3].value, Some(vec![0u8; 300]));
}

#[test]
fn builder_size_len_and_empty() {
    let mut b = BatchBuilder::default();
    assert!(b.is_empty());
    assert_eq!(b.size_bytes(), BATCH_HEADER_LEN);
    assert_eq!(b.clone().build(), None);
    b.push(1, None, None, &[]);
    b.push(2, Some(&[1; 200]), None, &[hdr("k", None)]);
    assert_eq!(b.len(), 2);
    let size = b.size_bytes();
    assert_eq!(b.build().unwrap().len(), size);
}

#[test]
fn set_base_offset_and_epoch_keep_crc_valid() {
    let mut bytes = sample_batch();
    set_base_offset(&mut bytes, 1_000_000).unwrap();
    set_partition_leader_epoch(&mut bytes, 7).unwrap();
    let h = validate(&bytes, usize::MAX).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1_000_000, 7));
    assert_eq!(h.last_offset(), 1_000_003);
    let offsets: Vec<i64> = records(&bytes).unwrap().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [1_000_000, 1_000_001, 1_000_002, 1_000_003]);
    let mut short = vec![0u8; BATCH_HEADER_LEN - 1];
    assert_eq!(set_base_offset(&mut short, 1), Err(BatchError::Truncated { needed: 61, have: 60 }));
    assert!(short.iter().all(|&b| b == 0));
    assert!(set_partition_leader_epoch(&mut short, 1).is_err());
}

#[test]
fn any_flipped_byte_after_attributes_start_is_crc_mismatch() {
    let bytes = sample_batch();
    for i in ATTRIBUTES_OFFSET..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(validate(&bad, usize::MAX), Err(BatchError::CrcMismatch { .. })),
            "byte {i}"
        );
        assert!(matches!(records(&bad), Err(BatchError::CrcMismatch { .. })));
    }
    // A corrupted CRC field itself is also a mismatch.
    let mut bad = bytes.clone();
    bad[CRC_OFFSET] ^= 0x80;
    assert!(matches!(validate(&bad, usize::MAX), Err(BatchError::CrcMismatch { .. })));
}

#[test]
fn too_large_is_checked_first() {
    let garbage = vec![0xffu8; 100];
    assert_eq!(validate(&garbage, 99), Err(BatchError::TooLarge { size: 100, max: 99 }));
    let bytes = sample_batch();
    assert_eq!(
        validate(&bytes, bytes.len() - 1),
        Err(BatchError::TooLarge { size: bytes.len(), max: bytes.len() - 1 })
    );
    assert!(validate(&bytes, bytes.len()).is_ok());
}

#[test]
fn header_errors() {
    let bytes = sample_batch();
    assert_eq!(parse_header(&bytes[..60]), Err(BatchError::Truncated { needed: 61, have: 60 }));
    let mut bad = bytes.clone();
    bad[MAGIC_OFFSET] = 1;
    assert_eq!(validate(&bad, usize::MAX), Err(BatchError::BadMagic(1)));
    let mut bad = bytes.clone();
    bad[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert_eq!(parse_header(&bad), Err(BatchError::BadBatchLength(48)));
    bad[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(parse_header(&bad), Err(BatchError::BadBatchLength(-1)));
    let mut bad = bytes.clone();
    bad[57..61].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(parse_header(&bad), Err(BatchError::BadRecordCount(-1)));
}

#[test]
fn length_and_count_errors() {
    let bytes = sample_batch();
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        validate(&long, usize::MAX),
        Err(BatchError::LengthMismatch { declared: bytes.len(), actual: bytes.len() + 1 })
    );
    let mut more = bytes.clone();
    more[57..61].copy_from_slice(&5i32.to_be_bytes());
    recrc(&mut more);
    assert_eq!(
        validate(&more, usize::MAX),
        Err(BatchError::RecordCountMismatch { declared: 5, decoded: 4 })
    );
    let mut fewer = bytes.clone();
    fewer[57..61].copy_from_slice(&3i32.to_be_bytes());
    recrc(&mut fewer);
    assert!(matches!(validate(&fewer, usize::MAX), Err(BatchError::TrailingBytes { .. })));
    let mut last = bytes.clone();
    last[23..27].copy_from_slice(&2i32.to_be_bytes());
    recrc(&mut last);
    assert_eq!(
        validate(&last, usize::MAX),
        Err(BatchError::LastOffsetDeltaMismatch { stored: 2, expected: 3 })
    );
}

#[test]
fn compression_and_attribute_flags() {
    let bytes = sample_batch();
    let mut gz = bytes.clone();
    gz[22] = 1;
    recrc(&mut gz);
    // A gzip batch is checked by header and CRC only; its records must then decompress.
    assert!(validate(&gz, usize::MAX).is_ok());
    assert!(matches!(records(&gz), Err(BatchError::Decompress { codec: "gzip", .. })));
    let mut unknown = bytes.clone();
    unknown[22] = 5;
    recrc(&mut unknown);
    assert_eq!(validate(&unknown, usize::MAX), Err(BatchError::UnsupportedCompression(5)));
    let mut flags = bytes.clone();
    flags[22] = 0x38; // LogAppendTime | transactional | control
    recrc(&mut flags);
    let h = validate(&flags, usize::MAX).unwrap();
    assert!(h.is_transactional() && h.is_control() && h.is_log_append_time());
    assert_eq!(h.compression(), 0);
    // LogAppendTime: every record reports the batch's maxTimestamp.
    assert!(records(&flags).unwrap().iter().all(|r| r.timestamp == 7_000));
}

/// A one-record batch whose record body is `body` (length prefix added).
fn batch_with_body(body: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(0, None, None, &[]);
    let mut bytes = b.build().unwrap();
    bytes.truncate(BATCH_HEADER_LEN);
    put_varint(&mut bytes, body.len() as i32);
    bytes.extend_from_slice(body);
    let batch_length = (bytes.len() - LOG_OVERHEAD) as i32;
    bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
    recrc(&mut bytes);
    bytes
}

#[test]
fn record_level_errors() {
    let ok = batch_with_body(&[0, 0, 0, 1, 1, 0]);
    assert!(validate(&ok, usize::MAX).is_ok());
    let cases: &[(&[u8], BatchError)] = &[
        (
            &[0, 0, 0, 3, 1, 0], // keyLength -2
            BatchError::InvalidRecord { reason: "negative key length other than -1" },
        ),
        (
            &[0, 0, 2, 1, 1, 0], // offsetDelta 1 in record 0
            BatchError::OffsetDeltaMismatch { index: 0, found: 1 },
        ),
        (
            &[0, 0, 0, 1, 1, 1], // headersCount -1
            BatchError::InvalidRecord { reason: "negative header count" },
        ),
        (
            &[0, 0, 0, 1, 1, 2, 2, 0xff, 1], // header key not UTF-8
            BatchError::InvalidRecord { reason: "header key is not valid UTF-8" },
        ),
        (
            &[0, 0, 0, 1, 1, 0, 0], // a stray byte inside the record
            BatchError::InvalidRecord { reason: "record length does not match its fields" },
        ),
        (
            &[0, 0, 0, 1, 20], // value longer than the record
            BatchError::Truncated { needed: 77, have: 67 },
        ),
    ];
    for (body, err) in cases {
        let bytes = batch_with_body(body);
        assert_eq!(validate(&bytes, usize::MAX).as_ref(), Err(err), "{body:?}");
    }
}

#[test]
fn records_is_lenient_on_offset_gaps_and_empty_batches() {
    let gap = batch_with_body(&[0, 0, 4, 1, 1, 0]); // offsetDelta 2
    assert!(validate(&gap, usize::MAX).is_err());
    assert_eq!(records(&gap).unwrap()[0].offset, 2);
    let mut empty = batch_with_body(&[]);
    empty.truncate(BATCH_HEADER_LEN);
    empty[8..12].copy_from_slice(&49i32.to_be_bytes());
    empty[57..61].copy_from_slice(&0i32.to_be_bytes());
    recrc(&mut empty);
    assert_eq!(records(&empty), Ok(vec![]));
    assert_eq!(
        validate(&empty, usize::MAX),
        Err(BatchError::InvalidRecord { reason: "batch has no records" })
    );
}

/// The header fields compaction must not change (everything but batchLength,
/// recordsCount and the CRC).
fn kept_fields(h: &BatchHeader) -> (i64, i32, i16, i32, i64, i64, i64, i16, i32) {
    (
        h.base_offset,
        h.partition_leader_epoch,
        h.attributes,
        h.last_offset_delta,
        h.base_timestamp,
        h.max_timestamp,
        h.producer_id,
        h.producer_epoch,
        h.base_sequence,
    )
}

#[test]
fn retain_records_drops_records_and_keeps_offsets_and_header() {
    let mut bytes = sample_batch();
    set_base_offset(&mut bytes, 1_000).unwrap();
    set_partition_leader_epoch(&mut bytes, 7).unwrap();
    let before = records(&bytes).unwrap();
    let out = retain_records(&bytes, |r| r.offset % 2 == 1).unwrap().unwrap();
    let h = verify_crc(&out).unwrap();
    assert_eq!(kept_fields(&h), kept_fields(&parse_header(&bytes).unwrap()));
    assert_eq!(h.records_count, 2);
    assert_eq!(h.total_len(), out.len());
    let after = records(&out).unwrap();
    assert_eq!(after, [before[1].clone(), before[3].clone()]);
    // A compacted batch (offset deltas 1, 3) can be compacted again.
    let again = retain_records(&out, |r| r.offset == 1_003).unwrap().unwrap();
    assert_eq!(records(&again).unwrap(), [before[3].clone()]);
    assert_eq!(retain_records(&again, |_| true), Ok(None));
}

#[test]
fn retain_records_keeping_all_is_none_and_none_is_an_empty_batch() {
    let bytes = sample_batch();
    assert_eq!(retain_records(&bytes, |_| true), Ok(None));
    let empty = retain_records(&bytes, |_| false).unwrap().unwrap();
    assert_eq!(empty.len(), BATCH_HEADER_LEN);
    let h = verify_crc(&empty).unwrap();
    assert_eq!((h.records_count, h.last_offset_delta), (0, 3));
    assert_eq!(h.last_offset(), 3);
    assert_eq!(records(&empty), Ok(vec![]));
    // Nothing left to drop.
    assert_eq!(retain_records(&empty, |_| false), Ok(None));
}

#[test]
fn retain_records_keeps_control_and_log_append_time_attributes() {
    let mut bytes = sample_batch();
    bytes[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&(TIMESTAMP_TYPE_MASK | CONTROL_FLAG).to_be_bytes());
    recrc(&mut bytes);
    let out = retain_records(&bytes, |r| r.offset == 2).unwrap().unwrap();
    let h = verify_crc(&out).unwrap();
    assert!(h.is_control() && h.is_log_append_time());
    assert_eq!(records(&out).unwrap()[0].timestamp, 7_000);
}

#[test]
fn retain_records_rejects_what_records_rejects() {
    let mut bytes = sample_batch();
    bytes[70] ^= 1;
    assert!(matches!(retain_records(&bytes, |_| false), Err(BatchError::CrcMismatch { .. })));
    assert!(retain_records(&bytes[..40], |_| false).is_err());
}

#[test]
fn huge_record_count_does_not_allocate_or_panic() {
    let mut bytes = sample_batch();
    bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    recrc(&mut bytes);
    assert!(matches!(
        records(&bytes),
        Err(BatchError::RecordCountMismatch { declared: i32::MAX, decoded: 4 })
    ));
}

#[test]
fn split_batches_frames_a_fetch_response() {
    let a = sample_batch();
    let mut b = a.clone();
    set_base_offset(&mut b, 4).unwrap();
    let all = [a.clone(), b.clone()].concat();
    let got: Vec<_> = split_batches(&all).collect();
    assert_eq!(got, vec![Ok(&a[..]), Ok(&b[..])]);
    assert_eq!(split_batches(&[]).count(), 0);

    let partial = &all[..all.len() - 5];
    let mut it = split_batches(partial);
    assert_eq!(it.next(), Some(Ok(&a[..])));
    assert_eq!(it.offset(), a.len());
    assert_eq!(it.next(), Some(Err(BatchError::Truncated { needed: b.len(), have: b.len() - 5 })));
    assert_eq!(it.next(), None);
    assert_eq!(it.offset(), a.len());
}

#[test]
fn header_accessors() {
    let h = parse_header(&sample_batch()).unwrap();
    assert_eq!(h.magic, MAGIC_V2);
    assert_eq!(h.last_offset(), 3);
    assert_eq!(h.compression(), 0);
    let weird = BatchHeader { batch_length: -5, ..h };
    assert_eq!(weird.total_len(), LOG_OVERHEAD);
    let end = BatchHeader { base_offset: i64::MAX, ..h };
    assert_eq!(end.last_offset(), i64::MIN + 2); // wraps like Java
}
