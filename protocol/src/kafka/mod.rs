//! Kafka requests decoded so that no frame can hurt the node (issue #17 item 5).
//!
//! `kafka-protocol` 0.18 decodes arrays with `Vec::with_capacity(count)` straight from
//! the wire, so a 26-byte Metadata request claiming 0x7fffffff topics makes it ask for
//! 150 GB and the process aborts (an abort, not a panic: nothing can catch it). Here
//! every request is first walked ([`walk`]) along the layout the crate itself reads
//! (tables generated from its decoders, `schema_*.rs`): each string, bytes and array
//! length is checked against the bytes that remain (an array against the fewest bytes
//! its elements can take) before anything is allocated, and what the crate will reserve
//! is charged against the body's memory budget (32 bytes per input byte). Only a body that passes the
//! walk, and ends exactly where it does, reaches the crate's own decoder. Produce's
//! records stay raw bytes (a slice of the frame): batches are validated by the node.

mod schema;
mod schema_admin;
mod schema_data;
mod schema_group;
mod walk;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};

use schema::Schema;
pub use walk::LengthField;

/// Why a request body was refused. The node answers or closes the connection; it
/// never panics or allocates on the strength of a length it has not checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ends before the request does.
    #[error("request truncated")]
    Truncated,
    /// A length or count needs more bytes than the body has left.
    #[error("length {length} exceeds the {remaining} bytes remaining")]
    LengthTooLarge { length: usize, remaining: usize },
    /// Decoding would make the crate hold more memory than the body's budget
    /// ([`crate::codec::decode_budget`]: 32 bytes per input byte, 64 KiB at least).
    #[error("a {input}-byte request needs more than {budget} bytes of memory to decode")]
    OverBudget { input: usize, budget: usize },
    /// An API key this node does not serve, or a version outside what it accepts.
    #[error("api key {api_key} version {version} is not supported")]
    UnsupportedVersion { api_key: i16, version: i16 },
    /// Anything else malformed: negative lengths, bad UTF-8, trailing bytes, ...
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// The APIs and versions accepted, with the layout of each request. Versions are those
/// the listener serves (capped below topic ids, KIP-516, as KAFKA.md advises).
static ACCEPTED: [(ApiKey, i16, i16, &Schema); 24] = [
    (ApiKey::ApiVersions, 0, 4, &schema_data::API_VERSIONS_REQUEST),
    (ApiKey::Metadata, 0, 9, &schema_data::METADATA_REQUEST),
    (ApiKey::Produce, 3, 12, &schema_data::PRODUCE_REQUEST),
    (ApiKey::Fetch, 4, 12, &schema_data::FETCH_REQUEST),
    (ApiKey::ListOffsets, 1, 7, &schema_data::LIST_OFFSETS_REQUEST),
    (ApiKey::FindCoordinator, 0, 6, &schema_group::FIND_COORDINATOR_REQUEST),
    (ApiKey::JoinGroup, 0, 7, &schema_group::JOIN_GROUP_REQUEST),
    (ApiKey::SyncGroup, 0, 5, &schema_group::SYNC_GROUP_REQUEST),
    (ApiKey::Heartbeat, 0, 4, &schema_group::HEARTBEAT_REQUEST),
    (ApiKey::LeaveGroup, 0, 5, &schema_group::LEAVE_GROUP_REQUEST),
    (ApiKey::OffsetCommit, 2, 8, &schema_group::OFFSET_COMMIT_REQUEST),
    (ApiKey::OffsetFetch, 1, 7, &schema_group::OFFSET_FETCH_REQUEST),
    (ApiKey::DescribeGroups, 0, 5, &schema_group::DESCRIBE_GROUPS_REQUEST),
    (ApiKey::ListGroups, 0, 4, &schema_group::LIST_GROUPS_REQUEST),
    (ApiKey::DeleteGroups, 0, 2, &schema_group::DELETE_GROUPS_REQUEST),
    (ApiKey::InitProducerId, 0, 4, &schema_admin::INIT_PRODUCER_ID_REQUEST),
    (ApiKey::CreateTopics, 2, 7, &schema_admin::CREATE_TOPICS_REQUEST),
    (ApiKey::DeleteTopics, 1, 6, &schema_admin::DELETE_TOPICS_REQUEST),
    (ApiKey::DescribeConfigs, 1, 4, &schema_admin::DESCRIBE_CONFIGS_REQUEST),
    (ApiKey::OffsetForLeaderEpoch, 2, 4, &schema_admin::OFFSET_FOR_LEADER_EPOCH_REQUEST),
    (ApiKey::DescribeCluster, 0, 1, &schema_admin::DESCRIBE_CLUSTER_REQUEST),
    (ApiKey::CreatePartitions, 0, 3, &schema_admin::CREATE_PARTITIONS_REQUEST),
    (ApiKey::SaslHandshake, 0, 1, &schema_admin::SASL_HANDSHAKE_REQUEST),
    (ApiKey::SaslAuthenticate, 0, 2, &schema_admin::SASL_AUTHENTICATE_REQUEST),
];

/// Every accepted API with its lowest and highest accepted version: what ApiVersions
/// may advertise at most.
pub fn accepted_versions() -> impl Iterator<Item = (ApiKey, i16, i16)> {
    ACCEPTED.iter().map(|(key, min, max, _)| (*key, *min, *max))
}

fn schema_for(api_key: i16, version: i16) -> Result<(ApiKey, &'static Schema), DecodeError> {
    ACCEPTED
        .iter()
        .find(|(key, min, max, _)| *key as i16 == api_key && (*min..=*max).contains(&version))
        .map(|(key, _, _, schema)| (*key, *schema))
        .ok_or(DecodeError::UnsupportedVersion { api_key, version })
}

/// Where every length and count field of a well-formed body starts, and how it is
/// encoded: the hostile-input tests overwrite each one. Not for production use.
#[doc(hidden)]
pub fn length_fields(
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<Vec<(usize, LengthField)>, DecodeError> {
    let (_, schema) = schema_for(api_key, version)?;
    let mut walk = walk::Walk::traced(body, version);
    walk.schema(schema)?;
    Ok(walk.into_trace())
}

/// Decodes one request body (the bytes after the request header) of API `api_key` at
/// `version`, refusing before any allocation a length the body cannot hold.
///
/// Bytes after the request are ignored, as Kafka's broker ignores them: librdkafka
/// (2.12) asks Metadata v9+ for every topic with a 4-byte zero where a one-byte compact
/// array length belongs, which Kafka reads as a null array followed by fields and a
/// byte to spare. They are walked over, never allocated.
pub fn decode_request(api_key: i16, version: i16, body: Bytes) -> Result<RequestKind, DecodeError> {
    let (key, schema) = schema_for(api_key, version)?;
    let mut walk = walk::Walk::new(&body, version);
    walk.schema(schema)?;
    let mut buf = body;
    RequestKind::decode(key, &mut buf, version).map_err(|e| DecodeError::Invalid(format!("{e:#}")))
}
