//! Properties of the wire format: every message survives a round trip through a frame,
//! and no sequence of bytes can panic a decoder or make it allocate beyond its bound.

mod props_support;

use meshlog_protocol::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, ClientResult, FetchRequest, FetchResponse, PeerRequest,
    ProduceRequest, ProduceResponse,
};
use meshlog_protocol::types::{Acks, OffsetSpec};
use meshlog_protocol::{Epoch, ErrorCode, WireError};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Records the largest single allocation made on this thread while armed, to check
/// decode bounds (per thread, so tests running in parallel do not interfere).
struct PeakAlloc;
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[allow(unsafe_code)] // a counting allocator: the test measures what decoding allocates
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::All)]
}

fn request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (
            "[a-z.]{0,20}",
            any::<u32>(),
            any::<u16>(),
            prop::collection::btree_map("[a-z.]{1,8}", "[0-9]{0,4}", 0..4)
        )
            .prop_map(|(name, partitions, replication_factor, config)| {
                ClientRequest::CreateTopic { name, partitions, replication_factor, config }
            }),
        Just(ClientRequest::ListTopics),
        "[a-z]{0,12}".prop_map(|name| ClientRequest::DescribeTopic { name }),
        (
            "[a-z]{0,12}",
            any::<u32>(),
            acks(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(topic, partition, acks, timeout_ms, batch)| {
                ClientRequest::Produce(ProduceRequest {
                    topic,
                    partition,
                    acks,
                    timeout_ms,
                    leader_epoch: None,
                    batch,
                })
            }),
        ("[a-z]{0,12}", any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(topic, partition, offset, max_bytes, max_wait_ms)| {
                let leader_epoch = (offset % 3 == 0).then_some(Epoch::new(offset / 3));
                ClientRequest::Fetch(FetchRequest {
                    topic,
                    partition,
                    offset,
                    max_bytes,
                    max_wait_ms,
                    leader_epoch,
                })
            }
        ),
        ("[a-z]{0,12}", any::<u32>(), any::<i64>()).prop_map(|(topic, partition, ts)| {
            ClientRequest::ListOffsets { topic, partition, spec: OffsetSpec::Timestamp(ts) }
        }),
    ]
}

fn result() -> impl Strategy<Value = ClientResult> {
    prop_oneof![
        (any::<Option<u64>>(), any::<u32>()).prop_map(|(base_offset, record_count)| {
            Ok(ClientResponse::Produced(ProduceResponse {
                base_offset,
                record_count,
                accepted_locally: false,
                duplicate: false,
            }))
        }),
        (any::<u64>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..512)).prop_map(
            |(high_watermark, log_start_offset, records)| {
                Ok(ClientResponse::Fetched(FetchResponse {
                    high_watermark,
                    log_start_offset,
                    records,
                }))
            }
        ),
        any::<u64>().prop_map(|offset| Ok(ClientResponse::Offset { offset })),
        (prop::sample::select(ErrorCode::ALL.to_vec()), ".{0,40}")
            .prop_map(|(code, message)| Err(WireError::new(code, message))),
    ]
}

/// Cases per property in the normal suite; `scripts/props.sh` sets `PROPTEST_CASES`.
const CI_CASES: u32 = 512;

proptest! {
    #![proptest_config(props_support::cases(CI_CASES))]

    #[test]
    fn requests_round_trip(req in request()) {
        let f = frame::encode_frame(&req, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let (back, used): (ClientRequest, usize) = frame::decode_frame(&f, DEFAULT_MAX_FRAME_BYTES).unwrap();
        prop_assert_eq!(used, f.len());
        prop_assert_eq!(&back, &req);
        let peer = PeerRequest::Forward(req);
        let f = frame::encode_frame(&peer, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let (back, _): (PeerRequest, usize) = frame::decode_frame(&f, DEFAULT_MAX_FRAME_BYTES).unwrap();
        prop_assert_eq!(back, peer);
    }

    #[test]
    fn results_round_trip(res in result()) {
        let f = frame::encode_frame(&res, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let (back, _): (ClientResult, usize) = frame::decode_frame(&f, DEFAULT_MAX_FRAME_BYTES).unwrap();
        prop_assert_eq!(back, res);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overallocate(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        LARGEST.with(|l| l.set(0));
        ARMED.with(|a| a.set(true));
        let _ = frame::decode_frame::<ClientRequest>(&bytes, DEFAULT_MAX_FRAME_BYTES);
        let _ = frame::decode_frame::<ClientResult>(&bytes, DEFAULT_MAX_FRAME_BYTES);
        let _ = frame::decode_frame::<PeerRequest>(&bytes, DEFAULT_MAX_FRAME_BYTES);
        // Also decode the raw bytes as a frame body (no length prefix to stop them).
        let mut body = vec![frame::WIRE_VERSION];
        body.extend_from_slice(&bytes);
        let _ = frame::decode_body::<ClientRequest>(&body);
        let _ = frame::decode_body::<ClientResult>(&body);
        ARMED.with(|a| a.set(false));
        let largest = LARGEST.with(|l| l.get());
        // The codec's bound: 64 KiB for inputs this small, whatever lengths they claim.
        prop_assert!(largest <= 64 << 10, "a {}-byte input allocated {} bytes at once", bytes.len(), largest);
    }

    #[test]
    fn truncated_frames_are_errors(req in request(), cut in any::<prop::sample::Index>()) {
        let f = frame::encode_frame(&req, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let cut = cut.index(f.len());
        prop_assert!(frame::decode_frame::<ClientRequest>(&f[..cut], DEFAULT_MAX_FRAME_BYTES).is_err());
    }
}
