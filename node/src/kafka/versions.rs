//! Which Kafka APIs and versions the listener serves, and the ApiVersions answer that
//! says so (with KIP-511's fallback: a client asking in a version newer than ours gets
//! a v0 answer with UNSUPPORTED_VERSION and our list, and asks again in one we know).
//!
//! A request for an API or version not served is answered with UNSUPPORTED_VERSION
//! where the response can say so ([`unsupported`]).
//!
//! Caps follow the Kafka brief (shared/KAFKA.md): Produce and Fetch <= 12, ListOffsets
//! and OffsetFetch <= 7 keep topic ids (KIP-516) out; every client tried works with
//! them. Metadata stops at 8: librdkafka (2.12) asks for all topics at v9 with a
//! four-byte array count where one varint belongs (Java's broker ignores the trailing
//! byte; the walk of `protocol::kafka` refuses it), so its admin client's full
//! listing was refused; v1-8 carry the same fields without that mistake.
//! SaslHandshake 0-1 is listed (librdkafka requires v0 in the list before it uses
//! SASL at all, and v1 with SaslAuthenticate for KIP-152's framing); after a v0
//! handshake the SCRAM messages come as raw length-prefixed tokens (`sasl.rs`).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

/// Every API served, with the lowest and highest version.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 9),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Kafka's UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// The version range served for a raw api key, if it is served at all.
pub fn served(api_key: i16) -> Option<(i16, i16)> {
    SERVED.iter().find(|(k, _, _)| *k as i16 == api_key).map(|&(_, lo, hi)| (lo, hi))
}

/// Whether `version` of `api_key` is served.
pub fn is_served(api_key: i16, version: i16) -> bool {
    served(api_key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
}

/// A default response of `$kind` with UNSUPPORTED_VERSION in its top-level error code.
macro_rules! refusals {
    ($api:expr, $($kind:ident => $ty:ident),* $(,)?) => {
        match $api {
            $(ApiKey::$kind => {
                let mut r = kafka_protocol::messages::$ty::default();
                r.error_code = UNSUPPORTED_VERSION;
                Some(ResponseKind::$kind(r))
            })*
            _ => None,
        }
    };
}

/// The answer to `api` in a `version` not served: UNSUPPORTED_VERSION in the response's
/// top-level error code, for the APIs whose response has one and a version the encoder
/// knows (it may still not fit that version: then the caller closes the connection).
/// `None`: no such answer exists (the connection is closed, as Kafka does).
pub fn unsupported(api: ApiKey, version: i16) -> Option<ResponseKind> {
    let known = api.valid_versions();
    if version < known.min || version > known.max {
        return None;
    }
    refusals!(api,
        FindCoordinator => FindCoordinatorResponse,
        JoinGroup => JoinGroupResponse,
        Heartbeat => HeartbeatResponse,
        LeaveGroup => LeaveGroupResponse,
        SyncGroup => SyncGroupResponse,
        ListGroups => ListGroupsResponse,
        SaslHandshake => SaslHandshakeResponse,
        SaslAuthenticate => SaslAuthenticateResponse,
        InitProducerId => InitProducerIdResponse,
        DescribeCluster => DescribeClusterResponse,
        DescribeAcls => DescribeAclsResponse,
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        EndTxn => EndTxnResponse,
        ListTransactions => ListTransactionsResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
        ElectLeaders => ElectLeadersResponse,
        OffsetDelete => OffsetDeleteResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
        PushTelemetry => PushTelemetryResponse,
        Fetch => FetchResponse,
        Metadata => MetadataResponse,
        OffsetFetch => OffsetFetchResponse,
    )
}

/// The ApiVersions answer to a request in `version`, and the version to encode it in:
/// the same one if we know it, else v0 with UNSUPPORTED_VERSION (KIP-511).
pub fn api_versions(version: i16) -> (ApiVersionsResponse, i16) {
    let keys = SERVED
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default().with_api_key(k as i16).with_min_version(lo).with_max_version(hi)
        })
        .collect();
    let mut r = ApiVersionsResponse::default().with_api_keys(keys);
    if is_served(ApiKey::ApiVersions as i16, version) {
        return (r, version);
    }
    r.error_code = UNSUPPORTED_VERSION;
    (r, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::codec;
    use bytes::Buf;
    use kafka_protocol::messages::ResponseKind;

    #[test]
    fn every_served_range_is_within_what_the_decoder_knows() {
        for &(k, lo, hi) in SERVED {
            let known = k.valid_versions();
            assert!(known.min <= lo && hi <= known.max && lo <= hi, "{k:?} {lo}-{hi}");
        }
        assert!(is_served(ApiKey::Metadata as i16, 9));
        assert!(!is_served(ApiKey::Metadata as i16, 10), "topic ids (KIP-516) stay out");
        assert!(!is_served(ApiKey::CreateTopics as i16, 8));
        assert!(!is_served(-3, 0));
        // Every version served is one the hostile-safe walk accepts.
        let walked: Vec<_> = meshlog_protocol::kafka::accepted_versions().collect();
        for &(k, lo, hi) in SERVED {
            let ok = walked.iter().any(|&(w, wlo, whi)| w == k && wlo <= lo && hi <= whi);
            assert!(ok, "{k:?} {lo}-{hi} is not covered by protocol::kafka's walk");
        }
    }

    #[test]
    fn unserved_versions_get_unsupported_version_where_the_response_can_say_so() {
        // SaslHandshake v1: an error code and a mechanism list, nothing else.
        let body = unsupported(ApiKey::SaslHandshake, 1).expect("an answer");
        let frame = codec::encode_response(9, ApiKey::SaslHandshake, 1, &body).unwrap();
        assert_eq!(&frame[4..8], &9i32.to_be_bytes(), "correlation id kept");
        assert_eq!(&frame[8..10], &UNSUPPORTED_VERSION.to_be_bytes());
        // Flexible versions too (header v1 with its tagged fields).
        let body = unsupported(ApiKey::InitProducerId, 4).expect("an answer");
        assert!(codec::encode_response(9, ApiKey::InitProducerId, 4, &body).is_ok());
        // Produce answers per partition only; versions the encoder does not know at all.
        assert!(unsupported(ApiKey::Produce, 2).is_none());
        assert!(unsupported(ApiKey::SaslHandshake, 99).is_none());
    }

    #[test]
    fn a_version_we_do_not_know_gets_a_v0_answer_with_our_list() {
        let (r, v) = api_versions(4);
        assert_eq!((r.error_code, v), (0, 4));
        let (r, v) = api_versions(127);
        assert_eq!((r.error_code, v), (UNSUPPORTED_VERSION, 0));
        // On the wire: response header v0 (correlation id only), then the v0 body,
        // which a client that only knows v0 reads back.
        let frame = codec::encode_response(7, ApiKey::ApiVersions, v, &ResponseKind::ApiVersions(r)).unwrap();
        // v0 body: error code, then an array of (key, min, max), 6 bytes each.
        let mut body = frame.slice(8..);
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
        assert_eq!(body.get_i16(), UNSUPPORTED_VERSION);
        assert_eq!(body.get_i32(), SERVED.len() as i32);
        let keys: Vec<(i16, i16, i16)> =
            (0..SERVED.len()).map(|_| (body.get_i16(), body.get_i16(), body.get_i16())).collect();
        assert!(keys.contains(&(ApiKey::Metadata as i16, 0, 9)), "{keys:?}");
        assert!(body.is_empty(), "a v0 answer has nothing after the list");
        assert_eq!(frame.len(), 8 + 2 + 4 + 6 * SERVED.len());
    }
}
