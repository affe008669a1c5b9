//! Kafka's wire format at the listener: the frame caps checked before a request is
//! allocated, the request header (parsed here, without allocating on any length the
//! client sends), [`decode_request`] (the ONE place a request body is decoded) and the
//! response frame.
//!
//! `kafka-protocol` 0.18 decodes an array by calling `Vec::with_capacity` on the length
//! the client wrote, so a tiny frame claiming 0x7fffffff elements would make the
//! allocator abort the process (not a panic: it cannot be caught). The frame caps below
//! bound only the frame; [`decode_request`] therefore hands every body to
//! [`meshlog_protocol::kafka::decode_request`], which walks it first and refuses any
//! length the body cannot hold (and any decode over its memory budget) before the crate
//! allocates.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

/// The fixed part of every request header: api key, api version, correlation id.
pub const HEADER_PREFIX_LEN: usize = 8;
/// The largest request of an API other than Produce (Metadata for thousands of topics,
/// a commit of thousands of offsets fit).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// The largest request of an API this listener does not serve (it is answered or the
/// connection closed, so only the header matters).
pub const MAX_UNSERVED_REQUEST_BYTES: usize = 64 << 10;

/// Why a request could not be decoded. The connection it came on is closed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The header or body does not parse at the version it claims.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// The version claimed.
        version: i16,
        /// What did not parse.
        reason: String,
    },
    /// The version is outside what the decoder knows for this API.
    #[error("{api:?} v{version} is not a version this listener decodes")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version claimed.
        version: i16,
    },
}

/// The frame caps: Produce requests up to `produce_bytes`, other served APIs up to
/// [`MAX_REQUEST_BYTES`], anything else up to [`MAX_UNSERVED_REQUEST_BYTES`].
#[derive(Debug, Clone, Copy)]
pub struct FrameCaps {
    /// The largest Produce request (the node's `max_frame_bytes`).
    pub produce_bytes: usize,
}

impl FrameCaps {
    /// The largest frame of any API: checked on the length prefix alone.
    pub fn global(&self) -> usize {
        self.produce_bytes.max(MAX_REQUEST_BYTES)
    }

    /// The largest frame of `api_key` (a raw key: unknown keys get the smallest cap).
    pub fn of(&self, api_key: i16, served: bool) -> usize {
        match ApiKey::try_from(api_key) {
            Ok(ApiKey::Produce) => self.produce_bytes,
            Ok(_) if served => MAX_REQUEST_BYTES,
            _ => MAX_UNSERVED_REQUEST_BYTES,
        }
    }
}

/// Check a frame's length prefix against the global cap, before anything is read or
/// allocated: `None` means close the connection.
pub fn frame_len(prefix: [u8; 4], caps: FrameCaps) -> Option<usize> {
    let len = i32::from_be_bytes(prefix);
    let len = usize::try_from(len).ok()?;
    (HEADER_PREFIX_LEN..=caps.global()).contains(&len).then_some(len)
}

/// The request header, as this listener uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The raw api key (it may name no API this build knows).
    pub api_key: i16,
    /// The version the body is in.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's name, if sent.
    pub client_id: Option<String>,
}

/// The first eight bytes of a frame: api key, version, correlation id.
pub fn header_prefix(prefix: [u8; HEADER_PREFIX_LEN]) -> (i16, i16, i32) {
    let mut b = &prefix[..];
    (b.get_i16(), b.get_i16(), b.get_i32())
}

/// Parse the rest of a request header (client id, and in header v2 the tagged fields,
/// skipped) off the front of `rest`. Only lengths within `rest` are honoured, so
/// nothing is allocated on a hostile length.
pub fn parse_header(prefix: (i16, i16, i32), rest: &mut Bytes) -> Result<Header, String> {
    let (api_key, api_version, correlation_id) = prefix;
    let header_version =
        ApiKey::try_from(api_key).map(|k| k.request_header_version(api_version)).unwrap_or(1);
    let mut header = Header { api_key, api_version, correlation_id, client_id: None };
    if header_version < 1 {
        return Ok(header);
    }
    let len = take(rest, 2)?.get_i16();
    if len >= 0 {
        let id = take(rest, len as usize)?;
        header.client_id = Some(String::from_utf8_lossy(&id).into_owned());
    }
    if header_version >= 2 {
        let fields = uvarint(rest)?;
        for _ in 0..fields {
            let _tag = uvarint(rest)?;
            let size = uvarint(rest)?;
            take(rest, size as usize)?;
        }
    }
    Ok(header)
}

fn take(b: &mut Bytes, n: usize) -> Result<Bytes, String> {
    if b.len() < n {
        return Err(format!("request header cut short: {n} bytes wanted, {} left", b.len()));
    }
    Ok(b.split_to(n))
}

fn uvarint(b: &mut Bytes) -> Result<u32, String> {
    let mut v: u32 = 0;
    for i in 0..5 {
        let byte = take(b, 1)?[0];
        v |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("request header varint longer than 5 bytes".into())
}

/// Decode a request body of `api_key` at `version`. Every request the listener serves
/// is decoded here and nowhere else (see the module docs for the known hazard).
pub fn decode_request(api_key: ApiKey, version: i16, body: Bytes) -> Result<RequestKind, DecodeError> {
    use meshlog_protocol::kafka::DecodeError as Refused;
    meshlog_protocol::kafka::decode_request(api_key as i16, version, body).map_err(|e| match e {
        Refused::UnsupportedVersion { .. } => DecodeError::UnsupportedVersion { api: api_key, version },
        other => DecodeError::Malformed { api: api_key, version, reason: other.to_string() },
    })
}

/// A response frame: length, response header (at the API's header version), body.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("encoding the {api_key:?} response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding the {api_key:?} v{version} response: {e}"))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| "response larger than 2 GiB".to_string())?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: FrameCaps = FrameCaps { produce_bytes: 4 << 20 };

    #[test]
    fn lengths_outside_the_caps_close_the_connection_before_any_allocation() {
        assert_eq!(frame_len(20i32.to_be_bytes(), CAPS), Some(20));
        assert_eq!(frame_len((4i32 << 20).to_be_bytes(), CAPS), Some(4 << 20));
        for bad in [-1i32, 0, 7, (4 << 20) + 1, i32::MAX] {
            assert_eq!(frame_len(bad.to_be_bytes(), CAPS), None, "{bad}");
        }
        assert_eq!(CAPS.of(ApiKey::Produce as i16, true), 4 << 20);
        assert_eq!(CAPS.of(ApiKey::Metadata as i16, true), MAX_REQUEST_BYTES);
        assert_eq!(CAPS.of(ApiKey::CreateTopics as i16, false), MAX_UNSERVED_REQUEST_BYTES);
        assert_eq!(CAPS.of(-7, false), MAX_UNSERVED_REQUEST_BYTES);
    }

    fn header_bytes(
        api: ApiKey,
        version: i16,
        client: Option<&str>,
        tagged: &[u8],
    ) -> (i16, i16, i32, Bytes) {
        let mut b = BytesMut::new();
        match client {
            Some(c) => {
                b.put_i16(c.len() as i16);
                b.put_slice(c.as_bytes());
            }
            None => b.put_i16(-1),
        }
        b.put_slice(tagged);
        b.put_slice(b"BODY");
        (api as i16, version, 42, b.freeze())
    }

    #[test]
    fn headers_v1_and_v2_parse_and_leave_the_body() {
        let (k, v, c, mut rest) = header_bytes(ApiKey::Metadata, 4, Some("rdkafka"), &[]);
        let h = parse_header((k, v, c), &mut rest).unwrap();
        assert_eq!((h.correlation_id, h.client_id.as_deref()), (42, Some("rdkafka")));
        assert_eq!(&rest[..], b"BODY");
        // Metadata v9 is flexible: header v2 with one tagged field of 2 bytes.
        let (k, v, c, mut rest) = header_bytes(ApiKey::Metadata, 9, None, &[1, 5, 2, 0xaa, 0xbb]);
        let h = parse_header((k, v, c), &mut rest).unwrap();
        assert_eq!(h.client_id, None);
        assert_eq!(&rest[..], b"BODY");
    }

    #[test]
    fn hostile_header_lengths_are_errors_not_allocations() {
        let mut rest = Bytes::from_static(&[0x7f, 0xff, b'a']);
        assert!(parse_header((ApiKey::Metadata as i16, 4, 1), &mut rest).is_err());
        // A tagged field claiming 2^28 bytes in a flexible header.
        let mut rest = Bytes::from_static(&[0xff, 0xff, 1, 0, 0xff, 0xff, 0xff, 0x7f]);
        assert!(parse_header((ApiKey::Metadata as i16, 9, 1), &mut rest).is_err());
        let mut rest = Bytes::from_static(&[0xff, 0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(parse_header((ApiKey::Metadata as i16, 9, 1), &mut rest).is_err());
    }

    #[test]
    fn decode_refuses_versions_the_crate_does_not_know() {
        let e = decode_request(ApiKey::Metadata, 99, Bytes::new()).unwrap_err();
        assert!(matches!(e, DecodeError::UnsupportedVersion { version: 99, .. }), "{e}");
        let e = decode_request(ApiKey::Metadata, 4, Bytes::from_static(&[0, 0])).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed { .. }), "{e}");
    }

    #[test]
    fn a_body_claiming_two_billion_topics_is_refused_before_anything_is_allocated() {
        // Metadata v4: topics = 0x7fffffff, allow_auto_topic_creation = true. The crate
        // alone would reserve ~150 GB for it and abort the process.
        let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1]);
        let e = decode_request(ApiKey::Metadata, 4, body).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed { .. }), "{e}");
    }
}
