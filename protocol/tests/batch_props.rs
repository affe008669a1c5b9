//! Property tests for `meshlog_protocol::batch` and `partitioner`: exact
//! round trips, and no panics on hostile bytes.

mod props_support;

use meshlog_protocol::batch::{
    parse_header, records, retain_records, set_base_offset, set_partition_leader_epoch,
    split_batches, validate, verify_crc, BatchBuilder, BatchError, Header, BATCH_HEADER_LEN,
};
use meshlog_protocol::partitioner::partition_for_key;
use proptest::prelude::*;

type Input = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>);

fn header() -> impl Strategy<Value = Header> {
    (".{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)))
        .prop_map(|(key, value)| Header { key, value })
}

fn bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max))
}

fn record() -> impl Strategy<Value = Input> {
    (any::<i64>(), bytes(40), bytes(200), proptest::collection::vec(header(), 0..4))
}

/// Producer fields: either none, or arbitrary ids.
fn producer() -> impl Strategy<Value = Option<(i64, i16, i32)>> {
    proptest::option::of((any::<i64>(), any::<i16>(), any::<i32>()))
}

fn build(inputs: &[Input], producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    let mut b = match producer {
        Some((id, epoch, seq)) => BatchBuilder::with_producer(id, epoch, seq),
        None => BatchBuilder::new(),
    };
    for (ts, k, v, h) in inputs {
        b.push(*ts, k.as_deref(), v.as_deref(), h);
    }
    let size = b.size_bytes();
    let out = b.build().expect("non-empty builder builds");
    assert_eq!(out.len(), size);
    out
}

/// A small valid batch to mutate.
fn valid_batch() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(record(), 1..5).prop_map(|r| build(&r, None))
}

/// Overwrites the CRC so mutated bytes get past the checksum and exercise
/// the record decoder.
fn recrc(b: &mut [u8]) {
    if b.len() >= BATCH_HEADER_LEN {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Calls every decoding entry point; the assertion is "did not panic".
fn poke(b: &[u8]) {
    let _ = parse_header(b);
    let _ = validate(b, usize::MAX);
    let _ = validate(b, 64);
    let _ = records(b);
    let _ = retain_records(b, |r| r.offset % 2 == 0);
    for one in split_batches(b).flatten() {
        let _ = records(one);
    }
    let mut copy = b.to_vec();
    let _ = set_base_offset(&mut copy, 9);
    let _ = set_partition_leader_epoch(&mut copy, 9);
}

/// Cases per property in the normal suite; `scripts/props.sh` sets `PROPTEST_CASES`.
const CI_CASES: u32 = 512;

proptest! {
    #![proptest_config(props_support::cases(CI_CASES))]

    #[test]
    fn arbitrary_records_round_trip(
        inputs in proptest::collection::vec(record(), 1..20),
        producer in producer(),
        base in any::<i64>(),
        epoch in any::<i32>(),
    ) {
        let mut bytes = build(&inputs, producer);
        set_base_offset(&mut bytes, base).unwrap();
        set_partition_leader_epoch(&mut bytes, epoch).unwrap();
        let h = validate(&bytes, bytes.len()).unwrap();
        let n = inputs.len() as i32;
        prop_assert_eq!(h.records_count, n);
        prop_assert_eq!(h.last_offset_delta, n - 1);
        prop_assert_eq!(h.base_offset, base);
        prop_assert_eq!(h.partition_leader_epoch, epoch);
        prop_assert_eq!(h.base_timestamp, inputs[0].0);
        prop_assert_eq!(h.max_timestamp, inputs.iter().map(|r| r.0).max().unwrap());
        let (id, ep, seq) = producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (id, ep, seq));
        let recs = records(&bytes).unwrap();
        prop_assert_eq!(recs.len(), inputs.len());
        for (i, (rec, (ts, k, v, hs))) in recs.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(rec.offset, base.wrapping_add(i as i64));
            prop_assert_eq!(rec.timestamp, *ts);
            prop_assert_eq!(&rec.key, k);
            prop_assert_eq!(&rec.value, v);
            prop_assert_eq!(&rec.headers, hs);
        }
    }

    #[test]
    fn retain_records_keeps_exactly_the_chosen_records(
        inputs in proptest::collection::vec(record(), 1..20),
        keep in proptest::collection::vec(any::<bool>(), 20),
        producer in producer(),
        base in 0..i64::MAX / 2,
        epoch in any::<i32>(),
    ) {
        let mut bytes = build(&inputs, producer);
        set_base_offset(&mut bytes, base).unwrap();
        set_partition_leader_epoch(&mut bytes, epoch).unwrap();
        let before = records(&bytes).unwrap();
        let chosen = |offset: i64| keep[(offset - base) as usize];
        let out = retain_records(&bytes, |r| chosen(r.offset)).unwrap();
        let expected: Vec<_> = before.iter().filter(|r| chosen(r.offset)).cloned().collect();
        let Some(out) = out else {
            prop_assert_eq!(expected.len(), before.len());
            return Ok(());
        };
        let (old, new) = (parse_header(&bytes).unwrap(), verify_crc(&out).unwrap());
        prop_assert_eq!(new.records_count as usize, expected.len());
        prop_assert_eq!(new.total_len(), out.len());
        prop_assert_eq!(
            (new.base_offset, new.partition_leader_epoch, new.attributes, new.last_offset_delta),
            (old.base_offset, old.partition_leader_epoch, old.attributes, old.last_offset_delta)
        );
        prop_assert_eq!(
            (new.base_timestamp, new.max_timestamp, new.producer_id, new.producer_epoch, new.base_sequence),
            (old.base_timestamp, old.max_timestamp, old.producer_id, old.producer_epoch, old.base_sequence)
        );
        prop_assert_eq!(records(&out).unwrap(), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        poke(&b);
    }

    #[test]
    fn arbitrary_bytes_with_v2_magic_never_panic(
        mut b in proptest::collection::vec(any::<u8>(), 61..400),
        len_ok in any::<bool>(),
    ) {
        // Random bytes almost never pass the magic and length checks; force
        // them so the deeper paths run too.
        b[16] = 2;
        if len_ok {
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
        }
        recrc(&mut b);
        poke(&b);
    }

    #[test]
    fn mutated_valid_batches_never_panic(
        mut b in valid_batch(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        for (at, byte) in edits {
            let i = at.index(b.len());
            b[i] = byte;
        }
        recrc(&mut b);
        poke(&b);
    }

    #[test]
    fn truncation_is_an_error_not_a_panic(b in valid_batch(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(b.len()); // 0..len: always strictly shorter
        let short = &b[..cut];
        prop_assert!(validate(short, usize::MAX).is_err());
        prop_assert!(records(short).is_err());
        let framed: Vec<_> = split_batches(short).collect();
        if cut == 0 {
            prop_assert!(framed.is_empty());
        } else {
            prop_assert_eq!(framed.len(), 1);
            prop_assert!(framed[0].is_err());
        }
    }

    #[test]
    fn too_large_is_reported_first(
        b in proptest::collection::vec(any::<u8>(), 1..300),
        max in any::<prop::sample::Index>(),
    ) {
        let max = max.index(b.len()); // strictly below b.len()
        prop_assert_eq!(validate(&b, max), Err(BatchError::TooLarge { size: b.len(), max }));
    }

    #[test]
    fn split_recovers_every_batch(batches in proptest::collection::vec(valid_batch(), 0..5)) {
        let all = batches.concat();
        let got: Vec<&[u8]> = split_batches(&all).map(|r| r.unwrap()).collect();
        prop_assert_eq!(got.len(), batches.len());
        for (g, b) in got.iter().zip(&batches) {
            prop_assert_eq!(*g, &b[..]);
        }
    }

    #[test]
    fn partition_is_in_range(key in proptest::collection::vec(any::<u8>(), 0..64), n in 1u32..10_000) {
        prop_assert!(partition_for_key(&key, n) < n);
    }
}
