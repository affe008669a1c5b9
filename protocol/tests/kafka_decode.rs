//! `meshlog_protocol::kafka::decode_request` decodes what real clients send, exactly as
//! kafka-protocol would, for every accepted (API, version); refuses what it does not
//! serve; and refuses the 26-byte Metadata frame that aborts kafka-protocol alone.

mod kafka_support;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestKind};
use meshlog_protocol::kafka::{accepted_versions, decode_request, DecodeError};

#[test]
fn every_accepted_version_round_trips() {
    let samples = kafka_support::samples();
    assert_eq!(samples.len(), 136, "one sample per accepted (api, version)");
    for (key, v, req) in samples {
        let body = kafka_support::encode(&req, v);
        let decoded = decode_request(key as i16, v, body.clone())
            .unwrap_or_else(|e| panic!("{key:?} v{v} ({} bytes): {e}", body.len()));
        assert_eq!(decoded, req, "{key:?} v{v}");
    }
}

#[test]
fn accepted_versions_are_ones_the_crate_knows() {
    for (key, min, max) in accepted_versions() {
        let crate_range = key.valid_versions();
        assert!(crate_range.min <= min && max <= crate_range.max, "{key:?} {min}..={max}");
    }
}

#[test]
fn produce_keeps_the_records_as_the_very_bytes_sent() {
    let (key, v, req) = kafka_support::samples()
        .into_iter()
        .find(|(key, v, _)| *key == ApiKey::Produce && *v == 9)
        .expect("a Produce v9 sample");
    let body = kafka_support::encode(&req, v);
    let Ok(kafka_protocol::messages::RequestKind::Produce(p)) =
        decode_request(key as i16, v, body.clone())
    else {
        panic!("Produce v9 decodes");
    };
    let records = p.topic_data[0].partition_data[0].records.clone().expect("records");
    let inside = body.as_ptr_range();
    assert!(inside.contains(&records.as_ptr()), "records are a slice of the frame, not a copy");
    meshlog_protocol::batch::validate(&records, 1 << 20).expect("the batch is intact");
}

/// The frame of KAFKA.md: size 22, Metadata (3) v4, correlation id 1, client id
/// "rdkafka", then a topics count of 0x7fffffff and allow_auto_topic_creation. On
/// kafka-protocol alone it ends the process asking for 154618822584 bytes.
const HOSTILE_METADATA_V4: [u8; 26] = [
    0, 0, 0, 22, 0, 3, 0, 4, 0, 0, 0, 1, 0, 7, b'r', b'd', b'k', b'a', b'f', b'k', b'a', 0x7f,
    0xff, 0xff, 0xff, 1,
];

#[test]
fn the_26_byte_metadata_frame_is_refused() {
    let mut frame = Bytes::from_static(&HOSTILE_METADATA_V4);
    assert_eq!(frame.get_i32() as usize, frame.len());
    let (api_key, version) = (frame.get_i16(), frame.get_i16());
    let _correlation_id = frame.get_i32();
    let client_id_len = frame.get_i16() as usize;
    frame.advance(client_id_len);
    assert_eq!((api_key, version, frame.len()), (3, 4, 5));
    let err = decode_request(api_key, version, frame).expect_err("refused");
    assert_eq!(err, DecodeError::LengthTooLarge { length: 0x7fff_ffff, remaining: 1 });
}

#[test]
fn what_is_not_served_is_unsupported() {
    let cases = [(3, 10), (3, -1), (0, 2), (0, 13), (1, 3), (18, 5), (22, 5), (11, 8), (999, 0)];
    for (api_key, version) in cases {
        let err = decode_request(api_key, version, Bytes::new()).expect_err("refused");
        assert_eq!(err, DecodeError::UnsupportedVersion { api_key, version });
    }
    let served: Vec<_> = accepted_versions().map(|(key, _, _)| key).collect();
    assert!(!served.contains(&ApiKey::DescribeAcls) && served.contains(&ApiKey::Fetch));
}

#[test]
fn trailing_bytes_are_ignored_as_kafka_does_and_negative_lengths_are_invalid() {
    // Heartbeat v0: group "g", generation 1, member "m", then one byte too many.
    let body = b"\0\x01g\0\0\0\x01\0\x01m!";
    let with = decode_request(12, 0, Bytes::from_static(body)).expect("the extra byte is ignored");
    let without = decode_request(12, 0, Bytes::copy_from_slice(&body[..body.len() - 1])).unwrap();
    assert_eq!(with, without);
    // librdkafka 2.12's Metadata v9 for every topic: a 4-byte zero as the compact topics
    // array, then allow_auto_topic_creation, the two include flags and empty tags.
    let all_topics =
        decode_request(3, 9, Bytes::from_static(&[0, 0, 0, 0, 1, 0, 0, 0])).expect("accepted");
    match all_topics {
        RequestKind::Metadata(m) => assert_eq!(m.topics, None, "a null array: every topic"),
        other => panic!("{other:?}"),
    }
    let negative = b"\xff\xfeg\0\0\0\x01\0\x01m";
    let err = decode_request(12, 0, Bytes::from_static(negative)).expect_err("refused");
    assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
}

#[test]
fn every_strict_prefix_of_a_valid_request_is_refused() {
    for (key, v, req) in kafka_support::samples() {
        let body = kafka_support::encode(&req, v);
        for cut in 0..body.len() {
            let res = decode_request(key as i16, v, body.slice(..cut));
            assert!(res.is_err(), "{key:?} v{v} cut at {cut} of {}", body.len());
        }
    }
}
