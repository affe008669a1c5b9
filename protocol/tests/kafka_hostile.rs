//! No Kafka frame can hurt the node: for every accepted (API, version), random bytes,
//! valid requests with bytes overwritten anywhere, and valid requests with each length
//! field replaced by a hostile value never panic `decode_request`, never make it
//! allocate in all more than 64 bytes per input byte (twice the budget the walk
//! charges), and hostile lengths are refused.
//!
//! Allocations are seen through a counting global allocator: every byte this thread
//! asks for since the last reset (per thread, since `cargo test` runs the tests of
//! this file side by side in one process).
#![allow(unsafe_code)] // the counting allocator: GlobalAlloc is an unsafe trait

mod kafka_support;
mod props_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use meshlog_protocol::kafka::{decode_request, length_fields, DecodeError, LengthField};
use proptest::prelude::*;

struct Counting;

thread_local! {
    // const-initialised and without Drop: using them never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    let _ = TOTAL.try_with(|total| total.set(total.get().saturating_add(size)));
}

fn reset() {
    LARGEST.with(|largest| largest.set(0));
    TOTAL.with(|total| total.set(0));
}

fn largest() -> usize {
    LARGEST.with(Cell::get)
}

/// Every byte asked for since the reset (frees not subtracted).
fn total() -> usize {
    TOTAL.with(Cell::get)
}

// SAFETY: every method forwards to `System` unchanged; it only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most decoding `n` input bytes may allocate in all: twice the budget the walk
/// charges (`codec::decode_budget`, 32 per input byte), the margin for what the walk's
/// charges leave out (error messages, the map of a struct's first tagged field).
const BYTES_PER_INPUT_BYTE: usize = 64;
/// Plus a constant: with RUST_BACKTRACE set, kafka-protocol's anyhow errors capture a
/// backtrace (about 36 KiB here), bounded by the stack's depth, not by the input.
const ALLOCATION_SLACK: usize = 128 * 1024;

fn bound(input_len: usize) -> usize {
    input_len * BYTES_PER_INPUT_BYTE + ALLOCATION_SLACK
}

/// Decodes while watching allocations; fails the test if any one exceeds the bound.
fn decode_watched(key: ApiKey, version: i16, body: &[u8]) -> Result<(), DecodeError> {
    let input = Bytes::copy_from_slice(body);
    reset();
    let result = decode_request(key as i16, version, input).map(drop);
    let (largest, total) = (largest(), total());
    assert!(
        total <= bound(body.len()),
        "{key:?} v{version}: allocated {total} bytes (largest {largest}) for {} input bytes \
         {:02x?} ({result:?})",
        body.len(),
        &body[..body.len().min(64)]
    );
    result
}

fn encoded_samples() -> Vec<(ApiKey, i16, Vec<u8>)> {
    kafka_support::samples()
        .into_iter()
        .map(|(key, v, req)| (key, v, kafka_support::encode(&req, v).to_vec()))
        .collect()
}

/// Hostile values for a length field of this encoding (replacing its bytes).
fn hostile(kind: LengthField) -> Vec<Vec<u8>> {
    match kind {
        LengthField::Int16 => vec![vec![0x7f, 0xff], vec![0xff, 0xfe], vec![0x80, 0x00]],
        LengthField::Int32 => vec![
            vec![0x7f, 0xff, 0xff, 0xff],
            vec![0xff, 0xff, 0xff, 0xfe],
            vec![0x80, 0x00, 0x00, 0x00],
            vec![0x00, 0x10, 0x00, 0x00],
        ],
        LengthField::Varint => vec![
            vec![0xff, 0xff, 0xff, 0xff, 0x07],
            vec![0x80, 0x80, 0x80, 0x80, 0x08],
            vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            vec![0xff; 6],
            vec![0x80, 0x80, 0x04],
        ],
    }
}

/// The width of the length field at `pos` in `body`.
fn width(kind: LengthField, body: &[u8], pos: usize) -> usize {
    match kind {
        LengthField::Int16 => 2,
        LengthField::Int32 => 4,
        LengthField::Varint => 1 + body[pos..].iter().take_while(|b| **b & 0x80 != 0).count(),
    }
}

#[test]
fn every_length_field_replaced_by_a_hostile_value_is_refused() {
    let mut checked = 0;
    for (key, v, body) in encoded_samples() {
        let fields = length_fields(key as i16, v, &body).expect("a valid sample walks");
        assert!(body.is_empty() || !fields.is_empty(), "{key:?} v{v} has length fields");
        for (pos, kind) in fields {
            let end = pos + width(kind, &body, pos);
            for value in hostile(kind) {
                let mut evil = body[..pos].to_vec();
                evil.extend_from_slice(&value);
                evil.extend_from_slice(&body[end..]);
                let res = decode_watched(key, v, &evil);
                assert!(res.is_err(), "{key:?} v{v}: {value:x?} at {pos} accepted");
                checked += 1;
            }
        }
    }
    assert!(checked > 3000, "only {checked} hostile variants");
}

#[test]
fn overwriting_any_offset_never_panics_or_over_allocates() {
    let patterns: [&[u8]; 5] = [
        &[0x7f, 0xff, 0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xfe],
        &[0x7f, 0xff],
        &[0xff, 0xff, 0xff, 0xff, 0x07],
        &[0x00],
    ];
    for (key, v, body) in encoded_samples() {
        for pos in 0..body.len() {
            for pattern in patterns {
                let mut evil = body.clone();
                let n = pattern.len().min(body.len() - pos);
                evil[pos..pos + n].copy_from_slice(&pattern[..n]);
                let _ = decode_watched(key, v, &evil);
            }
        }
    }
}

#[test]
fn the_allocation_check_sees_what_the_crate_alone_would_do() {
    // Metadata v4 claiming a million topics in 5 bytes: the crate alone reserves
    // room for them all before finding the body truncated. (0x7fffffff would abort.)
    let mut body = Bytes::from_static(&[0x00, 0x0f, 0x42, 0x40, 1]);
    reset();
    let res = kafka_protocol::messages::RequestKind::decode(ApiKey::Metadata, &mut body, 4);
    let largest = largest();
    assert!(res.is_err());
    assert!(largest > bound(5) * 100, "the crate reserved only {largest} bytes");
    let err =
        decode_watched(ApiKey::Metadata, 4, &[0x00, 0x0f, 0x42, 0x40, 1]).expect_err("refused");
    assert!(matches!(err, DecodeError::LengthTooLarge { length: 1_000_000, .. }), "{err}");
}

#[test]
fn many_tiny_elements_with_tagged_fields_are_over_budget() {
    // Metadata v9, 100,000 topics of 4 bytes each (an empty name and one empty unknown
    // tagged field): the crate alone would reserve 7.2 MB of topics and a map node per
    // topic, about 48 MB for 400 KB.
    let count = 100_000;
    let topics = |topic: &[u8]| {
        let mut body = uvarint(count + 1);
        for _ in 0..count {
            body.extend_from_slice(topic);
        }
        body.extend_from_slice(&[1, 0, 0, 0]); // allow auto-creation, two booleans, no tags
        body
    };
    let err = decode_watched(ApiKey::Metadata, 9, &topics(&[0x01, 0x01, 0x05, 0x00]))
        .expect_err("refused");
    assert!(matches!(err, DecodeError::OverBudget { .. }), "{err}");
    // The same number of honest topics (a one-letter name, no tagged field) decodes.
    assert!(decode_watched(ApiKey::Metadata, 9, &topics(&[0x02, b'a', 0x00])).is_ok());
}

fn uvarint(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

fn any_accepted() -> impl Strategy<Value = (ApiKey, i16)> {
    let pairs: Vec<_> = kafka_support::samples().into_iter().map(|(k, v, _)| (k, v)).collect();
    proptest::sample::select(pairs)
}

/// Cases per property in the normal suite; `scripts/props.sh` sets `PROPTEST_CASES`.
const CI_CASES: u32 = 4000;

proptest! {
    #![proptest_config(props_support::cases(CI_CASES))]

    #[test]
    fn random_bytes_never_panic_or_over_allocate(
        (key, v) in any_accepted(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = decode_watched(key, v, &body);
    }

    #[test]
    fn mutated_requests_never_panic_or_over_allocate(
        index in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<proptest::sample::Index>(),
    ) {
        static SAMPLES: OnceLock<Vec<(ApiKey, i16, Vec<u8>)>> = OnceLock::new();
        let samples = SAMPLES.get_or_init(encoded_samples);
        let (key, v, mut body) = samples[index.index(samples.len())].clone();
        for (at, byte) in edits {
            let i = at.index(body.len().max(1));
            if let Some(b) = body.get_mut(i) {
                *b = byte;
            }
        }
        let keep = cut.index(body.len() + 1);
        let _ = decode_watched(key, v, &body[..keep.max(body.len() / 2)]);
    }
}
